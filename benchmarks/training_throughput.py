"""Training throughput of `python -m training.train_hgr` on the toy world (CPU).

Times the two stages of a training run with the code the CLI runs, in one process:
- trajectory generation (`training.trajectories.sample_shard`, ComfyUI's sampler with the
  recording guider): trajectories per second for harmful jobs (3 conditionings per model call:
  prompt, negative, target) and clean jobs (2), one shard of `--trajectory-batch` jobs each at
  euler/normal; and, with `--plan-shards N`, over the first N shards `train_hgr` plans for a
  demo-like prompt set (2 harmful : 1 clean) under named sampling plans (`PLANS`: one setting,
  the default mix, the mix at the demo's 10 steps, the mix recording at most 10 steps);
- HGR optimisation (`training.losses.training_loss`, AdamW step, clipping, EMA): steps per second
  for the demo's network (2 levels, 32 channels) and the SD1.x default `HGRConfig()` width.

Synthetic rows for the optimiser steps (random g, x, D_u, targets of the toy latent shape): the
cost of a step does not depend on the values. Last line:
`trajectories_per_s=… hgr_steps_per_s=…` (harmful/clean mix of the demo, demo network).

With `--checkpoint FILE` it measures that checkpoint instead (`training.cost`'s numbers for a
real run): per harmful and clean shard of `--trajectory-batch` jobs at `--resolution`, the
measured time against the cost model's probe estimate, time per 1,000 trajectories, time at twice
the steps, and disk and RAM per trajectory. Last line:
`ms_per_evaluation=… seconds_per_1000_trajectories=… estimate_ratio=…` (harmful/clean mix 2:1).

    python -m benchmarks.training_throughput            # ~2 minutes on 2 cores
    python -m benchmarks.training_throughput --checkpoint sd15.safetensors --device auto --resolution 512
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hgr_core import atomic_write_json
from training.flags import add_threads_flag, start_cli
from safecfg_comfy.locate import setup_comfyui

log = logging.getLogger("benchmarks.training_throughput")

NETWORKS = {"demo (2 levels, 32 ch)": {"base_channels": 32, "channel_mult": (1, 2)},
            "default HGRConfig() (3 levels, 48 ch)": {}}


def trajectory_rate(backend, kind: str, batch: int, steps: int, repeats: int) -> dict:
    """Trajectories per second for one shard of `batch` harmful or clean jobs (median of repeats)."""
    from toyworld import prompts
    from training.jobs import Job, Shard
    from training.trajectories import sample_shard

    specs = prompts.harmful_train(batch) if kind == "harmful" else prompts.clean_train(batch)
    jobs = [Job(p.text, (p.category,) if p.category else (), p.safe_text, "safe" if p.category else "none",
                i % 2 == 1 and kind == "harmful", i, 5.0 + 4.0 * i / batch, "", "train") for i, p in enumerate(specs)]
    sample_shard(backend, jobs, Shard((0, 1), "euler", "normal", steps))  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        sample_shard(backend, jobs, Shard(tuple(range(batch)), "euler", "normal", steps))
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"kind": kind, "jobs": batch, "sampling_steps": steps, "seconds": round(median, 2),
            "trajectories_per_s": round(batch / median, 2)}


# Sampling plans timed by `plan_rate`: SamplingSettings fields (the rest are the defaults, the mix).
PLANS = {
    "one setting (euler, normal, 20 steps: the old default)": {"samplers": ("euler",), "schedulers": ("normal",),
                                                              "steps_min": 20, "steps_max": 20},
    "one setting at 10 steps (the old demo)": {"samplers": ("euler",), "schedulers": ("normal",),
                                               "steps_min": 10, "steps_max": 10},
    "mix at 10 steps (the demo's --sample-steps 10)": {"steps_min": 10, "steps_max": 10},
    "mix, 10-50 steps (the default)": {},
    "mix, 10-50 steps, --record-steps 10": {"record_steps": 10},
}


def plan_rate(backend, fields: dict, batch: int, shard_count: int) -> dict:
    """Trajectories per second over the first `shard_count` shards planned for a demo-like prompt set."""
    from toyworld import prompts
    from toyworld.captions import CONCEPTS
    from training.cost import model_calls
    from training.jobs import SamplingSettings, plan_jobs, plan_shards
    from training.prompt_data import HarmfulPrompt
    from training.train_hgr import DEFAULT_NEGATIVES
    from training.trajectories import sample_shard

    settings = SamplingSettings(**fields)
    harmful = [HarmfulPrompt(p.text, p.categories, p.safe_text) for p in prompts.harmful_train(batch * shard_count)]
    clean = [p.text for p in prompts.clean_train(batch * shard_count)]
    jobs = plan_jobs(harmful, clean, CONCEPTS, list(DEFAULT_NEGATIVES), 1, 0.0, settings)
    shards = plan_shards(jobs, batch, settings)
    harmful_shards, clean_shards = ([s for s in shards if (jobs[s.jobs[0]].target_kind == "none") == clean]
                                    for clean in (False, True))
    chosen = harmful_shards[: shard_count - shard_count // 3] + clean_shards[: shard_count // 3]
    start, cpu_start, rows = time.perf_counter(), time.process_time(), 0
    for shard in chosen:
        rows += len(sample_shard(backend, jobs, shard, settings.record_steps)["job"])
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    trajectories = sum(len(s.jobs) for s in chosen)
    calls = sum(len(s.jobs) * model_calls(s.sampler, s.steps) for s in chosen)
    return {"shards": len(chosen), "trajectories": trajectories, "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1), "trajectories_per_s": round(trajectories / seconds, 2),
            "model_calls_per_trajectory": round(calls / trajectories, 1),
            "ms_per_trajectory_call": round(1000 * seconds / calls, 2),
            "rows_per_trajectory": round(rows / trajectories, 1),
            "settings": [f"{s.sampler}/{s.scheduler}/{s.steps}" for s in chosen]}


def optimiser_rate(config_fields: dict, batch: int, steps: int, latent_shape) -> dict:
    """HGR optimisation steps per second (AdamW, clip, EMA) on synthetic rows."""
    from hgr_core import HGR, HGRConfig, ema_update
    from hgr_core.network import parameter_count
    from training.losses import training_loss

    model = HGR(HGRConfig(**config_fields)).train()
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    rows = {k: torch.randn(batch, *latent_shape, generator=generator) for k in ("g", "x", "uncond_denoised", "target_change")}
    rows["sigma"] = torch.rand(batch, generator=generator) * 14 + 0.03
    rows["labels"] = (torch.rand(batch, 2, generator=generator) > 0.6).float()

    def step():
        loss = training_loss(model, rows, 1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        ema_update(ema, model, 0.995)

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    return {"parameters": parameter_count(model), "batch": batch, "steps": steps,
            "hgr_steps_per_s": round(steps / seconds, 2), "rows_per_s": round(steps * batch / seconds)}


# Short prompts of one token layout (a shard batches one conditioning shape); harmful ones with safe counterparts.
CHECKPOINT_PROMPTS = {
    "harmful": [("a photo of a naked woman on a beach", "a photo of a woman on a beach", "nudity"),
                ("a bloody knife fight in an alley", "a knife on a table in an alley", "violence")],
    "clean": [("a red apple on a wooden table", None, None), ("a lighthouse at sunset", None, None)],
}


def checkpoint_jobs(kind: str, count: int) -> list:
    from training.jobs import Job

    prompts = CHECKPOINT_PROMPTS[kind]
    return [Job(text, (category,) if category else (), safe, "safe" if safe else "none", i % 2 == 1 and kind == "harmful",
                i, 7.0, "", "train") for i, (text, safe, category) in ((i, prompts[i % len(prompts)]) for i in range(count))]


def _median_seconds(function, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def checkpoint_shard_rate(backend, kind: str, args) -> dict:
    """One shard of `kind` jobs on a checkpoint: measured time vs the cost model's probe estimate."""
    from training import cost
    from training.jobs import Shard
    from training.trajectories import sample_shard

    jobs = checkpoint_jobs(kind, args.trajectory_batch)
    shard = Shard(tuple(range(len(jobs))), "euler", "normal", args.sample_steps)
    longer = Shard(shard.jobs, "euler", "normal", 2 * args.sample_steps)
    per_evaluation = cost.probe_evaluation_seconds(backend, jobs, shard)
    measured = _median_seconds(lambda: sample_shard(backend, jobs, shard), args.repeats)
    measured_longer = _median_seconds(lambda: sample_shard(backend, jobs, longer), args.repeats)
    evaluations = cost.shard_evaluations(jobs, shard)
    planned = cost.plan_cost(jobs, [shard], backend.latent_shape, None, args.batch_size, 1, preload_bytes=0)
    return {"kind": kind, "jobs": len(jobs), "sampling_steps": args.sample_steps, "seconds": round(measured, 3),
            "evaluations": evaluations, "ms_per_evaluation": round(1000 * measured / evaluations, 3),
            "seconds_per_call": round(measured / cost.model_calls(shard.sampler, shard.steps), 3),
            "seconds_per_1000_trajectories": round(1000 * measured / len(jobs), 1),
            "estimate_seconds": round(per_evaluation * evaluations, 3),
            "estimate_ratio": round(per_evaluation * evaluations / measured, 3),
            "twice_the_steps_ratio": round(measured_longer / measured, 3),
            "disk_bytes_per_trajectory": planned.disk_bytes // len(jobs),
            "recorded_steps_per_trajectory": planned.rows / len(jobs)}


def run_checkpoint(args) -> dict:
    """Sampling cost on `--checkpoint` (the toy world's optimiser and plans are not re-timed)."""
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu"
    setup_comfyui(None, cpu=device == "cpu")
    from training.backends import CheckpointBackend

    backend = CheckpointBackend(args.checkpoint, args.resolution, args.precision)
    shards = [checkpoint_shard_rate(backend, kind, args) for kind in ("harmful", "clean")]
    harmful, clean = shards
    mix = (2 * harmful["seconds"] / harmful["jobs"] + clean["seconds"] / clean["jobs"]) / 3  # seconds per trajectory
    evaluations = (2 * harmful["evaluations"] / harmful["jobs"] + clean["evaluations"] / clean["jobs"]) / 3
    estimate = (2 * harmful["estimate_seconds"] / harmful["jobs"] + clean["estimate_seconds"] / clean["jobs"]) / 3
    return {"checkpoint": args.checkpoint.name, "base_model": backend.base_model, "device": device,
            "torch_threads": torch.get_num_threads(), "resolution": args.resolution, "latent_shape": list(backend.latent_shape),
            "precision": args.precision, "shards": shards,
            "harmful_to_clean_time_per_trajectory": round((harmful["seconds"] / harmful["jobs"]) / (clean["seconds"] / clean["jobs"]), 3),
            "summary": {"ms_per_evaluation": round(1000 * mix / evaluations, 3),
                        "seconds_per_1000_trajectories": round(1000 * mix, 1),
                        "estimate_ratio": round(estimate / mix, 3)}}


def run(args) -> dict:
    if args.checkpoint is not None:
        return run_checkpoint(args)
    setup_comfyui(None, cpu=True)
    from training.backends import ToyBackend

    from toyworld.files import V1_WEIGHTS_DIR

    backend = ToyBackend("cpu", V1_WEIGHTS_DIR)  # v1: the prompts below are v1's (the world's speed is the same)
    trajectories = [trajectory_rate(backend, kind, args.trajectory_batch, args.sample_steps, args.repeats)
                    for kind in ("harmful", "clean")]
    optimiser = {name: optimiser_rate(fields, args.batch_size, args.optimiser_steps, backend.latent_shape)
                 for name, fields in NETWORKS.items()}
    plans = {name: plan_rate(backend, fields, args.trajectory_batch, args.plan_shards)
             for name, fields in PLANS.items()} if args.plan_shards else {}
    harmful, clean = (t["trajectories_per_s"] for t in trajectories)
    # The demo plans 400 harmful prompts x (plain + steered) + 400 clean ones: 2:1.
    mixed = 3 / (2 / harmful + 1 / clean)
    return {"torch_threads": torch.get_num_threads(), "trajectories": trajectories, "plans": plans, "optimiser": optimiser,
            "demo_mix_trajectories_per_s": round(mixed, 2),
            "summary": {"trajectories_per_s": round(mixed, 2),
                        "hgr_steps_per_s": optimiser[next(iter(NETWORKS))]["hgr_steps_per_s"]}}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.training_throughput", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--trajectory-batch", type=int, default=64, help="jobs per shard (the demo's --trajectory-batch)")
    p.add_argument("--sample-steps", type=int, default=20, help="sampling steps per trajectory")
    p.add_argument("--repeats", type=int, default=3, help="timed shards per job kind (median)")
    p.add_argument("--plan-shards", type=int, default=0,
                   help="shards timed per sampling plan (PLANS; 2 harmful : 1 clean); 0 skips the plans")
    p.add_argument("--batch-size", type=int, default=128, help="rows per optimisation step (the demo's)")
    p.add_argument("--optimiser-steps", type=int, default=30, help="timed optimisation steps per network")
    add_threads_flag(p)
    c = p.add_argument_group("a checkpoint instead of the toy world")
    c.add_argument("--checkpoint", type=Path, default=None, help="checkpoint file ComfyUI's CheckpointLoaderSimple loads")
    c.add_argument("--resolution", type=int, default=512, help="image size sampled with --checkpoint")
    c.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto", help="model weights' dtype")
    c.add_argument("--device", choices=("cpu", "auto"), default="cpu", help="auto: CUDA when there is one")
    p.add_argument("--out", type=Path, default=Path("output/benchmarks/training_throughput.json"), help="JSON report")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    start_cli(args.threads)
    report = run(args)
    atomic_write_json(args.out, report)
    print(json.dumps({k: v for k, v in report.items() if k != "summary"}, indent=2))
    print(" ".join(f"{k}={v}" for k, v in report["summary"].items()), flush=True)
    return report


if __name__ == "__main__":
    main()
