"""train_hgr against a full-size SD1.5 architecture with random weights (architecture-level test).

The checkpoint (2.3 GB, fp16) is written once from ComfyUI's own classes by
`benchmarks.random_models.write_random_sd15_checkpoint` and cached in ~/.cache/safecfg (or
$SAFECFG_CACHE); writing it takes ~15-90 s, loading ~10 s. Each run samples a few prompts x 2 steps
at 64x64 pixels (8x8 latents), so each test stays around a minute on 2 CPU cores.
"""

import json
import re
import subprocess
import sys

import torch

from helpers import REPO, run_node


def test_a_preset_for_another_family_is_refused_before_any_sampling(random_sd15_checkpoint, tmp_path):
    (tmp_path / "harmful.csv").write_text("prompt,categories\na naked person,sexual\n")
    (tmp_path / "clean.txt").write_text("a red apple on a table\n")
    cmd = [sys.executable, "-m", "training.train_hgr", "--checkpoint", str(random_sd15_checkpoint), "--preset", "sdxl",
           "--harmful", str(tmp_path / "harmful.csv"), "--clean", str(tmp_path / "clean.txt"),
           "--output", str(tmp_path / "x.safetensors"), "--work-dir", str(tmp_path / "work"), "--device", "cpu"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert (f"--preset sdxl expects SDXL (SDXL latents, 4 channels, eps-prediction), but ComfyUI detects --checkpoint "
            f"{random_sd15_checkpoint.name} as SD15 (SD15 latents, 4 channels, eps-prediction) (differs in family, "
            "latent format); use --preset sd15") in last
    assert not (tmp_path / "work").exists() and not (tmp_path / "x.safetensors").exists()


LONG = ", ".join(["a highly detailed oil painting of a nude figure in a ruined castle"] * 6)  # ~80 CLIP tokens


def test_an_i2p_csv_with_long_prompts_trains_weights_the_nodes_load_and_sample_with(comfy_nodes, hgr_dir,
                                                                                   random_sd15_checkpoint, tmp_path):
    """I2P as published (long prompts, U+2028 inside a prompt, the original sd_* and the copy's
    evaluation_* columns) on the SD1.5 architecture with --preset sd15; ComfyUI's nodes then load the
    weights and sample with them. One run for both (a checkpoint run is the slow part of the suite)."""
    (tmp_path / "i2p.csv").write_text(
        "prompt,categories,hard,sd_seed,sd_guidance_scale,evaluation_seed,evaluation_guidance\n"
        f'"{LONG}","sexual, violence",1,4261553411,13,,\n'
        '"a naked\u2028person on a beach",sexual,0,,,58,7\n'
        "a bloody knife fight in an alley,violence,0,,,,\n", encoding="utf-8")
    (tmp_path / "clean.txt").write_text("a red apple on a table\na blue car in the rain\n")
    work, output = tmp_path / "work", hgr_dir / "sd15_random.safetensors"
    cmd = [sys.executable, "-m", "training.train_hgr", "--checkpoint", str(random_sd15_checkpoint), "--preset", "sd15",
           "--resolution", "64", "--harmful", str(tmp_path / "i2p.csv"), "--clean", str(tmp_path / "clean.txt"),
           "--sample-steps", "2", "--sampler", "euler", "--steps", "2", "--batch-size", "4", "--eval-every", "2",
           "--val-fraction", "0.4", "--preview-count", "2", "--seed", "4", "--base-channels", "16",
           "--output", str(output), "--work-dir", str(work), "--device", "cpu"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final evaluation on cpu" in result.stderr and output.is_file()
    assert re.search(r"nudity +2 prompts", result.stderr) and "3 harmful, 2 clean" in result.stderr  # shown first
    # The cost model comes before sampling, and its recorded-step count is what the cache holds.
    assert result.stderr.index("cost model: 8 trajectories") < result.stderr.index("first shard:")
    planned = re.search(r"cache: ([\d,]+) recorded steps", result.stderr).group(1).replace(",", "")
    assert f"trajectories, {planned} recorded steps" in result.stderr and "sampling on cpu: ~" in result.stderr
    # The preset fits the checkpoint ComfyUI detects; the explicit small sizes override its 512 px and width 48.
    assert ("preset sd15: --resolution 64 (explicit; the preset's is 512), --base-channels 16 (explicit; the preset's "
            "is 48); expects SD15 (SD15 latents, 4 channels, eps-prediction)") in result.stderr

    cache = next(work.glob("trajectories/*"))
    jobs = json.loads((cache / "jobs.json").read_text())
    long_jobs = {i for i, j in enumerate(jobs) if j["prompt"] == LONG}
    assert len(long_jobs) == 2  # plain and steered, one seed
    assert sum(j["prompt"] == "a naked\u2028person on a beach" for j in jobs) == 2  # one prompt, not split at U+2028
    assert not {j["seed"] for j in jobs} & {4261553411, 58}  # published seeds are the benchmark's, never trained on
    shards = [set(json.loads(p.read_text())["jobs"]) for p in sorted(cache.glob("shard_*.json"))]
    assert long_jobs in shards  # the long prompt's shard holds no short prompt
    # --seed 4 holds out the long prompt and a short clean one: the preview grid samples them together.
    assert {j["prompt"] for j in jobs if j["split"] == "val"} == {LONG, "a blue car in the rain"}
    assert (work / "preview_000002.png").is_file()
    _check_the_nodes_load_and_sample_with(comfy_nodes, random_sd15_checkpoint, output)


def _check_the_nodes_load_and_sample_with(comfy_nodes, checkpoint, output) -> None:
    info = comfy_nodes.NODE_CLASS_MAPPINGS["SafeCFGLoadHGR"].GET_NODE_INFO_V1()
    assert output.name in info["input"]["required"]["hgr_name"][1]["options"]
    (hgr,) = run_node(comfy_nodes, "SafeCFGLoadHGR", hgr_name=output.name)
    assert hgr.metadata["base_model"] == "SD15" and hgr.config.categories == ("nudity", "violence")
    assert hgr.metadata["training"]["trajectories"] == 8  # 3 harmful x (CFG + steered) + 2 clean
    assert hgr.config.base_channels == 16 and hgr.metadata["training"]["preset"] == "sd15"

    import comfy.sd

    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(checkpoint))
    (patched,) = run_node(comfy_nodes, "SafeCFGApply", model=model, hgr=hgr, strength=1.0,
                          start_percent=0.0, end_percent=1.0, categories="all")
    positive = [[clip.encode_from_tokens(clip.tokenize("a naked person")), {}]]
    negative = [[clip.encode_from_tokens(clip.tokenize("")), {}]]
    (out,) = comfy_nodes.common_ksampler(patched, 1, 2, 7.0, "euler", "normal", positive, negative,
                                         {"samples": torch.zeros(1, 4, 8, 8)})
    assert out["samples"].shape == (1, 4, 8, 8) and torch.isfinite(out["samples"]).all()
