"""The transfer benchmark (benchmarks.transfer) at small size on toy world v2: a tiny build of every
derived model and its retrained HGR, ComfyUI's own LoraLoaderModelOnly and ModelMergeSimple loading
them, and the evaluation end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from helpers import REPO

V2_HGR = REPO / "tests" / "data" / "toy_hgr_v2.safetensors"
from toyworld.files import V2_WEIGHTS_DIR as V2_WEIGHTS  # noqa: E402
TINY_HGR = ("--sample-steps", "2", "--steps", "4", "--seeds-per-prompt", "1", "--eval-every", "2",
            "--base-channels", "16", "--val-fraction", "0.25", "--preview-count", "2", "--trajectory-batch", "8")


@pytest.fixture(scope="module")
def tiny_build(comfy_nodes, tmp_path_factory):
    from benchmarks.transfer_build import BuildRecipe, build

    recipe = BuildRecipe(scenes=160, finetune_steps=6, lora_steps=6, hgr_rounds=1, hgr_prompts=(9, 3),
                         hgr_args=TINY_HGR)
    root = tmp_path_factory.mktemp("transfer") / "build"
    return build(V2_WEIGHTS, root, recipe), root, recipe


def test_the_build_makes_every_derived_model_and_its_hgr_and_caches_them(tiny_build):
    from benchmarks.transfer_build import DERIVED, SHARED_FILES, BuildFolder, build

    record, root, recipe = tiny_build
    folder = BuildFolder(root)
    for name in DERIVED:
        assert (folder.model_dir(name) / "unet.safetensors").is_file() and folder.hgr(name).is_file(), name
        for shared in SHARED_FILES:  # the base's text encoder, codec and judge, byte for byte
            assert (folder.model_dir(name) / shared).read_bytes() == (V2_WEIGHTS / shared).read_bytes()
        assert json.loads((folder.model_dir(name) / "report.json").read_text())["world"] == "toyworld-v2"
        assert record["seconds"][name] >= 0 and record["seconds"][f"hgr_{name}"] > 0
    with safe_open(str(folder.lora), "pt") as f:  # ComfyUI's LoRA key format
        keys = list(f.keys())
    assert keys and all(k.startswith("lora_unet_") for k in keys)
    # the yardstick holds on the styles: the judge reads ground-truth renders in each style about as well
    judged = record["judge_on_styles"]
    for style in ("dusk", "spotlight"):
        for head in ("harm", "shape", "colour", "pattern"):
            assert judged[style][head] >= judged["plain"][head] - 0.03, (style, head, judged)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*.safetensors")}
    assert build(V2_WEIGHTS, root, recipe)["seconds"] == record["seconds"]  # cached: nothing redone
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.safetensors")} == stamps


def test_the_merge_is_modelmergesimple_and_the_lora_is_loraloadermodelonly(tiny_build, comfy_nodes):
    import folder_paths
    from comfy_extras.nodes_model_merging import ModelMergeSimple

    from benchmarks.transfer_build import BuildFolder
    from benchmarks.transfer_eval import load_models
    from toyworld import load_world
    from toyworld.unet import load_unet, patcher

    _, root, recipe = tiny_build
    folder = BuildFolder(root)
    world = load_world(weights_dir=V2_WEIGHTS)
    models = load_models(world, folder, recipe.merge_ratio, ("base", "merge", "lora"))
    lora_dir = Path(folder_paths.get_folder_paths("loras")[0])
    lora_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder.lora, lora_dir / "transfer_test_lora.safetensors")
    node_lora = comfy_nodes.LoraLoaderModelOnly().load_lora_model_only(world.model, "transfer_test_lora.safetensors",
                                                                       1.0)[0]
    style = patcher(load_unet(folder.model_dir("style_finetune") / "unet.safetensors"))
    node_merge = ModelMergeSimple().merge(world.model, style, recipe.merge_ratio)[0]
    prompts, seeds = ["a bloody red circle on white", "a blue square on black"], [3, 4]

    def draw(model):
        return world.sample(model, prompts, seeds=seeds, cfg=7.0, steps=6)

    base = draw(models["base"])
    for name, node_model in (("lora", node_lora), ("merge", node_merge)):
        ours = draw(models[name])
        assert torch.equal(ours, draw(node_model)), name  # the benchmark samples what the node gives
        assert (ours - base).abs().mean() > 1e-4, name  # and it is another model than the base
    # the merge folder (the retrained HGR's world) holds the same arithmetic, stored in fp16
    merged = load_unet(folder.model_dir("merge") / "unet.safetensors").diffusion_model.state_dict()
    base_sd, style_sd = world.model.model.diffusion_model.state_dict(), style.model.diffusion_model.state_dict()
    key = next(k for k in merged if k.endswith("attn2.to_k.weight"))
    expected = recipe.merge_ratio * base_sd[key] + (1 - recipe.merge_ratio) * style_sd[key]
    assert torch.allclose(merged[key], expected, atol=2e-3)


@pytest.fixture(scope="module")
def tiny_report(tiny_build, tmp_path_factory):
    from benchmarks.transfer import run_transfer_benchmark

    _, root, _ = tiny_build
    out = tmp_path_factory.mktemp("transfer_out")
    return run_transfer_benchmark(root, out, V2_HGR, per_category=1, conditions="default", batch=64), out


def test_the_evaluation_reports_every_model_with_both_hgrs_intervals_and_targets(tiny_report):
    from benchmarks.transfer_build import DERIVED
    from benchmarks.transfer_report import summary_line

    report, out = tiny_report
    pooled = report["pooled"]
    assert list(pooled) == ["base", *DERIVED]
    assert report["hgr"] == str(V2_HGR)
    assert "retrained" not in pooled["base"] and pooled["base"]["shift_from_base"] == 0.0
    for name in DERIVED:
        assert pooled[name]["shift_from_base"] > 0.001, name  # the derived model draws differently
        for kind in ("transferred", "retrained"):
            row = pooled[name][kind]
            harmful = row["harmful_where_cfg"]
            assert harmful["n"] <= 3 and 0 <= harmful["low"] <= harmful["rate"] <= harmful["high"] <= 1
            assert harmful["n"] == 0 or harmful["scene_low"] <= harmful["rate"] <= harmful["scene_high"] <= 1
            assert 0 <= row["clean_fidelity"] <= 3 and 0 <= row["auroc"] <= 1 and row["clean_pixel_diff"] >= 0
    assert len(report["targets"]) == 2 * len(DERIVED)
    for check in report["targets"]:
        assert check["passed"] == (check["miss_by"] == 0.0)
    lines = (out / "report.txt").read_text().splitlines()
    assert lines[-1] == summary_line(report) and lines[-1].startswith("harmful_base=")
    assert "harmful_merge=" in lines[-1] and "retrained_lora=" in lines[-1] and "fidelity_min=" in lines[-1]
    assert (out / "transfer.png").stat().st_size > 1000
    assert json.loads((out / "report.json").read_text())["summary"] == report["summary"]


def test_the_evaluation_refuses_a_missing_build_and_unknown_models(comfy_nodes, tmp_path, tiny_build):
    from benchmarks.transfer import run_transfer_benchmark

    with pytest.raises(FileNotFoundError, match=r"--build"):
        run_transfer_benchmark(tmp_path / "nothing", tmp_path / "out", V2_HGR)
    _, root, _ = tiny_build
    with pytest.raises(ValueError, match="--models: unknown models \\['sdxl'\\]"):
        run_transfer_benchmark(root, tmp_path / "out", V2_HGR, models=["sdxl"])


def test_the_evaluation_runs_both_hgrs_with_the_passes_asked_for(tiny_build, tmp_path, monkeypatch):
    import benchmarks.transfer_eval as transfer_eval
    from benchmarks.transfer import main, run_transfer_benchmark

    real_patch, passes_seen = transfer_eval.patch_model, []

    def recording_patch(model, hgr, **kwargs):
        passes_seen.append(kwargs.get("passes", 1))
        return real_patch(model, hgr, **kwargs)

    monkeypatch.setattr(transfer_eval, "patch_model", recording_patch)
    _, root, _ = tiny_build
    report = run_transfer_benchmark(root, tmp_path / "out", V2_HGR, per_category=1, conditions="default", batch=64,
                                    models=["merge"], passes=2)
    assert passes_seen == [2, 2, 2]  # base: transferred; merge: transferred and retrained
    assert report["passes"] == 2 and list(report["pooled"]) == ["base", "merge"]
    assert "2 HGR pass(es) per step" in (tmp_path / "out" / "report.txt").read_text().splitlines()[0]
    with pytest.raises(ValueError, match="--passes applies to the evaluation"):
        main(["--build", "--passes", "2", "--build-dir", str(root)])


def test_a_unet_only_finetune_keeps_the_text_encoder(comfy_nodes):
    from toyworld.text import load_text_encoder
    from toyworld.train import DiffusionTrainConfig, train_diffusion
    from toyworld.unet import load_unet
    from toyworld.v2.captions import training_caption
    from toyworld.v2.scenes import scene_pool

    model, text = load_unet(V2_WEIGHTS / "unet.safetensors"), load_text_encoder(V2_WEIGHTS / "text_encoder.safetensors")
    before_text = {k: v.clone() for k, v in text.state_dict().items()}
    before_unet = {k: v.clone() for k, v in model.diffusion_model.state_dict().items()}
    scenes = scene_pool(8, 0)
    latents = torch.randn(8, 4, 8, 8)
    unet, ema_text = train_diffusion(model, text, latents, scenes, DiffusionTrainConfig(steps=2, batch=4, warmup=1),
                                     caption=training_caption, freeze_text=True)
    assert all(torch.equal(v, before_text[k]) for k, v in text.state_dict().items())
    assert all(torch.equal(v, before_text[k]) for k, v in ema_text.state_dict().items())
    assert any(not torch.equal(v, before_unet[k]) for k, v in unet.state_dict().items())
