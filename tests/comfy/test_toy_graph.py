"""The toy world inside ComfyUI graphs: its node set, and graphs run through the real PromptExecutor."""

import sys

import pytest
import torch
from einops import rearrange

from graph import Graph, GraphExecutionError, GraphRunner, GraphValidationError, install_hgr, toy_txt2img
from helpers import redirecting_hgr, run_node
from hgr_core import save_hgr

TOY_NODES = ("ToyWorldModel", "ToyWorldTextEncode", "ToyWorldVAEDecode", "ToyWorldVAEEncode")
PROMPTS = ["a bloody red circle on white", "a blue square on black"]


def _direct_latent(comfy_nodes, model, positive, negative, seed, steps=4, cfg=5.0, batch=1):
    """The same sampling as the graph's KSampler, called as a function outside the executor."""
    latent = {"samples": torch.zeros(batch, 4, 8, 8)}
    (out,) = comfy_nodes.common_ksampler(model, seed, steps, cfg, "euler", "normal", positive, negative, latent)
    return out["samples"]


def test_toy_nodes_register_through_load_custom_node_and_stay_out_of_the_pack(comfy_nodes, toy_graph):
    for node_id in TOY_NODES:
        assert node_id in comfy_nodes.NODE_CLASS_MAPPINGS
    pack = comfy_nodes.NODE_CLASS_MAPPINGS["SafeCFGApply"].__module__.rsplit(".nodes.", 1)[0]
    assert not any(cls.GET_SCHEMA().node_id.startswith("ToyWorld") for cls in sys.modules[pack + ".nodes"].NODE_LIST)
    info = comfy_nodes.NODE_CLASS_MAPPINGS["ToyWorldVAEDecode"].GET_NODE_INFO_V1()
    assert info["output"] == ["IMAGE"] and list(info["input"]["required"]) == ["samples"]


def test_txt2img_graph_reproduces_direct_ksampler_bit_for_bit(comfy_nodes, toy_graph):
    world = toy_graph
    g, latent, image = toy_txt2img("\n".join(PROMPTS), "", seed=7, steps=4, batch_size=2)
    run = g.run()

    samples = run.output(latent)["samples"]
    expected = _direct_latent(comfy_nodes, world.model, world.conditioning(PROMPTS), world.conditioning([""]),
                              seed=7, batch=2)
    assert samples.shape == (2, 4, 8, 8)  # EmptyLatentImage at 64x64 is the toy latent
    assert torch.equal(samples, expected)
    pixels = run.output(image)
    assert pixels.shape == (2, 32, 32, 3)
    assert torch.equal(pixels, rearrange(world.decode(expected), "b c h w -> b h w c"))
    preview = next(iter(run.ui.values()))["images"]
    assert len(preview) == 2 and preview[0]["type"] == "temp"


def test_one_line_is_one_prompt_for_the_whole_batch(comfy_nodes, toy_graph):
    world = toy_graph
    g, latent, _ = toy_txt2img(PROMPTS[0], "", seed=5, steps=4, batch_size=2)
    run = g.run()

    positive = run.output(g.prompt[latent.node_id]["inputs"]["positive"][0])
    assert torch.equal(positive[0][0], world.encode_text(PROMPTS[:1]))  # (1, 24, 32): ComfyUI repeats it
    samples = run.output(latent)["samples"]
    assert torch.equal(samples, _direct_latent(comfy_nodes, world.model, world.conditioning(PROMPTS[:1]),
                                               world.conditioning([""]), seed=5, batch=2))
    assert (samples[0] - samples[1]).abs().mean().item() > 0.1  # same prompt, different noise per image


def test_text_encode_takes_a_prompt_per_line_and_empty_text_is_the_unconditional(comfy_nodes, toy_graph):
    def encode(text):
        return run_node(comfy_nodes, "ToyWorldTextEncode", text=text)[0][0][0]

    assert torch.equal(encode("\n" + "\n".join(PROMPTS) + "\n"), toy_graph.encode_text(PROMPTS))
    assert torch.equal(encode(PROMPTS[0] + "\n\n" + PROMPTS[1]), toy_graph.encode_text([PROMPTS[0], "", PROMPTS[1]]))
    assert torch.equal(encode(""), toy_graph.encode_text([""]))


def test_vae_encode_then_decode_is_the_worlds_codec_round_trip(toy_graph):
    g = Graph()
    pixels = g.node("EmptyImage", width=32, height=32, batch_size=2, color=0xCC2244)
    latent = g.node("ToyWorldVAEEncode", pixels=pixels)
    decoded = g.node("ToyWorldVAEDecode", samples=latent)
    g.node("PreviewImage", images=decoded)
    run = g.run()

    images = rearrange(run.output(pixels), "b h w c -> b c h w")
    assert torch.equal(run.output(latent)["samples"], toy_graph.encode_images(images))
    assert torch.equal(run.output(decoded), rearrange(toy_graph.decode(toy_graph.encode_images(images)),
                                                      "b c h w -> b h w c"))


def test_safecfg_pack_nodes_run_in_a_toy_graph_like_called_directly(comfy_nodes, toy_graph, tmp_path):
    save_hgr(redirecting_hgr(), tmp_path / "redirector.safetensors")
    name = install_hgr(tmp_path / "redirector.safetensors", "toy_graph_redirector.safetensors")
    g = Graph()
    hgr = g.node("SafeCFGLoadHGR", hgr_name=name)
    safe_model = g.node("SafeCFGApply", model=g.node("ToyWorldModel"), hgr=hgr, strength=1.0,
                        start_percent=0.0, end_percent=1.0, categories="all")
    g, latent, _ = toy_txt2img(PROMPTS[0], seed=3, model=safe_model, graph=g)
    samples = g.run().output(latent)["samples"]

    world = toy_graph
    (loaded,) = run_node(comfy_nodes, "SafeCFGLoadHGR", hgr_name=name)
    (patched,) = run_node(comfy_nodes, "SafeCFGApply", model=world.model, hgr=loaded, strength=1.0,
                          start_percent=0.0, end_percent=1.0, categories="all")
    positive, negative = world.conditioning(PROMPTS[:1]), world.conditioning([""])
    expected = _direct_latent(comfy_nodes, patched, positive, negative, seed=3)
    plain = _direct_latent(comfy_nodes, world.model, positive, negative, seed=3)
    assert torch.allclose(samples, expected, atol=1e-5)
    assert (samples - plain).abs().mean().item() > 1e-2  # the HGR really acted inside the graph


def test_missing_input_is_refused_before_anything_runs(toy_graph):
    g, latent, _ = toy_txt2img()
    del g.prompt[latent.node_id]["inputs"]["positive"]
    missing = rf"KSampler #{latent.node_id}: Required input is missing: positive"
    with pytest.raises(GraphValidationError, match=missing):
        g.run()


def test_a_node_that_raises_fails_the_run_with_its_message_and_exception(toy_graph):
    g = Graph()
    big = g.node("EmptyImage", width=64, height=64, batch_size=1, color=0)
    g.node("PreviewImage", images=g.node("ToyWorldVAEDecode", samples=g.node("ToyWorldVAEEncode", pixels=big)))
    refusal = r"ToyWorldVAEEncode #2 raised ValueError: .*needs \(B, 32, 32, 3\)"
    with pytest.raises(GraphExecutionError, match=refusal) as err:
        g.run()
    assert isinstance(err.value.__cause__, ValueError)
    assert err.value.node_id == "2" and err.value.node_type == "ToyWorldVAEEncode"


def test_a_runner_keeps_its_cache_across_prompts_like_the_server(toy_graph):
    g = Graph()
    pixels = g.node("EmptyImage", width=32, height=32, batch_size=1, color=0x00FF00)
    g.node("PreviewImage", images=g.node("ToyWorldVAEDecode", samples=g.node("ToyWorldVAEEncode", pixels=pixels)))
    runner = GraphRunner()
    first, second = runner.run(g.prompt), runner.run(g.prompt)
    cached = next(data["nodes"] for event, data in second.messages if event == "execution_cached")
    assert sorted(cached) == sorted(g.prompt)
    assert torch.equal(first.output(pixels), second.output(pixels))


def test_a_world_first_loaded_inside_the_executor_has_ordinary_weights(toy_graph, monkeypatch):
    from toyworld.comfyui_nodes import toy_nodes

    monkeypatch.setattr(toy_nodes, "_world", None)  # force the load to happen inside a node
    g, _, _ = toy_txt2img(steps=1)
    g.run()
    fresh = toy_nodes._world
    assert fresh is not None and fresh is not toy_graph
    weights = [*fresh.model.model.parameters(), *fresh.text_encoder.parameters()]
    assert not any(w.is_inference() for w in weights)  # LoRA patching and training can modify them
