"""train_hgr on the toy world: interrupted runs resume with the same trajectories in the store,
corrupt shards are regenerated, caches of the old float32 format are refused, and torchrun shards
trajectory generation across processes and trains with DDP (gloo, CPU)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import REPO, free_port


@pytest.fixture(scope="module")
def prompt_files(tmp_path_factory):
    from toyworld import prompts

    folder = tmp_path_factory.mktemp("prompts")
    harmful, clean = prompts.harmful_train()[:8], prompts.clean_train()[:8]
    (folder / "harmful.csv").write_text("prompt,category,safe_prompt\n" + "".join(
        f'"{p.text}",{p.category},"{p.safe_text}"\n' for p in harmful))
    (folder / "clean.txt").write_text("".join(p.text + "\n" for p in clean))
    return folder


def _command(prompt_files, work, output, launcher=None):
    launcher = launcher or [sys.executable, "-m", "training.train_hgr"]
    v1 = ["--toy-weights", str(REPO / "toyworld" / "weights")]  # the prompt files are v1's
    return [*launcher, "--toy", *v1, "--device", "cpu", "--harmful", str(prompt_files / "harmful.csv"),
            "--clean", str(prompt_files / "clean.txt"), "--trajectory-batch", "1", "--sample-steps", "4",
            "--steps", "4", "--batch-size", "32", "--eval-every", "2", "--base-channels", "16",
            "--preview-count", "2", "--val-fraction", "0.25", "--work-dir", str(work), "--output", str(output)]


def _shards(work: Path):
    return sorted(work.glob("trajectories/*/shard_*.json"))


def test_killed_run_resumes_and_corrupt_shard_is_regenerated(prompt_files, tmp_path):
    work, output = tmp_path / "work", tmp_path / "hgr.safetensors"
    cmd = _command(prompt_files, work, output)
    process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while len(_shards(work)) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = len(_shards(work))
    assert 3 <= done_before < 24, "the run must be killed mid-way through its 24 shards"
    first = _shards(work)[0].with_suffix(".safetensors")
    sampled_before_the_kill = _tensors(first)
    data = bytearray(first.read_bytes())
    data[-10:] = b"\x00" * 10  # corrupt a finished shard
    first.write_bytes(bytes(data))

    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    sampled_now = int(result.stderr.split("shards to sample here")[0].rsplit(";", 1)[1].split()[0])
    assert sampled_now == 24 - done_before + 1  # the missing ones plus the corrupt one
    manifest = json.loads(next(work.glob("trajectories/*/manifest.json")).read_text())
    assert manifest["trajectories"] == 24 and len(manifest["shards"]) == 24
    assert list(work.glob("preview_*.png")), "a preview grid is written at each evaluation"
    cache = next(work.glob("trajectories/*/manifest.json")).parent
    _check_the_store_holds_the_planned_trajectories(cache, manifest, first, sampled_before_the_kill)
    _check_pixel_gate_trains_on_the_cache(cache, manifest, tmp_path)
    _check_an_old_format_cache_is_refused(cmd, cache)

    from hgr_core import load_hgr

    hgr = load_hgr(output)
    assert hgr.metadata["training"]["trajectories"] == 24
    assert hgr.metadata["base_model"] == "toyworld"


def _tensors(shard: Path) -> dict:
    from training.store import FIELDS, ShardFile

    return {name: ShardFile(shard).read(name) for name in FIELDS}


def _check_the_store_holds_the_planned_trajectories(cache: Path, manifest: dict, resampled: Path, before: dict) -> None:
    """After the kill, the resumed run's store has every planned job once, in float16, and the
    corrupted shard was resampled into exactly the trajectories the killed run had written."""
    from training.store import STORE_FORMAT, open_store

    assert manifest["format"] == STORE_FORMAT
    store = open_store(cache)
    assert store.rows == manifest["rows"] and set(store["job"].tolist()) == set(range(24))
    after = _tensors(resampled)
    assert after["x"].dtype == after["g"].dtype == torch.float16 and after["sigma"].dtype == torch.float32
    assert all(torch.equal(after[name], before[name]) for name in before)


def _check_an_old_format_cache_is_refused(cmd, cache: Path) -> None:
    """A manifest without a format is what train_hgr wrote before the float16 store: refused, with the fix."""
    manifest = json.loads((cache / "manifest.json").read_text())
    del manifest["format"]
    (cache / "manifest.json").write_text(json.dumps(manifest))
    refused = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2
    assert f"trajectories/{cache.name}: trajectory cache written in float32 format 1" in refused.stderr
    assert "Delete that folder and rerun train_hgr" in refused.stderr


def _check_pixel_gate_trains_on_the_cache(cache: Path, manifest: dict, tmp_path: Path) -> None:
    """The cache labels itself (jobs.json), so the trivial per-pixel gate trains on the HGR's trajectories."""
    jobs = json.loads((cache / "jobs.json").read_text())
    assert len(jobs) == manifest["jobs"] and {tuple(j["categories"]) for j in jobs} == {(), ("nudity",), ("violence",)}
    gate_file = tmp_path / "gate.safetensors"
    command = [sys.executable, "-m", "benchmarks.trivial_baselines", "--out", str(gate_file), "--steps", "5"]
    trained = subprocess.run([*command, "--trajectories", str(cache)], cwd=REPO, capture_output=True, text=True,
                             timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    from benchmarks.trivial_baselines import load_pixel_gate

    assert load_pixel_gate(gate_file).categories == ("nudity", "violence")
    (tmp_path / "empty").mkdir()
    refused = subprocess.run([*command, "--trajectories", str(tmp_path / "empty")], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode == 2 and "empty: not a complete trajectory cache" in refused.stderr
    assert str(tmp_path) not in refused.stderr


@pytest.fixture(scope="module")
def first_round(prompt_files, tmp_path_factory):
    """One finished run (work dir, weights, command) that the resume and on-policy tests continue from;
    each checks only what its own command does to it."""
    folder = tmp_path_factory.mktemp("first_round")
    work, output = folder / "work", folder / "hgr.safetensors"
    cmd = _command(prompt_files, work, output)
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return work, output, cmd


def test_resume_continues_training_from_the_checkpoint(first_round):
    work, output, cmd = first_round
    longer = [*cmd[:cmd.index("--steps") + 1], "6", *cmd[cmd.index("--steps") + 2:], "--resume"]
    result = subprocess.run(longer, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr and "at step 4" in result.stderr
    assert "0 shards to sample here" in result.stderr


def test_torchrun_two_processes_share_the_work(prompt_files, tmp_path):
    work, output = tmp_path / "work", tmp_path / "hgr.safetensors"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
                "-m", "training.train_hgr"]
    result = subprocess.run(_command(prompt_files, work, output, launcher), cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "12 shards to sample here" in result.stderr  # 24 shards split over 2 ranks
    assert "sample trajectories (rank 1)" in result.stderr
    assert output.is_file()


def test_an_on_policy_round_reuses_the_first_rounds_trajectories_and_adds_the_hgrs_own(first_round, prompt_files,
                                                                                      tmp_path):
    work, first, cmd = first_round
    first_checkpoint = (work / "checkpoint.pt").read_bytes()
    second = tmp_path / "second.safetensors"
    on_policy = [*cmd[:cmd.index("--output") + 1], str(second), "--on-policy", str(first)]
    result = subprocess.run(on_policy, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "24 of the first round's 24 shards reused" in result.stderr  # copied, not sampled again
    assert "32 jobs in 32 shards" in result.stderr and "8 shards to sample here" in result.stderr
    assert (work / "checkpoint.pt").read_bytes() == first_checkpoint  # the first round's checkpoint is its own
    assert len(list(work.glob("checkpoint_on_policy_*.pt"))) == 1
    from hgr_core import file_sha256, load_hgr

    record = load_hgr(second).metadata["training"]
    assert record["trajectories"] == 32
    assert record["on_policy"] == {"file": first.name, "sha256": file_sha256(first), "trajectories": 8}
    caches = sorted(p.parent for p in work.glob("trajectories/*/manifest.json"))
    assert len(caches) == 2
    jobs = max((json.loads((c / "jobs.json").read_text()) for c in caches), key=len)
    assert sum(j["redirected"] for j in jobs) == 8 and all(j["categories"] for j in jobs[24:])
    other = tmp_path / "other.safetensors"
    wrong = [*on_policy[:-1], str(REPO / "tests" / "data" / "toy_hgr.safetensors"),
             "--harmful-category", "nudity"]
    wrong[wrong.index("--harmful") + 1] = str(_one_category_file(prompt_files, tmp_path))
    wrong[wrong.index("--output") + 1] = str(other)
    refused = subprocess.run(wrong, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "--on-policy toy_hgr.safetensors redirects ['nudity', 'violence']" in refused.stderr
    assert not other.exists()


def _one_category_file(prompt_files, tmp_path) -> Path:
    path = tmp_path / "nudity.csv"
    lines = (prompt_files / "harmful.csv").read_text().splitlines()
    path.write_text("\n".join([lines[0], *(line for line in lines[1:] if ",nudity," in line)]) + "\n")
    return path
