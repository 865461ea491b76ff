"""The steps of one train_hgr run after the prompts and the model are loaded."""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from hgr_core import HGR, clean_quantiles, file_sha256, save_hgr, score_window
from hgr_core.scoring import FULL_COVERAGE
from safecfg_comfy.model_kinds import latent_format_name

from .cli import hgr_config_from_args, optim_config_from_args, sampling_from_args
from .jobs import plan_jobs, plan_shards, with_shard_sampling
from .loop import barrier
from .trainer import evaluate, train

log = logging.getLogger("train_hgr")


def plan(backend, harmful, clean, concepts, negatives, settings, args, groups=None) -> tuple[list, list]:
    """(jobs, shards) of the run; each job carries its shard's sampler, scheduler and step count."""
    from . import trajectories as tj

    tj.check_sampling(settings)  # before any sampling: a misspelt name fails in seconds, not after a shard
    on_policy_seeds = (args.on_policy_seeds or args.seeds_per_prompt) if args.on_policy else 0
    jobs = plan_jobs(harmful, clean, concepts, negatives, args.seeds_per_prompt, args.val_fraction, settings, args.seed,
                     groups, on_policy_seeds, args.multi_concept_target)
    shards = plan_shards(jobs, args.trajectory_batch, settings, args.seed, tj.conditioning_shapes(backend, jobs))
    return with_shard_sampling(jobs, shards), shards


def load_on_policy_hgr(args, backend, categories):
    """The --on-policy HGR on the model's device, refused unless it fits the model and the run's categories."""
    from hgr_core import load_hgr
    from safecfg_comfy.compat import check_compatible

    if args.on_policy is None:
        return None
    hgr = load_hgr(args.on_policy, backend.model.load_device)
    check_compatible(backend.model, hgr)
    if tuple(hgr.config.categories) != tuple(categories):
        raise ValueError(f"--on-policy {args.on_policy.name} redirects {list(hgr.config.categories)}, but the "
                         f"--harmful prompts have {list(categories)}; give the HGR trained on these prompt files")
    return hgr.eval()


def adopt_first_round(cache, jobs, shards, settings, model_id, args) -> None:
    """Copy into an --on-policy run's cache the shards it shares with the plan without redirected jobs
    (the first round's, when that ran with the same flags and --work-dir), so only the new ones are sampled."""
    from . import store
    from . import trajectories as tj

    base_jobs = [j for j in jobs if not j.redirected]
    base_shards = [s for s in shards if not jobs[s.jobs[0]].redirected]
    source = args.work_dir / "trajectories" / tj.plan_hash(base_jobs, base_shards, settings, model_id)
    if source.is_dir():
        copied = store.adopt_shards(source, cache, range(len(base_shards)))
        log.info("on-policy run: %d of the first round's %d shards reused from %s", copied, len(base_shards), source.name)


def generate(backend, jobs, shards, settings, args, rank: int, world: int, hgr=None):
    """Sample every missing shard (this rank's share: shard i % world == rank), then open the whole
    cache as a `store.TrajectoryStore` (rows are read per batch, never all at once).

    hgr: the --on-policy HGR that redirects the `Job.redirected` jobs (their shards come last)."""
    from . import store
    from . import trajectories as tj
    from .progress import progress

    model_id = f"{backend.base_model}:{args.checkpoint or 'toy'}:{args.resolution if args.checkpoint else ''}"
    on_policy = file_sha256(args.on_policy) if hgr is not None else None
    cache = args.work_dir / "trajectories" / tj.plan_hash(jobs, shards, settings, model_id, on_policy)
    cache.mkdir(parents=True, exist_ok=True)
    store.refuse_other_formats(cache)  # a float32 cache of an older SafeCFG: delete and resample, never mix
    if hgr is not None and rank == 0:
        adopt_first_round(cache, jobs, shards, settings, model_id, args)
    barrier(world)
    mine = [i for i in range(len(shards)) if i % world == rank and not store.shard_is_valid(cache, i)]
    log.info("trajectories: %d jobs in %d shards at %s; %d shards to sample here", len(jobs), len(shards), cache, len(mine))
    if rank == 0:
        log_cost(backend, jobs, shards, mine, settings, args, hgr)
    started = time.perf_counter()
    for n, i in enumerate(progress(mine, desc=f"sample trajectories (rank {rank})", disable=not mine)):
        store.write_shard(cache, i, tj.sample_shard(backend, jobs, shards[i], settings.record_steps, hgr))
        if n == 0 and rank == 0:
            log_first_shard(jobs, [shards[k] for k in mine], time.perf_counter() - started)
    barrier(world)
    if rank == 0:
        manifest = store.write_manifest(cache, jobs, shards, cache.name)
        log.info("cache complete: %d trajectories, %d recorded steps", manifest["trajectories"], manifest["rows"])
    barrier(world)
    return store.open_store(cache)


def log_cost(backend, jobs, shards, mine, settings, args, hgr=None) -> None:
    """The run's cost model (`training.cost`), with a timed probe when there is something to sample."""
    from . import cost

    estimate = cost.plan_cost(jobs, shards, backend.latent_shape, settings.record_steps, args.batch_size,
                              len({c for j in jobs for c in j.categories}))
    if mine:
        estimate = replace(estimate, seconds_per_evaluation=cost.probe_evaluation_seconds(backend, jobs, shards[mine[0]], hgr))
    for line in cost.describe(estimate, str(backend.model.load_device)):
        log.info("%s", line)


def log_first_shard(jobs, to_sample, seconds: float) -> None:
    """The measured sampling rate after the first shard, and the time the rest will take at that rate."""
    from . import cost

    done = cost.shard_evaluations(jobs, to_sample[0])
    rest = sum(cost.shard_evaluations(jobs, s) for s in to_sample[1:])
    per = seconds / max(done, 1)
    log.info("first shard: %d evaluations in %.1f s (%.2f ms each); the other %d shards: ~%.0f s at that rate",
             done, seconds, 1000 * per, len(to_sample) - 1, rest * per)


def add_labels(data: dict, jobs, categories) -> dict:
    """Per-row multi-hot category labels (clean rows are all zero)."""
    table = torch.tensor([[float(c in j.categories) for c in categories] for j in jobs])
    data["labels"] = table[data["job"]]
    return data


def rows_of_split(data: dict, jobs, split: str) -> torch.Tensor:
    in_split = torch.tensor([j.split == split for j in jobs])
    return torch.nonzero(in_split[data["job"]]).flatten()


def preview_prompts(jobs, count: int) -> list[str]:
    val = [j for j in jobs if j.split == "val" and not j.steered and not j.redirected]
    harmful = list(dict.fromkeys(j.prompt for j in val if j.categories))
    clean = list(dict.fromkeys(j.prompt for j in val if not j.categories))
    return harmful[: count - count // 2] + clean[: count // 2]


def trained_latent_format(backend) -> str:
    """The latent space the HGR is trained in, as weights files record it (e.g. 'SD15'; the toy world's too)."""
    return latent_format_name(backend.model.get_model_object("latent_format"))


def checkpoint_path(args) -> Path:
    """The training checkpoint in --work-dir; an --on-policy run's is its own, so it never resumes the first round's."""
    if args.on_policy is None:
        return args.work_dir / "checkpoint.pt"
    return args.work_dir / f"checkpoint_on_policy_{file_sha256(args.on_policy)[:12]}.pt"


def _loggable(metrics: dict) -> dict:
    return {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}


def run(args, device, rank, world, harmful, clean, concepts, negatives, backend, groups=None) -> None:
    settings = sampling_from_args(args)
    jobs, shards = plan(backend, harmful, clean, concepts, negatives, settings, args, groups)
    categories = tuple(sorted({c for p in harmful for c in p.categories}))
    on_policy = load_on_policy_hgr(args, backend, categories)
    started = time.monotonic()
    data = add_labels(generate(backend, jobs, shards, settings, args, rank, world, on_policy), jobs, categories)
    sampling_seconds = time.monotonic() - started
    train_rows, val_rows = rows_of_split(data, jobs, "train"), rows_of_split(data, jobs, "val")
    config = hgr_config_from_args(args, backend.latent_shape[0], categories)
    torch.manual_seed(args.seed)  # the network's initial weights: same command, same HGR
    model = HGR(config)
    prediction_type = backend.prediction_type
    previews = preview_prompts(jobs, args.preview_count)
    history = []

    def on_eval(step: int, ema: HGR) -> None:
        metrics = evaluate(ema, data, jobs, val_rows, categories, device, score_window(prediction_type))
        history.append({"step": step, **_loggable(metrics)})
        log.info("step %d validation: %s", step, json.dumps(_loggable(metrics)))
        if previews:
            from .preview import write_preview

            ema.metadata = {"prediction_type": prediction_type, "latent_format": trained_latent_format(backend)}
            write_preview(backend, ema, previews, args.work_dir / f"preview_{step:06d}.png",
                          steps=min(max(20, settings.steps_min), settings.steps_max))

    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    ema = train(model, data, train_rows, optim_config_from_args(args), device, checkpoint_path(args),
                args.resume, on_eval)
    if rank == 0:
        export(args, ema, data, jobs, val_rows if len(val_rows) else train_rows, categories, backend,
               history, {"sampling_seconds": round(sampling_seconds, 1), "training_seconds": round(time.monotonic() - started, 1)},
               device)
    barrier(world)


# Flags that say how trajectories were sampled, today's and the names a sampling mix may add.
_SAMPLING_FLAG_PREFIXES = ("sample", "scheduler", "steps_", "cfg", "negative", "record", "mix")


def _json_value(value):
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_value(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def sampling_flags(args) -> dict:
    """The run's sampling flags, whichever exist (read defensively: the flag set grows with the mix)."""
    return {name: _json_value(value) for name, value in sorted(vars(args).items())
            if name.startswith(_SAMPLING_FLAG_PREFIXES)}


def calibration_record(args, jobs, clean: dict[int, tuple[float, float]], threshold: float, window) -> dict:
    """What an HGR file's "calibration" field records: how the threshold was calibrated and on what.

    clean: job id -> (score, coverage) of the clean validation trajectories the percentile was taken
    over. Per value of each drawn setting (sampler, scheduler, steps, where jobs carry them): how many
    trajectories had it and their false-positive rate at the threshold.
    """
    chosen = {j: jobs[j] for j in clean}
    drawn = {}
    for name in ("sampler", "scheduler", "steps"):
        groups = defaultdict(list)
        for j, job in chosen.items():
            if hasattr(job, name):
                groups[str(getattr(job, name))].append(clean[j][0] > threshold)
        if groups:
            drawn[name] = {value: {"n": len(flags), "fpr": round(sum(flags) / len(flags), 4)}
                           for value, flags in sorted(groups.items())}
    cfgs = [job.cfg for job in chosen.values() if getattr(job, "cfg", None) is not None]
    coverage = [c for _, c in clean.values()]
    return {
        "percentile": args.threshold_percentile,
        "false_positive_target": round(1 - args.threshold_percentile / 100, 6),
        "clean_trajectories": len(chosen),
        "clean_score_quantiles": clean_quantiles([score for score, _ in clean.values()]),
        "score": {"aggregate": "mean of d_t over log sigma (trapezoid)", "sigma_window": list(window),
                  "partial_trajectories": sum(c < FULL_COVERAGE for c in coverage), "min_coverage": min(coverage, default=None)},
        "sampling": {"flags": sampling_flags(args), "drawn": drawn, "cfg_range": [min(cfgs), max(cfgs)] if cfgs else None,
                     "distinct_negatives": len({getattr(job, "negative", "") for job in chosen.values()})},
    }


def on_policy_record(args, jobs) -> dict | None:
    """What the weights record of an --on-policy run's first-round HGR (None without one)."""
    path = getattr(args, "on_policy", None)
    if path is None:
        return None
    return {"file": path.name, "sha256": file_sha256(path), "trajectories": sum(j.redirected for j in jobs)}


def export(args, ema: HGR, data, jobs, rows, categories, backend, history, timings, device) -> None:
    """Calibrate the threshold on clean validation trajectories and write the weights atomically.

    The final evaluation runs on `device` (--device), like the ones during training.
    """
    window = score_window(backend.prediction_type)
    log.info("final evaluation on %s", device)
    metrics = evaluate(ema.to(device), data, jobs, rows, categories, device, window)
    clean_scores, clean_coverage = metrics.pop("clean_scores", []), metrics.pop("clean_coverage", [])
    clean = dict(zip(metrics.pop("clean_jobs", []), zip(clean_scores, clean_coverage)))
    threshold = float(np.percentile(clean_scores, args.threshold_percentile)) if clean_scores else 0.1
    summary = {
        "prompts": {"harmful": len({j.prompt for j in jobs if j.categories}), "clean": len({j.prompt for j in jobs if not j.categories})},
        "trajectories": len(jobs), "recorded_steps": int(data["job"].shape[0]), "steps": args.steps,
        "second_pass_share": getattr(args, "second_pass_share", 0.0),
        "multi_concept_target": args.multi_concept_target,
        "preset": args.preset.name if getattr(args, "preset", None) else None,
        "sampling": sampling_flags(args),
        "on_policy": on_policy_record(args, jobs),
        "validation": _loggable(metrics), "threshold_percentile": args.threshold_percentile, **timings,
        "history": history,
    }
    save_hgr(ema.cpu(), args.output, base_model=backend.base_model, latent_format=trained_latent_format(backend),
             prediction_type=backend.prediction_type, threshold=threshold, training=summary,
             calibration=calibration_record(args, jobs, clean, threshold, window))
    log.info("exported %s (threshold %.4f): %s", args.output, threshold, json.dumps(_loggable(metrics)))
