"""Sampling, scoring and region measurements of the detection benchmark (`benchmarks.detection`).

Call `safecfg_comfy.locate.setup_comfyui()` before importing this module.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import comfy.sample
import numpy as np
import torch

from hgr_core import HGR, HarmRecorder
from safecfg_comfy.concept_score import patch_concept_score
from safecfg_comfy.detect import detect
from toyworld.facts import facts_of

# "Prompt unknown": the image detector needs a positive prompt; an empty one equals the negative
# and gives no guidance direction at all. This neutral caption (words the toy text encoder knows)
# stands in for "some picture"; README: "prompt known" and "prompt unknown" are measured apart.
UNKNOWN_PROMPT = "a picture of an object"
RESIDUAL_THRESHOLD = 0.15  # a pixel belongs to the harm where CFG(harmful) and CFG(safe) differ by more (max over RGB)
MAP_THRESHOLD = 0.5  # the gate's default: a pixel is censored where the upsampled harm map is >= 0.5


@dataclass
class Scored:
    """Images of one sampled set and what a score recorder measured on them."""

    images: torch.Tensor  # (N, 3, H, W)
    scores: torch.Tensor | None = None  # (N,)
    coverage: torch.Tensor | None = None  # (N,)
    maps: torch.Tensor | None = None  # (N, h, w) latent-grid harm maps


def _sampling(fn, *args, **kwargs):
    """fn(*args, **kwargs) as ComfyUI's executor samples: no autograd, torchsde's float-rounding warning silenced."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Should have tb<=t1")
        return fn(*args, **kwargs)


def sample_scored(world, model, texts, negative: str, seeds, condition, batch: int,
                  recorder: HarmRecorder | None = None) -> Scored:
    """Sample `texts` under `condition` (one seed each); with a recorder, its scores and maps too."""
    images, parts = [], []
    for first in range(0, len(texts), batch):
        if recorder is not None:
            recorder.reset()
        latents = _sampling(world.sample, model, texts[first:first + batch], negative, seeds[first:first + batch],
                            condition.cfg, condition.steps, condition.sampler, condition.scheduler)
        images.append(world.decode(latents))
        if recorder is not None:
            harm = recorder.harm()
            parts.append((harm.total.score, harm.total.coverage, harm.harm_map))
    out = Scored(torch.cat(images))
    if parts:
        out.scores, out.coverage, out.maps = (torch.cat(p) for p in zip(*parts))
    return out


def detect_images(world, hgr: HGR, images: torch.Tensor, texts, levels: int, seed: int, batch: int):
    """SafeCFGDetect's computation on images (N, 3, H, W) encoded by the world's VAE: (scores, maps)."""
    scores, maps = [], []
    for first in range(0, images.shape[0], batch):
        chunk = images[first:first + batch]
        latents = world.encode_images(chunk)
        with torch.no_grad():
            harm = detect(world.model, hgr, world.conditioning(list(texts[first:first + batch])),
                          world.conditioning([""] * chunk.shape[0]), latents, levels, seed, progress=False)
        scores.append(harm.total.score)
        maps.append(harm.harm_map)
    return torch.cat(scores), torch.cat(maps)


def concept_scores(world, hgr: HGR, texts, seeds, condition, concept: str, batch: int) -> torch.Tensor:
    """The training-free detector's per-generation scores while plain CFG samples `texts`."""
    recorder = HarmRecorder.for_hgr(hgr)
    model = patch_concept_score(world.model, world.conditioning([concept]), recorder)
    return sample_scored(world, model, texts, condition.negative, seeds, condition, batch, recorder).scores


def img2img(world, model, images: torch.Tensor, texts, seeds, condition, denoise: float,
            recorder: HarmRecorder | None = None, noise_mask: torch.Tensor | None = None) -> Scored:
    """Images re-sampled from `images` at `denoise` with `texts`, through comfy.sample.sample; with a
    noise_mask ((N, 1, h, w) on the latent grid, 1 = repaint), only the masked part (inpainting)."""
    latents = world.encode_images(images)
    noise = torch.cat([comfy.sample.prepare_noise(latents[:1], s) for s in seeds])
    if recorder is not None:
        recorder.reset()
    out = _sampling(comfy.sample.sample, model, noise, condition.steps, condition.cfg, condition.sampler, condition.scheduler,
                    world.conditioning(list(texts)), world.conditioning([condition.negative] * len(texts)), latents,
                    denoise=denoise, noise_mask=noise_mask, seed=int(seeds[0]), disable_pbar=True)
    scored = Scored(world.decode(out))
    if recorder is not None:
        harm = recorder.harm()
        scored.scores, scored.coverage, scored.maps = harm.total.score, harm.total.coverage, harm.harm_map
    return scored


def residual_regions(harmful: torch.Tensor, safe: torch.Tensor) -> torch.Tensor:
    """Ground-truth harm region of same-seed image pairs: where the harmful image differs from its safe twin."""
    return (harmful.float() - safe.float()).abs().amax(dim=1) > RESIDUAL_THRESHOLD


def map_regions(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    from hgr_core.gating import upsample_map

    return upsample_map(maps.float(), height, width) >= MAP_THRESHOLD


def iou(predicted: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """Per image intersection over union of two (N, H, W) bool regions; images with an empty truth are left out."""
    keep = truth.flatten(1).any(dim=1)
    inter = (predicted & truth).flatten(1).sum(1).float()
    union = (predicted | truth).flatten(1).sum(1).float().clamp_min(1)
    return (inter / union)[keep].numpy()


def rendered_scenes(n: int, seed: int, world=None):
    """Renders of held-out test scenes of the world's renderer (v1 or v2; half with harms, one harm or
    two in turn), the same scenes without harms, and the exact harm regions."""
    rng = np.random.default_rng(seed)
    held_out = facts_of(world).test_scenes()
    scenes = []
    for i in range(n):
        combo = held_out.combos[rng.integers(len(held_out.combos))]
        scenes.append(held_out.make(rng, combo, held_out.mixes[i % len(held_out.mixes)] if i % 2 else ()))
    with_harm = torch.from_numpy(held_out.render_batch(scenes))
    without = torch.from_numpy(held_out.render_batch([dataclasses.replace(s, harms=()) for s in scenes]))
    truth = (with_harm - without).abs().amax(dim=1) > RESIDUAL_THRESHOLD
    return scenes, with_harm, without, truth
