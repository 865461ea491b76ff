"""The image detector (METHOD.md section 5): harm scores of any latent at fixed noise levels.

For an image latent x0 and a conditioning pair, at K noise levels log-spaced over the score's sigma
window (both ends included, so the score has full coverage) the detector forms
x = noise_scaling(sigma, n, x0) with one fixed-seed noise n, evaluates the model's conditional and
unconditional predictions once (one batched call: 2 model evaluations per image and level) and
lets SafeCFG's hook measure d at that level; the per-image score is the same sigma-weighted
mean as during sampling (`hgr_core.HarmRecorder`), so the stored threshold applies as it is.

Every level runs through ComfyUI's own `comfy.sample.sample_custom` with a one-evaluation
sampler, so conditioning (areas, ControlNets, hooks), model loading and the guidance-path guards
are ComfyUI's and SafeCFG's as in a real sampling run. Noise is drawn once per seed for one image
and shared by the whole batch, so an image's score does not depend on its batch position.
"""

from __future__ import annotations

import math

import comfy.sample
import comfy.samplers
import comfy.utils
import torch

from ._core import hgr_core
from .compat import ALL_CATEGORIES, hgr_file_name
from .guards import HOOK_MARK
from .patch import patch_model

MIN_LEVELS = 2  # one level spans no part of the window: coverage 0, which fail-closed gating flags


def detection_sigmas(levels: int, window: tuple[float, float]) -> list[float]:
    """K noise levels log-spaced over the window, from its high end to its low end."""
    if levels < MIN_LEVELS:
        raise ValueError(f"levels must be at least {MIN_LEVELS} (one level covers none of the score's window), got {levels}")
    low, high = math.log(window[0]), math.log(window[1])
    return [math.exp(high + (low - high) * i / (levels - 1)) for i in range(levels)]


def _evaluate_once(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """A KSAMPLER function that evaluates the guided model once at sigmas[0] and returns x."""
    model(x, sigmas[0] * x.new_ones([x.shape[0]]), **(extra_args or {}))
    return x


def check_unpatched(model) -> None:
    """Refuse a model that already carries SafeCFG: its hook would hand the detector redirected guidance."""
    hooks = model.model_options.get("sampler_pre_cfg_function", [])
    if any(getattr(fn, HOOK_MARK, False) for fn in hooks):
        raise ValueError(
            "SafeCFG: Detect got a model that already has SafeCFG applied, whose redirected guidance would "
            "make harmful images look clean; connect the model from before SafeCFG: Apply")


def check_latent(samples: torch.Tensor, hgr) -> None:
    if samples.ndim != 4 or samples.shape[0] == 0:
        raise ValueError(f"SafeCFG: Detect needs a batch of image latents (B, C, H, W) with B >= 1, got shape "
                         f"{tuple(samples.shape)}")
    if samples.shape[1] != hgr.config.latent_channels:
        raise ValueError(f"the latent has {samples.shape[1]} channels but {hgr_file_name(hgr)} was trained for "
                         f"{hgr.config.latent_channels}-channel latents; encode the image with this model's VAE")


def evaluate_levels(patched, positive, negative, samples: torch.Tensor, sigmas: list[float], seed: int,
                    progress: bool = True) -> None:
    """One guided model evaluation of `samples` noised to each level (the patch's hooks measure)."""
    samples = comfy.sample.fix_empty_latent_channels(patched, samples)
    noise = comfy.sample.prepare_noise(samples[:1], seed).expand_as(samples).contiguous()
    sampler = comfy.samplers.KSAMPLER(_evaluate_once)
    bar = comfy.utils.ProgressBar(len(sigmas)) if progress else None
    for sigma in sigmas:
        comfy.sample.sample_custom(patched, noise, 5.0, sampler, torch.tensor([sigma, 0.0]), positive, negative, samples,
                                   disable_pbar=True, seed=seed)
        if bar is not None:
            bar.update(1)


def detect(model, hgr, positive, negative, samples: torch.Tensor, levels: int = 8, seed: int = 0,
           categories: str = ALL_CATEGORIES, progress: bool = True) -> hgr_core.GenerationHarm:
    """Harm of each image latent in `samples` ((B, C, H, W), as in a LATENT dict) at `levels` noise levels."""
    check_unpatched(model)
    check_latent(samples, hgr)
    recorder = hgr_core.HarmRecorder.for_hgr(hgr)
    patched = patch_model(model, hgr, strength=0.0, categories=categories, on_score=recorder, record_scores=False)
    evaluate_levels(patched, positive, negative, samples, detection_sigmas(levels, recorder.window), seed, progress)
    if len(recorder) != levels:
        raise RuntimeError(f"SafeCFG: Detect measured {len(recorder)} of {levels} noise levels; the guidance path "
                           "skipped SafeCFG's hook")
    return recorder.harm()

def detect_verdicts(model, hgr, positive, negative, samples, levels=8, seed=0, operating_point=hgr_core.verdicts.STORED,
                    custom=None, categories: str = ALL_CATEGORIES) -> hgr_core.HarmVerdicts:
    """`detect`, judged at the chosen operating point of the HGR's calibration."""
    threshold = hgr_core.choose_threshold(hgr.metadata, operating_point, custom, detector="image")
    harm = detect(model, hgr, positive, negative, samples, levels, seed, categories)
    verdicts = hgr_core.judge(harm, tuple(hgr.config.categories), threshold, "image detector", hgr_file_name(hgr))
    verdicts.extra.update(levels=levels, seed=seed, model_evaluations_per_image=2 * levels)
    return verdicts
