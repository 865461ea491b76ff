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


def test_overhead_smoke_run_on_a_tiny_model_ends_with_both_ratios(tmp_path):
    out = tmp_path / "overhead.json"
    last = _run("benchmarks.overhead", "--tiny", "--steps", "1", "--repeats", "1", "--warmup", "0", "--out", str(out))
    assert re.fullmatch(r"overhead_ratio_safecfg=[0-9.]+ overhead_ratio_sld=[0-9.]+", last)
    assert json.loads(out.read_text())["hgr"]["parameters"] > 0
