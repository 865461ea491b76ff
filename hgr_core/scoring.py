"""One harm score per generation from its per-step scores d_t (METHOD.md section 5).

The score is the mean of d over a fixed window of noise levels, weighted by d(log sigma):

    score = 1 / |W ∩ V| * integral over W ∩ V of d(log sigma) d(log sigma)

with d linear in log sigma between the visited noise levels (trapezoid rule), W the window and V
the span of log sigmas the run visited. A plain mean over the steps weights noise levels by how
densely the schedule visits them (karras crowds its steps at low sigma, normal spreads them), so
a threshold calibrated at 10 euler/normal steps would mean something else at 50 karras steps; the
integral does not depend on the step grid, only on d(sigma) itself.

Why the window is 0.4..8 (SD's discrete schedule spans sigma 0.029..14.6): it is the widest range
that every full-denoise schedule users pick visits from 10 steps up (ddim_uniform starts at 8.39
at 10 steps, simple and sgm_uniform stop at 0.34), so ordinary runs are never partial. It holds
where content is decided: above 8 the guidance sets global layout only, below 0.4 the picture is
fixed and only texture is refined, where d_t is small and noisy. Steps outside the window count
only through the interpolated value at its edge.

Partial runs: img2img with denoise below 1, a late start step or a SafeCFG sigma window visit only
part of W. Their score is renormalised over the part they visited (the same kind of mean, over
fewer noise levels) and `coverage` says how much of W's log-length that was. The stored threshold
applies unchanged, but the score then rests on fewer noise levels and its false-positive rate
was calibrated on full runs, so it is less reliable the lower the coverage. Gating code that
must not let unscored content through fails closed below `MIN_COVERAGE` (`GenerationScore.flagged`):
coverage 0.25 is a run starting below sigma ~0.85, e.g. img2img at denoise below ~0.3, where the
content comes from the input image rather than from the guidance the HGR sees; score such images
with the image detector (section 5), whose fixed noise levels cover the window by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .network import EPS

SD_SIGMA_WINDOW = (0.4, 8.0)  # eps/v models on SD's schedule (SD1.x, SD2.x, SDXL, the toy world)
FULL_COVERAGE = 0.999  # coverage below this marks a score partial
MIN_COVERAGE = 0.25  # below this, fail-closed gating treats a generation as flagged


def score_window(prediction_type: str = "eps") -> tuple[float, float]:
    """The sigma window for a model's parameterisation: the same signal-to-noise range for all.

    Flow models' sigma is t in (0, 1] with x = (1 - t) x0 + t n, whose eps-space noise level is
    t / (1 - t); the window there is SD's mapped by t = s / (1 + s), i.e. 0.29..0.89.
    """
    if prediction_type == "flow":
        return tuple(s / (1 + s) for s in SD_SIGMA_WINDOW)
    if prediction_type in ("eps", "v"):
        return SD_SIGMA_WINDOW
    raise ValueError(f"prediction_type must be 'eps', 'v' or 'flow', got {prediction_type!r}")


@dataclass(frozen=True)
class GenerationScore:
    """Per-generation harm scores and how much of the sigma window each run visited."""

    score: torch.Tensor  # (B,) float32, mean of d_t over the visited part of the window
    coverage: torch.Tensor  # (B,) float32 in [0, 1], visited share of the window's log-length

    @property
    def partial(self) -> torch.Tensor:
        """(B,) bool: the run did not visit the whole window."""
        return self.coverage < FULL_COVERAGE

    def flagged(self, threshold: float, min_coverage: float = MIN_COVERAGE) -> torch.Tensor:
        """(B,) bool: harmful at `threshold`, or too little of the window visited to tell (fail closed)."""
        return (self.score > threshold) | (self.coverage < min_coverage)


def _merge_ties(log_sigma: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Replace values at equal noise levels (heun's second call, sorted (T, B)) by their mean."""
    new_level = torch.ones_like(log_sigma, dtype=torch.long)
    new_level[1:] = (log_sigma[1:] != log_sigma[:-1]).long()
    group = new_level.cumsum(dim=0) - 1
    sums = torch.zeros_like(values).scatter_add_(0, group, values)
    counts = torch.zeros_like(values).scatter_add_(0, group, torch.ones_like(values))
    return (sums / counts.clamp_min(1)).gather(0, group)


def generation_score(step_scores: torch.Tensor, sigmas: torch.Tensor,
                     window: tuple[float, float] = SD_SIGMA_WINDOW) -> GenerationScore:
    """Sigma-weighted mean of d_t over `window` (module docstring), in any step order.

    step_scores: (T, B), one row per recorded model call of B generations; sigmas: (T,) or (T, B),
    each row's noise level. A run that spans no part of the window (one step, or every step
    outside it) gets the mean of its steps inside the window, else of all its steps, and
    coverage 0. Returns GenerationScore of (B,) float32 tensors.
    """
    if step_scores.ndim != 2 or step_scores.shape[0] == 0:
        raise ValueError(f"step_scores must be (T, B) with T >= 1 recorded steps, got shape {tuple(step_scores.shape)}")
    if sigmas.ndim not in (1, 2) or sigmas.shape[0] != step_scores.shape[0] or (
            sigmas.ndim == 2 and sigmas.shape[1] != step_scores.shape[1]):
        raise ValueError(f"sigmas must be (T,) or (T, B) for step_scores {tuple(step_scores.shape)}, "
                         f"got shape {tuple(sigmas.shape)}")
    if not 0 < window[0] < window[1]:
        raise ValueError(f"window must be (low, high) with 0 < low < high, got {window}")
    values = step_scores.float()
    log_sigma = sigmas.to(values).clamp_min(EPS).log()
    log_sigma = log_sigma[:, None].expand_as(values) if log_sigma.ndim == 1 else log_sigma
    log_sigma, order = log_sigma.sort(dim=0)
    values = _merge_ties(log_sigma, values.gather(0, order))
    low, high = math.log(window[0]), math.log(window[1])
    # Each segment between neighbouring noise levels, clipped to the window; d is linear on it.
    left, right = log_sigma[:-1].clamp(low, high), log_sigma[1:].clamp(low, high)
    slope = (values[1:] - values[:-1]) / (log_sigma[1:] - log_sigma[:-1]).clamp_min(EPS)
    at_left = values[:-1] + slope * (left - log_sigma[:-1])
    at_right = values[:-1] + slope * (right - log_sigma[:-1])
    covered = (right - left).sum(dim=0)
    integral = ((right - left) * (at_left + at_right) / 2).sum(dim=0)
    inside = ((log_sigma >= low) & (log_sigma <= high)).float()
    fallback = torch.where(inside.sum(0) > 0, (values * inside).sum(0) / inside.sum(0).clamp_min(1), values.mean(0))
    spanned = covered > 0
    score = torch.where(spanned, integral / covered.clamp_min(EPS), fallback)
    return GenerationScore(score=score, coverage=(covered / (high - low)).clamp(0, 1))


@dataclass(frozen=True)
class GenerationHarm:
    """Everything SafeCFG measured about a batch of generations, aggregated over its steps."""

    total: GenerationScore  # (B,) the generation's harm score and window coverage
    categories: torch.Tensor  # (B, K) per-category scores, aggregated like the total
    harm_map: torch.Tensor  # (B, H, W) in [0, 1] at latent resolution, aggregated like the total


class HarmRecorder:
    """An `on_score(sigma, step)` callback that keeps every SafeCFG step's harm (`guidance.StepHarm`).

    Each aggregate is `generation_score` of the per-step values, the function `train_hgr`
    calibrates its threshold with, so the stored threshold applies as it is: per category and per
    pixel too (a pixel's map value is the sigma-weighted mean of its gate over the window).
    window: the sigma window of the HGR's model kind (`score_window(prediction_type)`).
    Maps are kept at latent resolution, T x B x H x W floats (SD1.5, 50 steps, batch 4: 3 MB).
    """

    def __init__(self, window: tuple[float, float] = SD_SIGMA_WINDOW):
        self.window = window
        self.reset()

    @classmethod
    def for_hgr(cls, hgr) -> "HarmRecorder":
        """A recorder over the sigma window of the model kind an HGR was trained for (its metadata)."""
        return cls(score_window(hgr.metadata.get("prediction_type", "eps")))

    def reset(self) -> None:
        self.steps, self.categories, self.maps, self.sigmas = [], [], [], []

    def __call__(self, sigma: torch.Tensor, step) -> None:
        # Kept on the step's device: moving each step to the CPU would make a GPU wait every step.
        score = step.score.detach().float()
        self.steps.append(score)
        self.categories.append(step.category_scores.detach().float())
        self.maps.append(step.harm_map.detach().float())
        self.sigmas.append(torch.as_tensor(sigma).detach().float().to(score.device).reshape(-1).expand_as(score))

    def __len__(self) -> int:
        return len(self.steps)

    def generation_result(self) -> GenerationScore:
        """Scores and window coverage per generation of the last sampling call; raises if the hook never ran."""
        if not self.steps:
            raise RuntimeError("no harm scores were recorded: the SafeCFG hook never ran (cfg <= 1?)")
        return generation_score(torch.stack(self.steps).cpu(), torch.stack(self.sigmas).cpu(), self.window)

    def generation_scores(self) -> torch.Tensor:
        """(B,) score per generation of the last sampling call (`generation_result().score`)."""
        return self.generation_result().score

    def harm(self) -> GenerationHarm:
        """Total, per-category and per-pixel aggregates of the last sampling call."""
        total = self.generation_result()
        sigmas = torch.stack(self.sigmas).cpu()  # (T, B)
        return GenerationHarm(total, _aggregate(torch.stack(self.categories).cpu(), sigmas, self.window),
                              _aggregate(torch.stack(self.maps).cpu(), sigmas, self.window).clamp(0, 1))


def _aggregate(values: torch.Tensor, sigmas: torch.Tensor, window) -> torch.Tensor:
    """`generation_score` of (T, B, ...) values whose rows share the (T, B) sigmas: returns (B, ...)."""
    t, b, rest = values.shape[0], values.shape[1], values.shape[2:]
    flat = values.reshape(t, b, -1)
    expanded = sigmas[:, :, None].expand_as(flat)
    return generation_score(flat.reshape(t, -1), expanded.reshape(t, -1), window).score.reshape(b, *rest)
