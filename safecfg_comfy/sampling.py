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


def _euler_with_grad(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """k-diffusion's Euler step (ComfyUI's "euler" without churn) without its @torch.no_grad()."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **(extra_args or {}))
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


def differentiable_sample(model, noise: torch.Tensor, positive: list, negative: list, steps: int, cfg: float,
                          scheduler: str = "normal", seed: int = 0) -> torch.Tensor:
    """ComfyUI's Euler sampling (same latents as sampler "euler") with autograd kept: gradients reach
    the conditioning tensors through the UNet, ComfyUI's CFG and every pre-CFG hook that keeps its
    graph (SLD; SafeCFG patched with ``differentiable=True``). For white-box attacks; call it under
    ``torch.enable_grad()``."""
    import comfy.samplers

    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps)
    sampler = comfy.samplers.KSAMPLER(_euler_with_grad)
    return comfy.sample.sample_custom(model, noise, cfg, sampler, sigmas, positive, negative, torch.zeros_like(noise),
                                      disable_pbar=True, seed=seed)
