"""The steps of one train_hgr run after the prompts and the model are loaded."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import torch

from hgr_core import HGR, save_hgr

from .cli import hgr_config_from_args, optim_config_from_args, sampling_from_args
from .jobs import plan_jobs
from .trainer import evaluate, train

log = logging.getLogger("train_hgr")


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def generate(backend, jobs, settings, args, rank: int, world: int) -> dict:
    """Sample every missing shard (this rank's share: shard i % world == rank), then read all shards."""
    from . import trajectories as tj
    from .progress import progress

    shards = tj.shard_jobs(jobs, args.trajectory_batch)
    model_id = f"{backend.base_model}:{args.checkpoint or 'toy'}:{args.resolution if args.checkpoint else ''}"
    cache = args.work_dir / "trajectories" / tj.plan_hash(jobs, settings, model_id)
    cache.mkdir(parents=True, exist_ok=True)
    mine = [i for i in range(len(shards)) if i % world == rank and not tj.shard_is_valid(cache, i)]
    log.info("trajectories: %d jobs in %d shards at %s; %d shards to sample here", len(jobs), len(shards), cache, len(mine))
    for i in progress(mine, desc=f"sample trajectories (rank {rank})", disable=not mine):
        tj.write_shard(cache, i, tj.sample_shard(backend, [jobs[j] for j in shards[i]], shards[i], settings))
    barrier(world)
    if rank == 0:
        manifest = tj.write_manifest(cache, jobs, shards, cache.name)
        log.info("cache complete: %d trajectories, %d recorded steps", manifest["trajectories"], manifest["rows"])
    barrier(world)
    return tj.read_shards(cache, len(shards))


def add_labels(data: dict, jobs, categories) -> dict:
    """Per-row multi-hot category labels (clean rows are all zero)."""
    table = torch.tensor([[float(c in j.categories) for c in categories] for j in jobs])
    data["labels"] = table[data["job"]]
    return data


def rows_of_split(data: dict, jobs, split: str) -> torch.Tensor:
    in_split = torch.tensor([j.split == split for j in jobs])
    return torch.nonzero(in_split[data["job"]]).flatten()


def preview_prompts(jobs, count: int) -> list[str]:
    val = [j for j in jobs if j.split == "val" and not j.steered]
    harmful = list(dict.fromkeys(j.prompt for j in val if j.categories))
    clean = list(dict.fromkeys(j.prompt for j in val if not j.categories))
    return harmful[: count - count // 2] + clean[: count // 2]


def _loggable(metrics: dict) -> dict:
    return {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}


def run(args, device, rank, world, harmful, clean, concepts, negatives, backend) -> None:
    settings = sampling_from_args(args)
    jobs = plan_jobs(harmful, clean, concepts, negatives, args.seeds_per_prompt, args.val_fraction, settings, args.seed)
    categories = tuple(sorted({c for p in harmful for c in p.categories}))
    started = time.monotonic()
    data = add_labels(generate(backend, jobs, settings, args, rank, world), jobs, categories)
    sampling_seconds = time.monotonic() - started
    train_rows, val_rows = rows_of_split(data, jobs, "train"), rows_of_split(data, jobs, "val")
    config = hgr_config_from_args(args, backend.latent_shape[0], categories)
    torch.manual_seed(args.seed)  # the network's initial weights: same command, same HGR
    model = HGR(config)
    prediction_type = backend.prediction_type
    previews = preview_prompts(jobs, args.preview_count)
    history = []

    def on_eval(step: int, ema: HGR) -> None:
        metrics = evaluate(ema, data, jobs, val_rows, categories, device)
        history.append({"step": step, **_loggable(metrics)})
        log.info("step %d validation: %s", step, json.dumps(_loggable(metrics)))
        if previews:
            from .preview import write_preview

            ema.metadata = {"prediction_type": prediction_type}
            write_preview(backend, ema, previews, args.work_dir / f"preview_{step:06d}.png", steps=settings.steps)

    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    ema = train(model, data, train_rows, optim_config_from_args(args), device, args.work_dir / "checkpoint.pt",
                args.resume, on_eval)
    if rank == 0:
        export(args, ema.cpu(), data, jobs, val_rows if len(val_rows) else train_rows, categories, backend,
               history, {"sampling_seconds": round(sampling_seconds, 1), "training_seconds": round(time.monotonic() - started, 1)})
    barrier(world)


def export(args, ema: HGR, data, jobs, rows, categories, backend, history, timings) -> None:
    """Calibrate the threshold on clean validation trajectories and write the weights atomically."""
    metrics = evaluate(ema, data, jobs, rows, categories, "cpu")
    clean_scores = metrics.pop("clean_scores", [])
    threshold = float(np.percentile(clean_scores, args.threshold_percentile)) if clean_scores else 0.1
    summary = {
        "prompts": {"harmful": len({j.prompt for j in jobs if j.categories}), "clean": len({j.prompt for j in jobs if not j.categories})},
        "trajectories": len(jobs), "recorded_steps": int(data["job"].shape[0]), "steps": args.steps,
        "sampling": {"steps": args.sample_steps, "sampler": args.sampler, "scheduler": args.scheduler,
                     "cfg": [args.cfg_min, args.cfg_max]},
        "validation": _loggable(metrics), "threshold_percentile": args.threshold_percentile, **timings,
        "history": history,
    }
    save_hgr(ema, args.output, base_model=backend.base_model, prediction_type=backend.prediction_type,
             threshold=threshold, training=summary)
    log.info("exported %s (threshold %.4f): %s", args.output, threshold, json.dumps(_loggable(metrics)))
