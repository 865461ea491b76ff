"""Sampling through ComfyUI's own code path (`comfy.sample.sample`), for training previews and benchmarks."""

from __future__ import annotations

import comfy.sample
import torch


def sample_latents(backend, model, prompts, negatives, seeds, cfg, steps, sampler="euler", scheduler="normal"):
    """Per-seed noise (a batch reproduces single runs) through comfy.sample.sample."""
    empty = torch.zeros(1, *backend.latent_shape)
    noise = torch.cat([comfy.sample.prepare_noise(empty, s) for s in seeds])
    return comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, backend.conditioning(list(prompts)),
                               backend.conditioning(list(negatives)), torch.zeros_like(noise), seed=seeds[0],
                               disable_pbar=True)
