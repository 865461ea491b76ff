"""Per-image harm verdicts: scores, flags at a threshold whose meaning is stated, and why.

A verdict is what the detection nodes hand the gate (METHOD.md section 5). Scores come from
`scoring.HarmRecorder` (while sampling, or from the image detector's fixed noise levels); the
flag is `score > threshold` or a window coverage too low to judge (fail closed).

Operating points. The stored threshold is a percentile of clean validation scores; the file's
calibration record (`train_hgr`) also keeps clean-score quantiles, so a user can pick "the
threshold that flags 1% of clean generations" instead of a raw number. That rate holds for the
settings the calibration drew from (the record lists them); elsewhere it is an estimate, which is
why the benchmarks report the false-positive rate per sampling condition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .scoring import MIN_COVERAGE, GenerationHarm

STORED = "stored threshold"
CUSTOM = "custom threshold"
FPR_TARGETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1)  # clean false-positive rates a file keeps thresholds for


def fpr_choice(rate: float) -> str:
    return f"clean false positives {rate * 100:g}%"


OPERATING_POINTS = (STORED, *(fpr_choice(r) for r in FPR_TARGETS), CUSTOM)


def clean_quantiles(clean_scores, targets=FPR_TARGETS) -> dict[str, float]:
    """Threshold per clean false-positive target: the (1 - rate) quantile of clean scores (JSON keys)."""
    scores = torch.as_tensor(list(clean_scores), dtype=torch.float64)
    if scores.numel() == 0:
        return {}
    return {repr(rate): float(torch.quantile(scores, 1 - rate)) for rate in targets}


@dataclass(frozen=True)
class Threshold:
    value: float
    meaning: str  # what the number means, for the node and the report


def choose_threshold(metadata: dict, operating_point: str = STORED, custom: float | None = None,
                     detector: str = "sampling") -> Threshold:
    """The threshold for an operating point, from an HGR's metadata (`load_hgr`'s `.metadata`).

    detector: "sampling" (scores recorded while SafeCFG samples) or "image" (SafeCFGDetect's
    fixed noise levels on a finished image, whose scores have their own distribution). A file
    calibrated by `benchmarks.detection --calibrate` carries both; others only the sampling one,
    which the image detector then uses and says so.
    """
    if detector not in ("sampling", "image"):
        raise ValueError(f"detector must be 'sampling' or 'image', got {detector!r}")
    name = metadata.get("file", "this HGR")
    calibration = metadata.get("calibration") or {}
    own = calibration.get("image_detector") if detector == "image" else None
    source = own or calibration
    if operating_point == CUSTOM:
        if custom is None or not math.isfinite(custom) or custom < 0:
            raise ValueError(f"custom threshold must be a finite number >= 0, got {custom}")
        return Threshold(float(custom), "custom (set by the user)")
    n = source.get("clean_trajectories", source.get("clean_images", "?"))
    what = "clean images scored by the detector" if own else "clean generations"
    note = "" if detector == "sampling" or own else " (sampling-time calibration: the file has none for the image detector)"
    if operating_point == STORED:
        percentile = source.get("percentile", "?")
        percentile = f"{percentile:g}" if isinstance(percentile, (int, float)) else percentile
        if own:
            return Threshold(float(own["threshold"]), f"stored: {percentile}th percentile of {n} {what}")
        if calibration:
            return Threshold(float(metadata["threshold"]),
                             f"stored: {percentile}th percentile of {n} {what}{note}")
        return Threshold(float(metadata["threshold"]), f"stored (the file has no calibration record){note}")
    for rate in FPR_TARGETS:
        if operating_point == fpr_choice(rate):
            quantiles = source.get("clean_score_quantiles") or {}
            if repr(rate) not in quantiles:
                raise ValueError(
                    f"{name} has no clean-score quantiles in its calibration record (exported before they "
                    f"were kept), so '{operating_point}' has no threshold; choose '{STORED}' or '{CUSTOM}', "
                    "or re-export the HGR with the current `python -m training.train_hgr`")
            return Threshold(float(quantiles[repr(rate)]), f"flags {rate * 100:g}% of {n} {what}{note}")
    raise ValueError(f"operating point {operating_point!r} is not one of {list(OPERATING_POINTS)}")


@dataclass
class HarmVerdicts:
    """One batch's verdicts. Every field is per image (length B) except the shared ones."""

    scores: torch.Tensor  # (B,) harm score
    coverage: torch.Tensor  # (B,) visited share of the score's sigma window
    category_scores: torch.Tensor  # (B, K)
    categories: tuple[str, ...]
    flags: torch.Tensor  # (B,) bool: censor this image
    reasons: list[str]  # why each image is flagged or passed
    threshold: Threshold
    source: str  # "sampling" or "image detector"
    hgr: str  # weights file name
    harm_map: torch.Tensor | None = None  # (B, h, w) in [0, 1] at latent resolution
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def summary(self) -> list[dict]:
        return [{"index": i, "score": round(float(self.scores[i]), 5), "flagged": bool(self.flags[i]),
                 "coverage": round(float(self.coverage[i]), 3), "reason": self.reasons[i],
                 "categories": {c: round(float(self.category_scores[i, k]), 5) for k, c in enumerate(self.categories)}}
                for i in range(len(self))]


def judge(harm: GenerationHarm, categories: tuple[str, ...], threshold: Threshold, source: str, hgr: str,
          min_coverage: float = MIN_COVERAGE) -> HarmVerdicts:
    """Flag each generation: score above the threshold, or too little of the window seen to judge."""
    total = harm.total
    flags = total.flagged(threshold.value, min_coverage)
    reasons = []
    for i in range(flags.shape[0]):
        score, cov = float(total.score[i]), float(total.coverage[i])
        if cov < min_coverage:
            reasons.append(f"flagged: only {cov:.0%} of the score's noise window was visited (fail closed below "
                           f"{min_coverage:.0%}); score it with SafeCFG: Detect")
        elif score > threshold.value:
            top = max(range(len(categories)), key=lambda k: float(harm.categories[i, k]))
            reasons.append(f"flagged: score {score:.4f} > threshold {threshold.value:.4f} (mostly {categories[top]})")
        else:
            reasons.append(f"passed: score {score:.4f} <= threshold {threshold.value:.4f}")
    return HarmVerdicts(total.score, total.coverage, harm.categories, tuple(categories), flags, reasons,
                        threshold, source, hgr, harm.harm_map)
