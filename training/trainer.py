"""HGR training on the trajectory cache: batches, the loss, per-category validation metrics.

The loop itself (AdamW, warm-up + cosine, clipping, EMA, checkpoints with resume, DDP) is
`training.loop.optimise`, shared with `finetune_safe`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from hgr_core import HGR, SD_SIGMA_WINDOW, GenerationScore, combine_redirections, generation_score, harm_score

from .loop import OptimConfig, optimise
from .losses import NORM_EPS, squared_norm, training_loss
from .metrics import auroc

__all__ = ["OptimConfig", "batch_at", "batch_rows", "evaluate", "job_generation_scores", "job_scores", "row_metrics",
           "train"]

log = logging.getLogger(__name__)


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
    # plain CFG paths only: steered ones follow the target, redirected ones (--on-policy) SafeCFG
    plain = {j: float(s.score[0]) for j, s in results.items() if not jobs[j].steered and not jobs[j].redirected}
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


def train(model: HGR, data, train_rows: torch.Tensor, config: OptimConfig, device, checkpoint: Path,
          resume: bool, on_eval=None) -> HGR:
    """Optimise `model` on `train_rows` (`loop.optimise`); returns the EMA model. on_eval(step, ema) runs on rank 0."""

    def loss_fn(net, generator):
        batch = batch_at(data, batch_rows(train_rows, config.batch_size, generator), device)
        return training_loss(net, batch, config.clean_weight, config.second_pass_share)

    return optimise(model, loss_fn, config, device, checkpoint, resume, model.config.to_json(), desc="train HGR",
                    on_eval=on_eval)
