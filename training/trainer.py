"""The HGR optimisation loop: AdamW, warm-up + cosine schedule, gradient clipping, EMA with warm-up,
per-category validation metrics, checkpoints with resume, optional DistributedDataParallel."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from hgr_core import (HGR, SD_SIGMA_WINDOW, GenerationScore, atomic_write, combine_redirections, ema_decay_at,
                      ema_update, generation_score, harm_score, warmup_cosine)

from .losses import NORM_EPS, squared_norm, training_loss
from .metrics import auroc
from .progress import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimConfig:
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100  # linear warm-up steps, then cosine decay to lr_min_ratio * lr
    lr_min_ratio: float = 0.1
    ema_decay: float = 0.995  # reached after a warm-up (hgr_core.ema_decay_at)
    grad_clip: float = 1.0
    clean_weight: float = 1.0
    eval_every: int = 500
    seed: int = 0


def batch_at(data, index: torch.Tensor, device) -> dict:
    """The rows `index` of every field but the job id, on `device`; data: a dict of row tensors or a
    `store.TrajectoryStore`, whose per-pixel fields read only these rows from disk."""
    return {k: v[index].to(device, non_blocking=True) for k, v in data.items() if k != "job"}


def batch_rows(rows: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """A training batch: `batch_size` of `rows` drawn uniformly (with replacement) across all shards."""
    return rows[torch.randint(len(rows), (batch_size,), generator=generator)]


@torch.no_grad()
def row_metrics(hgr: HGR, data, rows: torch.Tensor, device, chunk: int = 256) -> dict[str, torch.Tensor]:
    """Per row, on the CPU: harm score d_t, relative change |R - g|^2 / |g|^2 and redirection miss
    |R - g - T|^2 / |T|^2 (T the target change). Computed in chunks on `device`, keeping only these
    numbers, so memory does not grow with the rows evaluated."""
    parts = []
    for start in range(0, len(rows), chunk):
        batch = batch_at(data, rows[start:start + chunk], device)
        out = hgr(batch["g"], batch["sigma"], batch["x"], batch["uncond_denoised"])
        change = combine_redirections(out.delta, out.gate, rule=hgr.combine_rule)
        g, target = batch["g"], batch["target_change"]
        parts.append(torch.stack([harm_score(g, change), squared_norm(change) / (squared_norm(g) + NORM_EPS),
                                  squared_norm(change - target) / (squared_norm(target) + NORM_EPS)], 1).cpu())
    score, relative_change, miss = torch.cat(parts).unbind(1) if parts else torch.zeros(3, 0)
    return {"score": score, "relative_change": relative_change, "miss": miss}


def _per_job(scores: torch.Tensor, data, rows: torch.Tensor, window) -> dict[int, GenerationScore]:
    sigmas, jobs = data["sigma"][rows], data["job"][rows]
    return {int(j): generation_score(scores[jobs == j][:, None], sigmas[jobs == j], window)
            for j in jobs.unique().tolist()}


def job_generation_scores(hgr: HGR, data, rows: torch.Tensor, device,
                          window: tuple[float, float] = SD_SIGMA_WINDOW) -> dict[int, GenerationScore]:
    """`generation_score` per trajectory of the d_t at its recorded steps (jobs may differ in step count).

    The same function scores generations during sampling (`benchmarks.safety_metrics.ScoreRecorder`),
    so the threshold calibrated on these scores applies there as it is.
    """
    return _per_job(row_metrics(hgr, data, rows, device)["score"], data, rows, window)


def job_scores(hgr: HGR, data, rows: torch.Tensor, device,
               window: tuple[float, float] = SD_SIGMA_WINDOW) -> dict[int, float]:
    """Harm score per trajectory (`job_generation_scores` without the coverage)."""
    return {j: float(s.score[0]) for j, s in job_generation_scores(hgr, data, rows, device, window).items()}


def evaluate(hgr: HGR, data, jobs, rows: torch.Tensor, categories, device,
             window: tuple[float, float] = SD_SIGMA_WINDOW) -> dict:
    """Clean preservation error, redirection error and detection AUROC, per category.

    Also, for calibration, lists over the clean plain trajectories: job ids, scores, window coverages.
    """
    if len(rows) == 0:
        return {}
    per_row = row_metrics(hgr, data, rows, device)
    labels = data["labels"][rows]
    clean = labels.sum(1) == 0
    results = _per_job(per_row["score"], data, rows, window)
    plain = {j: float(s.score[0]) for j, s in results.items() if not jobs[j].steered}
    clean_scores = [s for j, s in plain.items() if not jobs[j].categories]
    rel_change, miss = per_row["relative_change"], per_row["miss"]
    metrics = {"clean_preservation_error": float(rel_change[clean].mean()) if clean.any() else float("nan")}
    harmful_scores = [s for j, s in plain.items() if jobs[j].categories]
    metrics["auroc"] = auroc(harmful_scores, clean_scores)
    for k, name in enumerate(categories):
        mine = labels[:, k] > 0
        metrics[f"{name}/redirection_error"] = float(miss[mine].mean()) if mine.any() else float("nan")
        metrics[f"{name}/auroc"] = auroc([s for j, s in plain.items() if name in jobs[j].categories], clean_scores)
    metrics["clean_jobs"] = [j for j in plain if not jobs[j].categories]  # in the order of clean_scores
    metrics["clean_scores"] = clean_scores
    metrics["clean_coverage"] = [float(results[j].coverage[0]) for j in metrics["clean_jobs"]]
    return metrics


def save_checkpoint(path: Path, model: HGR, ema: HGR, optimizer, step: int) -> None:
    state = {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
             "step": step, "config": model.config.to_json()}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, model: HGR, ema: HGR, optimizer) -> int:
    """Restore a checkpoint of our own (weights_only=True: nothing else is unpickled)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"] != model.config.to_json():
        raise ValueError(f"--resume: {path} was written for another HGR config; use a new --work-dir")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def train(model: HGR, data, train_rows: torch.Tensor, config: OptimConfig, device, checkpoint: Path,
          resume: bool, on_eval=None) -> HGR:
    """Optimise `model` on `train_rows`; returns the EMA model. on_eval(step, ema) runs on rank 0."""
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    model.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = load_checkpoint(checkpoint, model, ema, optimizer) if resume and checkpoint.is_file() else 0
    if start:
        log.info("resumed from %s at step %d", checkpoint, start)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    generator = torch.Generator().manual_seed(config.seed * 1000 + rank + start)
    bar = progress(range(start, config.steps), desc="train HGR", disable=rank != 0, initial=start, total=config.steps)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * warmup_cosine(step, config.steps, config.warmup, config.lr_min_ratio)
        batch = batch_at(data, batch_rows(train_rows, config.batch_size, generator), device)
        loss = training_loss(net, batch, config.clean_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        ema_update(ema, model, ema_decay_at(step, config.ema_decay))  # step: global, so --resume continues the warm-up
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)  # refresh=True would redraw every step
        done = step + 1
        if rank == 0 and (done % config.eval_every == 0 or done == config.steps):
            save_checkpoint(checkpoint, model, ema, optimizer, done)
            if on_eval is not None:
                on_eval(done, ema)
    return ema
