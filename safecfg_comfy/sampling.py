"""Sampling through ComfyUI's own code path (`comfy.sample.sample`), for training previews and benchmarks."""

from __future__ import annotations

import comfy.sample
import torch


def sample_latents(backend, model, prompts, negatives, seeds, cfg, steps, sampler="euler", scheduler="normal"):
    """Per-seed noise (a batch reproduces single runs) through comfy.sample.sample, in prompt order.

    Prompts and negatives of one conditioning shape (`backend.conditioning_shape`) sample as one
    batch; a mix (a prompt over CLIP's 75 tokens among short ones) samples one call per shape.
    """
    groups: dict[tuple, list[int]] = {}
    for i, (prompt, negative) in enumerate(zip(prompts, negatives, strict=True)):
        groups.setdefault((backend.conditioning_shape(prompt), backend.conditioning_shape(negative)), []).append(i)
    latents: list = [None] * len(prompts)
    for indices in groups.values():
        batch = _sample_batch(backend, model, [prompts[i] for i in indices], [negatives[i] for i in indices],
                              [seeds[i] for i in indices], cfg, steps, sampler, scheduler)
        for row, i in enumerate(indices):
            latents[i] = batch[row]
    return torch.stack(latents)


def _sample_batch(backend, model, prompts, negatives, seeds, cfg, steps, sampler, scheduler):
    empty = torch.zeros(1, *backend.latent_shape)
    noise = torch.cat([comfy.sample.prepare_noise(empty, s) for s in seeds])
    return comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, backend.conditioning(list(prompts)),
                               backend.conditioning(list(negatives)), torch.zeros_like(noise), seed=seeds[0],
                               disable_pbar=True)
