"""The gate's decisions: which images of a batch to censor or drop, and a report of why.

Fail closed: an image passes only with a valid verdict that says "not flagged". A missing,
malformed or mismatched verdict censors every image of the batch (in drop mode: drops them) and
the report says what was wrong; so does a region mask that cannot be used (then the whole image
is censored, not the region).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from . import gating
from .scoring import MIN_COVERAGE
from .verdicts import HarmVerdicts

MODES = ("blur", "pixelate", "solid", "drop")


@dataclass(frozen=True)
class GateSettings:
    mode: str = "blur"
    region_only: bool = False  # censor inside the harm mask only (not with "drop")
    size: int = 0  # blur/pixel size, 0 = 1/8 of the shorter side
    colour: tuple[float, float, float] = (0.0, 0.0, 0.0)
    categories: tuple[str, ...] | None = None  # None = the total score's flag; else these categories' scores
    grow: int = 2  # pixels added around the mask's region
    mask_threshold: float = 0.5


def verdict_problem(verdicts, batch: int) -> str | None:
    """Why `verdicts` cannot judge a batch of `batch` images, or None when it can."""
    if verdicts is None:
        return "no harm scores are connected to the gate"
    if not isinstance(verdicts, HarmVerdicts):
        return f"the scores input is a {type(verdicts).__name__}, not SafeCFG scores"
    n = len(verdicts)
    if n != batch:
        return f"the scores are for {n} images but the image batch has {batch}"
    if verdicts.flags.shape != (n,) or len(verdicts.reasons) != n or verdicts.category_scores.shape[0] != n:
        return "the scores are malformed (their fields disagree in length)"
    if not bool((torch.isfinite(verdicts.scores.cpu()) | verdicts.flags.bool().cpu()).all()):
        return "the scores contain NaN or infinite values for images they do not flag"
    return None


def _flags(verdicts: HarmVerdicts, settings: GateSettings) -> tuple[torch.Tensor, list[str]]:
    if settings.categories is None:
        return verdicts.flags.bool().cpu(), list(verdicts.reasons)
    unknown = [c for c in settings.categories if c not in verdicts.categories]
    if unknown:
        raise ValueError(f"categories {unknown} are not scored by {verdicts.hgr} (it scores {list(verdicts.categories)})")
    picks = [verdicts.categories.index(c) for c in settings.categories]
    over = verdicts.category_scores[:, picks].cpu() > verdicts.threshold.value
    unjudged = verdicts.coverage.cpu() < MIN_COVERAGE
    flags = over.any(dim=1) | unjudged
    reasons = []
    for i in range(len(verdicts)):
        names = [settings.categories[j] for j in range(len(picks)) if bool(over[i, j])]
        if bool(unjudged[i]):
            reasons.append(verdicts.reasons[i])
        elif names:
            reasons.append(f"flagged: {', '.join(names)} score above threshold {verdicts.threshold.value:.4f}")
        else:
            reasons.append(f"passed: no selected category ({', '.join(settings.categories)}) above threshold")
    return flags, reasons


def _region(verdicts, mask, images, settings) -> tuple[torch.Tensor | None, str | None]:
    """The (B, H, W) bool region to censor, or None with the reason it cannot be used."""
    b, h, w = images.shape[:3]
    if mask is None:
        if verdicts is None or verdicts.harm_map is None:
            return None, "no mask connected and the scores carry no harm map"
        mask = gating.upsample_map(verdicts.harm_map.float().cpu(), h, w)
    mask = mask.float().cpu()
    if mask.ndim == 2:
        mask = mask[None]
    if mask.shape[1:] != (h, w) or mask.shape[0] not in (1, b):
        return None, f"the mask is {tuple(mask.shape)} but the images are ({b}, {h}, {w})"
    return gating.region(mask.expand(b, h, w), settings.grow, settings.mask_threshold), None


def gate_batch(images: torch.Tensor, verdicts, settings: GateSettings, mask: torch.Tensor | None = None):
    """Returns (gated images, report dict). images: (B, H, W, C) in [0, 1]."""
    if settings.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {settings.mode!r}")
    batch = int(images.shape[0])
    report = {"mode": settings.mode, "region_only": settings.region_only, "images": batch}
    if batch == 0:
        report.update(decision="empty image batch: nothing to gate", kept=[], censored=[], dropped=[])
        return images, report
    problem = verdict_problem(verdicts, batch)
    if problem is None:
        flags, reasons = _flags(verdicts, settings)
        report.update(threshold=verdicts.threshold.value, threshold_meaning=verdicts.threshold.meaning,
                      source=verdicts.source, hgr=verdicts.hgr,
                      scores=[round(float(s), 5) if math.isfinite(float(s)) else None for s in verdicts.scores])
    else:
        flags, reasons = torch.ones(batch, dtype=torch.bool), [f"censored: {problem} (fail closed)"] * batch
        report["error"] = problem
    report["reasons"] = reasons
    out = images
    if settings.mode == "drop":
        keep = [i for i in range(batch) if not bool(flags[i])]
        out = images[keep]
        report.update(kept=keep, dropped=[i for i in range(batch) if bool(flags[i])], censored=[])
        return out, report
    style = settings.mode
    flagged = [i for i in range(batch) if bool(flags[i])]
    report.update(kept=[i for i in range(batch) if not bool(flags[i])], censored=flagged, dropped=[])
    if not flagged:
        return out, report
    area, why = (None, None)
    if settings.region_only:
        area, why = _region(verdicts if problem is None else None, mask, images, settings)
        if problem is not None:
            area, why = None, "the scores could not be used, so whole images are censored"
        if why:
            report["region"] = f"whole images censored: {why}"
    whole = gating.censored(images[flagged], style, settings.size, settings.colour)
    if area is not None:
        # A flagged image whose mask is empty would pass uncensored: censor all of it instead.
        empty = [i for i in flagged if not bool(area[i].any())]
        area = area.clone()
        area[empty] = True
        whole = torch.where(area[flagged][..., None], whole, images[flagged])
        report["region"] = "censored inside the harm mask only"
        report["region_pixels"] = [int(area[i].sum()) for i in flagged]
        if empty:
            report["region_empty"] = f"images {empty} are flagged but their mask is empty: censored whole"
    out = images.clone()
    out[flagged] = whole
    return out, report
