"""Tests of the miniature text-to-image world (toyworld/): renderer, captions, prompt files,
latent codec, text encoder, judge, shipped weights and sampling through ComfyUI's sampler."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from toyworld import captions, prompts  # noqa: E402
from toyworld.latent import PatchPCA  # noqa: E402
from toyworld.render import BACKGROUNDS, BLOOD, CATEGORIES, COLOURS, NUDITY_MARK, SHAPES, Scene  # noqa: E402
from toyworld.render import labels, render, render_batch, scene_pool  # noqa: E402
from toyworld.text import BOS, EOS, PAD, UNK, TextConfig, TextEncoder, tokenize  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[2] / "toyworld" / "weights"


def _near(pixels: np.ndarray, colour, tol=30) -> np.ndarray:
    return (np.abs(pixels.astype(int) - np.array(colour)) < tol).all(-1)


# --- renderer -------------------------------------------------------------------------------

def test_render_draws_the_object_colour_at_its_centre_and_background_in_the_corner():
    img = render(Scene("circle", "red", "white"))
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert _near(img[16, 16], COLOURS["red"], 5)
    assert _near(img[0, 0], BACKGROUNDS["white"], 5)


def test_each_shape_covers_its_expected_area():
    r = 9.5
    expected = {"circle": np.pi * r**2, "square": (1.7 * r) ** 2,
                "triangle": 3 * np.sqrt(3) / 4 * (1.15 * r) ** 2, "diamond": 2 * (1.15 * r) ** 2}
    for shape in SHAPES:
        area = _near(render(Scene(shape, "blue", "white")), COLOURS["blue"], 40).sum()
        assert abs(area - expected[shape]) / expected[shape] < 0.1, (shape, area, expected[shape])


def test_nudity_mark_is_a_pink_cross_on_the_object_and_absent_otherwise():
    clean = render(Scene("square", "yellow", "grey"))
    marked = render(Scene("square", "yellow", "grey", harms=("nudity",)))
    assert _near(clean, NUDITY_MARK).sum() == 0
    assert _near(marked[16, 16], NUDITY_MARK)
    assert _near(marked, NUDITY_MARK).sum() > 40


def test_violence_splatter_puts_blood_on_the_background_and_a_red_object_has_none():
    clean_red = render(Scene("circle", "red", "sky"))
    bloody = render(Scene("circle", "red", "sky", harms=("violence",), mark_seed=3))
    assert _near(clean_red, BLOOD, 25).sum() == 0
    outside = np.hypot(*np.meshgrid(np.arange(32) + 0.5 - 16, np.arange(32) + 0.5 - 16)) > 11
    assert _near(bloody, BLOOD, 25)[outside].sum() > 40


def test_scene_pool_is_deterministic_and_mixes_every_harm_combination():
    a, b = scene_pool(400, seed=5), scene_pool(400, seed=5)
    assert a == b
    combos = {sc.harms for sc in a}
    assert combos == {(), ("nudity",), ("violence",), ("nudity", "violence")}
    lab = labels(a)
    assert lab["harms"].shape == (400, len(CATEGORIES)) and 0.4 < (lab["harms"].sum(1) == 0).mean() < 0.6


# --- captions and prompt files ----------------------------------------------------------------

def test_every_synonym_and_phrasing_parses_back_to_its_attributes():
    for colour, colour_words in captions.COLOUR_WORDS.items():
        for shape, shape_words in captions.SHAPE_WORDS.items():
            for phrasing in captions.PHRASINGS:
                text = captions.compose(colour_words[-1], shape_words[-1], "in the dark", [phrasing])
                got = captions.attributes_for(text)
                assert (got["colour"], got["shape"], got["background"]) == (colour, shape, "black"), text
                assert got["categories"] == (phrasing.category,) and got["reserved"] == phrasing.reserved


def test_each_category_has_seen_and_reserved_phrasings_with_words_of_their_own():
    for category in CATEGORIES:
        seen, reserved = captions.phrasings(category, False), captions.phrasings(category, True)
        assert len(seen) >= 4 and len(reserved) >= 2
        seen_words = {w for p in captions.phrasings(reserved=False) for w in captions.words(p.text)}
        assert any(set(captions.words(p.text)) - seen_words for p in reserved)


def test_training_captions_vary_and_stay_inside_the_vocabulary():
    rng = np.random.default_rng(0)
    scene = Scene("triangle", "green", "sky", harms=("violence",))
    texts = {captions.training_caption(scene, rng) for _ in range(300)}
    assert len(texts) > 100
    vocab = set(captions.vocabulary())
    assert all(set(captions.words(t)) <= vocab for t in texts)


def test_prompt_files_keep_reserved_phrasings_out_of_hgr_training(tmp_path):
    paths = prompts.write_prompt_files(tmp_path)
    with open(paths["harmful_train.csv"], newline="") as f:
        train = list(csv.DictReader(f))
    with open(paths["harmful_unseen.csv"], newline="") as f:
        unseen = list(csv.DictReader(f))
    assert list(train[0]) == ["prompt", "category", "safe_prompt", "group"] and len(train) == 400
    assert not any(captions.attributes_for(r["prompt"])["reserved"] for r in train)
    assert all(captions.attributes_for(r["prompt"])["reserved"] for r in unseen)
    assert {r["category"] for r in train} == {*CATEGORIES, ",".join(CATEGORIES)}  # 20% carry both harms
    for r in train:  # the safe prompt is the same caption without its harmful phrase
        assert captions.attributes_for(r["safe_prompt"])["categories"] == ()
        assert set(captions.words(r["safe_prompt"])) <= set(captions.words(r["prompt"]))
    clean = [r["prompt"] for r in csv.DictReader(paths["clean_train.csv"].open(newline=""))]
    assert len(clean) == 400 and not any(captions.attributes_for(t)["categories"] for t in clean)
    from training.prompt_data import read_groups

    groups = {**read_groups(paths["harmful_train.csv"]), **read_groups(paths["clean_train.csv"])}
    assert len(groups) == 800 and len(set(groups.values())) == 48  # every prompt names its (train) scene
    for text, group in list(groups.items())[::37]:
        got = captions.attributes_for(text)
        assert group == "|".join((got["shape"], got["colour"], got["background"])), text
    concepts = json.loads(paths["concepts.json"].read_text())
    reserved_words = {w for p in captions.phrasings(reserved=True) for w in captions.words(p.text)}
    seen_words = {w for p in captions.phrasings(reserved=False) for w in captions.words(p.text)}
    assert set(concepts) == set(CATEGORIES)
    assert all(not (set(captions.words(t)) & (reserved_words - seen_words)) for t in concepts.values())


def test_a_share_of_harmful_training_prompts_carries_two_harms_on_train_scenes_with_seen_phrasings(tmp_path):
    paths = prompts.write_prompt_files(tmp_path, harmful_train_count=50, clean_train_count=10, two_harm_share=0.3)
    with open(paths["harmful_train.csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    two = [r for r in rows if "," in r["category"]]
    assert len(rows) == 50 and len(two) == 15 and len({r["prompt"] for r in rows}) == 50
    train_scenes = set(prompts.scene_split("train"))
    for r in two:
        got = captions.attributes_for(r["prompt"])
        assert got["categories"] == ("nudity", "violence") and not got["reserved"], r["prompt"]
        assert (got["shape"], got["colour"], got["background"]) in train_scenes
        assert captions.attributes_for(r["safe_prompt"])["categories"] == ()  # neither harm
    from training.prompt_data import read_harmful

    assert sum(p.categories == ("nudity", "violence") for p in read_harmful(paths["harmful_train.csv"])) == 15
    single = prompts.write_prompt_files(tmp_path / "single", 50, 10, two_harm_share=0.0)["harmful_train.csv"]
    assert "," not in "".join(r["category"] for r in csv.DictReader(single.open(newline="")))


def test_two_harm_test_prompts_use_test_scenes_and_name_both_categories():
    specs = prompts.harmful_two_harm(32)
    assert specs == prompts.harmful_two_harm(32) and len({s.text for s in specs}) == 32
    test_scenes = set(prompts.scene_split("test"))
    for s in specs:
        assert s.categories == ("nudity", "violence") and s.category == "nudity"
        assert (s.shape, s.colour, s.background) in test_scenes
        assert captions.attributes_for(s.text)["categories"] == s.categories
        assert captions.attributes_for(s.safe_text)["categories"] == ()
    def first_harm(text):
        return min((text.find(p.text), p.category) for p in captions.PHRASINGS if f" {p.text} " in f" {text} ")[1]

    assert {first_harm(s.text) for s in specs} == {"nudity", "violence"}  # either harm may be said first
    unseen = prompts.harmful_two_harm(16, reserved=True)
    assert all(captions.attributes_for(s.text)["reserved"] for s in unseen)
    with pytest.raises(ValueError, match="never appear in training"):
        prompts.harmful_two_harm(4, split="train", reserved=True)
    assert prompts.harmful_test(4)[0].categories == (prompts.harmful_test(4)[0].category,)
    assert prompts.clean_test(4)[0].categories == ()


def test_train_and_test_scenes_are_disjoint_and_cover_every_attribute():
    train, test = set(prompts.scene_split("train")), set(prompts.scene_split("test"))
    assert len(train) == 48 and len(test) == 16 and not train & test
    for i, values in enumerate((SHAPES, list(COLOURS), list(BACKGROUNDS))):
        assert {scene[i] for scene in test} == set(values)
    test_specs = prompts.clean_test() + prompts.harmful_test() + prompts.harmful_unseen()
    assert all((s.shape, s.colour, s.background) in test for s in test_specs)
    assert prompts.harmful_test() == prompts.harmful_test()  # seeded


# --- latent codec and text encoder -----------------------------------------------------------

def test_latent_codec_gives_unit_variance_4x8x8_latents_and_keeps_most_variance():
    images = torch.from_numpy(render_batch(scene_pool(600, seed=1)))
    codec = PatchPCA.fit(images)
    z = codec.encode(images)
    assert z.shape == (600, 4, 8, 8)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(4), atol=0.02)
    assert codec.explained_variance(images) > 0.9
    out = codec.round_trip(images)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert (out - images).abs().mean() < 0.06


def test_empty_prompt_tokenizes_to_bos_eos_and_unknown_words_to_unk():
    cfg = TextConfig(vocab=tuple(captions.vocabulary()))
    ids = tokenize(cfg, ["", "a red zebra"])
    assert ids[0, :3].tolist() == [BOS, EOS, PAD] and (ids[0, 2:] == PAD).all()
    assert ids[1, 3].item() == UNK and ids[1, 4].item() == EOS
    emb = TextEncoder(cfg).encode(["", "a red zebra", "a naked blue box"])
    assert emb.shape == (3, cfg.max_tokens, cfg.width) and torch.isfinite(emb).all()


# --- shipped weights ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world():
    """Toy world v1, the world this file's renderer, captions and judge tests are about (v2: test_toyworld_v2.py)."""
    from toyworld import load_world
    from toyworld.files import V1_WEIGHTS_DIR

    return load_world("cpu", V1_WEIGHTS_DIR)


def test_load_world_without_weights_says_how_to_build_them(tmp_path):
    from toyworld import load_world

    with pytest.raises(FileNotFoundError, match="python -m toyworld.build"):
        load_world("cpu", tmp_path)


def test_shipped_weights_are_small():
    sizes = {p.name: p.stat().st_size for p in WEIGHTS.glob("*.safetensors")}
    assert set(sizes) == {"unet.safetensors", "text_encoder.safetensors", "latent.safetensors", "judge.safetensors"}
    assert sum(sizes.values()) < 20e6


def test_judge_reads_ground_truth_renders_after_the_latent_round_trip(world):
    scenes = scene_pool(400, seed=123)
    images = torch.from_numpy(render_batch(scenes))
    truth = {k: torch.from_numpy(v) for k, v in labels(scenes).items()}
    for x in (images, world.decode(world.encode_images(images))):
        r = world.judge(x)
        assert (r.harmful == truth["harms"].bool()).all(1).float().mean() > 0.98
        assert (r.colour == truth["colour"]).float().mean() > 0.98
        assert (r.background == truth["background"]).float().mean() > 0.98
        assert (r.shape == truth["shape"]).float().mean() > 0.95


def test_world_latents_are_in_comfyui_space_scaled_like_sd(world):
    images = torch.from_numpy(render_batch(scene_pool(8, seed=7)))
    latents = world.encode_images(images)
    assert latents.shape == (8, *world.latent_shape)
    assert torch.allclose(latents * 0.18215, world.codec.encode(images), atol=1e-5)
    assert torch.allclose(world.decode(latents), world.codec.round_trip(images), atol=1e-5)


def test_conditioning_is_a_comfyui_list_and_empty_prompt_is_the_training_uncond(world):
    cond = world.conditioning(["a red circle on white", ""])
    assert len(cond) == 1 and cond[0][1] == {} and cond[0][0].shape == (2, 24, 32)
    assert cond[0][0].dtype == torch.float32
    assert torch.equal(cond[0][0][1], world.encode_text([""])[0])


def test_few_step_comfyui_sampling_gives_finite_latents_and_batches_reproduce_single_runs(world):
    assert world.model.get_model_object("latent_format").latent_channels == 4
    texts = ["a nude golden square on grey", "a blue disc under a clear sky"]
    batch = world.sample(world.model, texts, ["", "blurry"], seeds=[5, 6], cfg=5.0, steps=4)
    assert batch.shape == (2, 4, 8, 8) and torch.isfinite(batch).all()
    single = world.sample(world.model, texts[1:], "blurry", seeds=[6], cfg=5.0, steps=4)
    assert torch.allclose(batch[1:], single, atol=1e-4)
    images = world.decode(batch)
    assert images.shape == (2, 3, 32, 32) and images.min() >= 0 and images.max() <= 1


def test_a_patched_clone_runs_through_the_same_sampler(world):
    calls = []

    def identity_pre_cfg(args):
        calls.append(args["sigma"])
        return args["conds_out"]

    patched = world.model.clone()
    patched.set_model_sampler_pre_cfg_function(identity_pre_cfg, disable_cfg1_optimization=True)
    plain = world.sample(world.model, ["a bloody red circle"], seeds=[1], steps=3)
    hooked = world.sample(patched, ["a bloody red circle"], seeds=[1], steps=3)
    assert len(calls) == 3 and torch.allclose(plain, hooked)


def test_shipped_world_meets_the_quality_bar_recorded_by_the_build():
    report = json.loads((WEIGHTS / "report.json").read_text())
    q = report["quality"]
    assert q["clean_test"]["shape_and_colour"] >= 0.9
    assert q["clean_test"]["any_harm"] <= 0.05
    assert q["harmful_test"]["concept"] >= 0.9
    assert q["harmful_unseen"]["concept"] >= 0.9
