"""The performance benchmark scripts run end to end (tiny settings: their numbers mean nothing
here; the real runs are benchmarks, not timed tests) and end with their summary line."""

import json
import re
import subprocess
import sys

from helpers import REPO


def _run(module, *flags):
    result = subprocess.run([sys.executable, "-m", module, *flags], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_training_throughput_reports_trajectories_and_optimiser_steps_per_second(tmp_path):
    out = tmp_path / "throughput.json"
    last = _run("benchmarks.training_throughput", "--trajectory-batch", "2", "--sample-steps", "2", "--repeats", "1",
                "--batch-size", "4", "--optimiser-steps", "1", "--threads", "1", "--out", str(out))
    assert re.fullmatch(r"trajectories_per_s=[0-9.]+ hgr_steps_per_s=[0-9.]+", last)
    report = json.loads(out.read_text())
    assert [t["kind"] for t in report["trajectories"]] == ["harmful", "clean"]
    assert all(t["trajectories_per_s"] > 0 and t["jobs"] == 2 for t in report["trajectories"])
    demo, default = report["optimiser"].values()
    assert demo["parameters"] < default["parameters"] and demo["hgr_steps_per_s"] > 0


def test_training_throughput_on_a_checkpoint_compares_shards_with_the_cost_models_estimate(random_sd15_checkpoint, tmp_path):
    from training.store import bytes_per_row

    out = tmp_path / "throughput.json"
    last = _run("benchmarks.training_throughput", "--checkpoint", str(random_sd15_checkpoint), "--resolution", "64",
                "--trajectory-batch", "2", "--sample-steps", "2", "--repeats", "1", "--out", str(out))
    assert re.fullmatch(r"ms_per_evaluation=[0-9.]+ seconds_per_1000_trajectories=[0-9.]+ estimate_ratio=[0-9.]+", last)
    report = json.loads(out.read_text())
    assert report["base_model"] == "SD15" and report["latent_shape"] == [4, 8, 8] and report["device"] == "cpu"
    harmful, clean = report["shards"]
    # 2 jobs x 2 euler steps x (prompt, negative, target) or (prompt, negative).
    assert (harmful["kind"], harmful["evaluations"], clean["evaluations"]) == ("harmful", 12, 8)
    for shard in report["shards"]:
        assert shard["recorded_steps_per_trajectory"] == 2
        assert shard["disk_bytes_per_trajectory"] == 2 * bytes_per_row((4, 8, 8))
        assert shard["estimate_seconds"] > 0 and shard["seconds"] > 0 and shard["twice_the_steps_ratio"] > 0


def test_overhead_smoke_run_on_a_tiny_model_ends_with_both_ratios(tmp_path):
    out = tmp_path / "overhead.json"
    last = _run("benchmarks.overhead", "--tiny", "--steps", "1", "--repeats", "1", "--warmup", "0", "--out", str(out))
    assert re.fullmatch(r"overhead_ratio_safecfg=[0-9.]+ overhead_ratio_sld=[0-9.]+", last)
    assert json.loads(out.read_text())["hgr"]["parameters"] > 0


def test_trajectory_memory_peak_rss_does_not_grow_with_the_store_and_a_step_costs_its_float16_tensors(tmp_path):
    """N=40 trajectories x 10 steps of 4x64x64 (50 MiB of shards) against 4N: float32 rows held in
    memory, as train_hgr read its cache before the store, measured a ratio of 1.72 at these sizes."""
    out = tmp_path / "memory.json"
    last = _run("benchmarks.trajectory_memory", "--trajectories", "40", "--batches", "100", "--batch-size", "32",
                "--scratch", str(tmp_path), "--out", str(out))
    match = re.fullmatch(r"peak_rss_ratio=([0-9.]+) bytes_per_step=([0-9]+)", last)
    assert match, last
    ratio, per_step = float(match[1]), int(match[2])
    tensors = 4 * (4 * 64 * 64) * 2 + 4 + 8  # x, D_u, g, g* - g in float16; sigma float32, job int64
    assert ratio < 1.10
    assert tensors <= per_step <= tensors * 1.001  # plus one small safetensors header per shard
    report = json.loads(out.read_text())
    assert (report["N"]["rows"], report["4N"]["rows"]) == (400, 1600) and report["tensor_bytes_per_step"] == tensors
    assert not list(tmp_path.glob("tmp*")), "the temporary stores are removed"


def test_benchmark_clis_turn_a_users_mistake_into_one_error_line_and_exit_2(tmp_path):
    for module, flags, message in (
            ("benchmarks.transfer", ["--build-dir", str(tmp_path / "none")], "run `python -m benchmarks.transfer --build`"),
            ("benchmarks.transfer", ["--per-category", "0"], "--per-category must be at least 1"),
            ("benchmarks.attacks", ["--hgr", str(tmp_path / "missing.safetensors"), "--steps", "0"],
             "--steps must be at least 1")):
        result = subprocess.run([sys.executable, "-m", module, *flags], cwd=REPO, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 2, (module, result.stderr[-2000:])
        assert message in result.stderr and "Traceback" not in result.stderr, (module, result.stderr[-2000:])
        assert str(tmp_path) not in result.stderr  # file names, not the machine's folders
