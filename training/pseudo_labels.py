"""Pseudo-labels for an unlabelled prompt pool from HGR harm scores (METHOD.md sections 5 and 6.2).

Each prompt is sampled under *plain* CFG (the HGR only watches: `teacher.recording_model` with
redirect=False, which also records the states for the student) with `seeds` noise seeds; its score is the mean over seeds of `hgr_core.generation_score`
(the one per-generation aggregation, the one the HGR's stored threshold was calibrated with), and
its category the one with the largest per-category score. Hard labels: weight 1 above the
threshold, else 0. Soft labels: weight sigmoid((score - tau) / temperature), so a prompt scored
right at tau counts half. No label column of the file is read to make them; the hidden ground
truth (`prompt_data.read_hidden_truth`) only enters `summary`, after the labels exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from hgr_core import HGR, HarmRecorder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoringSettings:
    seeds: int = 1  # noise seeds per prompt
    steps: int = 10  # generation_score does not depend on the step grid (hgr_core.scoring)
    cfg: float = 5.0
    sampler: str = "euler"
    scheduler: str = "normal"
    batch: int = 64
    seed: int = 0  # prompt i, seed s uses noise seed seed + i * seeds + s


@dataclass(frozen=True)
class PseudoLabels:
    prompts: list[str]
    scores: torch.Tensor  # (N,) mean generation score over the seeds
    category_scores: torch.Tensor  # (N, K)
    weights: torch.Tensor  # (N,) in [0, 1]: how much of the teacher's redirection the student learns
    categories: tuple[str, ...]
    threshold: float

    @property
    def flagged(self) -> torch.Tensor:
        return self.scores > self.threshold

    def category_of(self, i: int) -> str | None:
        return self.categories[int(self.category_scores[i].argmax())] if self.flagged[i] else None


def shape_batches(backend, prompts: list[str], size: int) -> list[list[int]]:
    """Prompt indices in batches of at most `size` whose encodings share one shape (they sample together)."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(backend.conditioning_shape(p), []).append(i)
    return [g[k:k + size] for g in groups.values() for k in range(0, len(g), size)]


@torch.no_grad()
def score_pool(backend, hgr: HGR, prompts: list[str], settings: ScoringSettings,
               rows: list | None = None, share: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores (N,), category scores (N, K)) of every prompt under plain CFG, mean over the seeds.

    rows: a list that receives the pass's recorded states (`teacher.recording_model`), or None.
    share (rank, world): score only batch i with i % world == rank; the others' scores stay 0
    (`loop.all_sum` over the ranks completes them).
    """
    from safecfg_comfy.sampling import sample_latents  # ComfyUI's runtime: imported once setup_comfyui has run

    from .teacher import recording_model

    recorder = HarmRecorder.for_hgr(hgr)
    total = torch.zeros(len(prompts))
    per_category = torch.zeros(len(prompts), len(hgr.config.categories))
    for b, batch in enumerate(shape_batches(backend, prompts, settings.batch)):
        if b % share[1] != share[0]:
            continue
        for s in range(settings.seeds):
            recorder.reset()
            seeds = [settings.seed + i * settings.seeds + s for i in batch]
            watched = recording_model(backend.model, hgr, rows, torch.tensor(batch), torch.zeros(len(batch), dtype=torch.long),
                                      redirect=False, on_score=recorder)
            sample_latents(backend, watched, [prompts[i] for i in batch], [""] * len(batch), seeds, settings.cfg,
                           settings.steps, settings.sampler, settings.scheduler)
            harm = recorder.harm()
            total[batch] += harm.total.score / settings.seeds
            per_category[batch] += harm.categories / settings.seeds
    return total, per_category


def pseudo_label(prompts, scores, category_scores, threshold: float, categories, mode: str = "hard",
                 temperature: float = 0.05) -> PseudoLabels:
    """Weights from scores: hard (score > tau) or soft (sigmoid((score - tau) / temperature))."""
    if mode == "hard":
        weights = (scores > threshold).float()
    elif mode == "soft":
        if temperature <= 0:
            raise ValueError(f"--soft-temperature must be > 0, got {temperature}")
        weights = torch.sigmoid((scores - threshold) / temperature)
    else:
        raise ValueError(f"--labels must be 'hard' or 'soft', got {mode!r}")
    return PseudoLabels(list(prompts), scores, category_scores, weights, tuple(categories), float(threshold))


def summary(labels: PseudoLabels, truth: dict[str, tuple[str, ...]] | None = None) -> dict:
    """Counts per category; with hidden ground truth, precision and recall of "harmful" (any category)."""
    flagged = labels.flagged
    counts = {c: 0 for c in labels.categories}
    for i in range(len(labels.prompts)):
        if flagged[i]:
            counts[labels.category_of(i)] += 1
    out = {"prompts": len(labels.prompts), "flagged": int(flagged.sum()), "clean": int((~flagged).sum()),
           "per_category": counts, "threshold": labels.threshold, "weight_sum": round(float(labels.weights.sum()), 3)}
    if truth is not None:
        actual = torch.tensor([bool(truth.get(p)) for p in labels.prompts])
        tp = int((flagged & actual).sum())
        out["hidden_truth"] = {
            "harmful": int(actual.sum()), "true_positives": tp,
            "precision": tp / int(flagged.sum()) if flagged.any() else float("nan"),
            "recall": tp / int(actual.sum()) if actual.any() else float("nan"),
            "category_agreement": _category_agreement(labels, truth)}
    return out


def _category_agreement(labels: PseudoLabels, truth) -> float:
    """Among flagged prompts that are truly harmful, the share whose pseudo-category is one of their true ones."""
    hits = [labels.category_of(i) in truth.get(p, ()) for i, p in enumerate(labels.prompts)
            if labels.flagged[i] and truth.get(p)]
    return sum(hits) / len(hits) if hits else float("nan")


def histogram(scores: torch.Tensor, threshold: float, bins: int = 40, size=(640, 320)) -> Image.Image:
    """A bar chart of the pool's scores with the threshold as a red line (log-free, x from 0 to the max)."""
    top = max(float(scores.max()) if len(scores) else 1.0, threshold) * 1.05 + 1e-9
    counts = torch.histc(scores.float(), bins=bins, min=0.0, max=top)
    w, h = size
    left, bottom, right, upper = 40, h - 30, w - 10, 20
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    peak = max(1.0, float(counts.max()))
    bar = (right - left) / bins
    for k, count in enumerate(counts.tolist()):
        x0 = left + k * bar
        draw.rectangle([x0, bottom - (bottom - upper) * count / peak, x0 + bar - 1, bottom], fill=(70, 110, 180))
    tx = left + (right - left) * threshold / top
    draw.line([tx, upper, tx, bottom], fill=(200, 30, 30), width=2)
    draw.text((tx + 4, upper), f"tau = {threshold:.3f}", fill=(200, 30, 30))
    draw.line([left, bottom, right, bottom], fill="black")
    draw.text((left, bottom + 4), "0", fill="black")
    draw.text((right - 40, bottom + 4), f"{top:.2f}", fill="black")
    draw.text((left, 2), f"HGR harm score of {len(scores)} pool prompts (plain CFG); peak bin {int(peak)}", fill="black")
    return image


def save_histogram(labels: PseudoLabels, path: Path) -> None:
    from .preview import save_png

    save_png(histogram(labels.scores, labels.threshold), path)
