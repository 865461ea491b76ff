"""train_hgr against a full-size SD1.5 architecture with random weights (architecture-level test).

The checkpoint (2.3 GB, fp16) is written once from ComfyUI's own classes by
`benchmarks.random_models.write_random_sd15_checkpoint` and cached in ~/.cache/safecfg (or
$SAFECFG_CACHE); writing it takes ~15-90 s, loading ~10 s. The run samples 2 prompts x 2 steps at
64x64 pixels (8x8 latents) so the whole test stays around a minute on 2 CPU cores.
"""

import subprocess
import sys

import torch

from helpers import REPO, run_node


def test_checkpoint_run_exports_weights_the_nodes_load_and_sample_with(comfy_nodes, hgr_dir, random_sd15_checkpoint, tmp_path):
    (tmp_path / "harmful.csv").write_text("prompt,categories\na naked person,sexual\n")
    (tmp_path / "clean.txt").write_text("a red apple on a table\n")
    output = hgr_dir / "sd15_random.safetensors"
    cmd = [sys.executable, "-m", "training.train_hgr", "--checkpoint", str(random_sd15_checkpoint),
           "--resolution", "64", "--harmful", str(tmp_path / "harmful.csv"), "--clean", str(tmp_path / "clean.txt"),
           "--sample-steps", "2", "--steps", "2", "--batch-size", "4", "--eval-every", "2", "--val-fraction", "0",
           "--base-channels", "16", "--output", str(output), "--work-dir", str(tmp_path / "work"), "--device", "cpu"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nudity" in result.stderr and "1 prompts" in result.stderr  # counts shown before starting

    info = comfy_nodes.NODE_CLASS_MAPPINGS["SafeCFGLoadHGR"].GET_NODE_INFO_V1()
    assert output.name in info["input"]["required"]["hgr_name"][1]["options"]
    (hgr,) = run_node(comfy_nodes, "SafeCFGLoadHGR", hgr_name=output.name)
    assert hgr.metadata["base_model"] == "SD15" and hgr.config.categories == ("nudity",)
    assert hgr.metadata["training"]["trajectories"] == 3  # 1 harmful x (CFG + steered) + 1 clean

    import comfy.sd

    model, clip, _, _ = comfy.sd.load_checkpoint_guess_config(str(random_sd15_checkpoint))
    (patched,) = run_node(comfy_nodes, "SafeCFGApply", model=model, hgr=hgr, strength=1.0,
                          start_percent=0.0, end_percent=1.0, categories="all")
    positive = [[clip.encode_from_tokens(clip.tokenize("a naked person")), {}]]
    negative = [[clip.encode_from_tokens(clip.tokenize("")), {}]]
    (out,) = comfy_nodes.common_ksampler(patched, 1, 2, 7.0, "euler", "normal", positive, negative,
                                         {"samples": torch.zeros(1, 4, 8, 8)})
    assert out["samples"].shape == (1, 4, 8, 8) and torch.isfinite(out["samples"]).all()
