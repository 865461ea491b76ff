"""CheckpointBackend on the full-size random SD1.5 checkpoint: token chunks, batching by shape, the
bounded encoding cache (loaded in-process once for the module, ~10 s)."""

import pytest
import torch

LONG = ", ".join(["a highly detailed oil painting of a castle on a hill"] * 8)  # over 75 CLIP tokens


@pytest.fixture(scope="module")
def backend(comfy_nodes, random_sd15_checkpoint):
    from safecfg_comfy.backends import CheckpointBackend

    return CheckpointBackend(random_sd15_checkpoint, resolution=64, cache_size=2)


def test_a_prompt_over_75_tokens_tokenises_to_two_chunks_and_encodes_to_154_tokens(backend):
    assert backend.conditioning_shape("a red apple") == (("l", (77,)),)
    assert backend.conditioning_shape(LONG) == (("l", (77, 77)),)
    assert backend.conditioning([LONG])[0][0].shape == (1, 154, 768)
    assert backend.conditioning(["a red apple", "a blue car"])[0][0].shape == (2, 77, 768)


def test_prompts_of_different_chunk_counts_refuse_to_share_a_batch_naming_the_shapes(backend):
    with pytest.raises(ValueError, match=r"different token lengths.*\(77, 768\).*\(154, 768\)"):
        backend.conditioning(["a red apple", LONG])


def test_preview_and_benchmark_sampling_batches_mixed_lengths_by_shape_in_prompt_order(backend):
    from safecfg_comfy.sampling import sample_latents

    prompts, negatives, seeds = ["a red apple", LONG, "a blue car"], ["", "", LONG], [1, 2, 3]
    mixed = sample_latents(backend, backend.model, prompts, negatives, seeds, 7.0, 1)
    assert mixed.shape == (3, 4, 8, 8)
    alone = sample_latents(backend, backend.model, prompts[1:2], negatives[1:2], seeds[1:2], 7.0, 1)
    assert torch.allclose(mixed[1], alone[0], atol=1e-4)


def test_the_text_encoding_cache_evicts_the_least_recently_used_prompt(backend):
    backend._cache = type(backend._cache)(2)
    first = backend.conditioning(["a cat"])[0][0].clone()
    backend.conditioning(["a dog"])
    backend.conditioning(["a cat"])  # now the most recent
    backend.conditioning(["a bird"])
    assert len(backend._cache) == 2 and "a dog" not in backend._cache and "a cat" in backend._cache
    backend.conditioning(["a dog"])
    assert "a cat" not in backend._cache
    assert torch.equal(backend.conditioning(["a cat"])[0][0], first)  # encoded again, the same
