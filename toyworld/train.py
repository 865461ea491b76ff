"""Joint training of the world's UNet and text encoder (eps prediction, CFG caption dropout).

The loss is SD's: ``x = x0 + sigma * eps`` at a uniform random timestep of ComfyUI's own
``model_sampling`` (SD's scaled-linear schedule), the UNet sees ``x / sqrt(sigma^2 + 1)`` and the
timestep index, exactly the input ``BaseModel._apply_model`` builds at sampling time, and predicts
eps. Captions are drawn fresh each step (``captions.training_caption``); 12% are replaced by the
empty prompt so CFG has an unconditional model to push away from.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from einops import reduce

from hgr_core import ema_update, warmup_cosine

from .captions import training_caption
from .text import SPECIALS, UNK, TextEncoder, tokenize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiffusionTrainConfig:
    steps: int = 3000  # optimiser steps, ~0.47 s each on one free core; 1500 fall short (build.py)
    batch: int = 32  # twice the updates per CPU second of batch 64
    lr: float = 2e-3  # AdamW, linear warm-up then cosine decay to lr_min_ratio * lr
    lr_min_ratio: float = 0.05
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.998  # EMA of UNet and text encoder; the EMA copies are shipped
    caption_dropout: float = 0.12  # fraction of captions replaced by "" (CFG's unconditional)
    unk_rate: float = 0.02  # word tokens replaced by <unk>, so unknown words mean little
    min_snr_gamma: float = 5.0  # Min-SNR-gamma loss weight, min(1, gamma * sigma^2); 0 = plain MSE
    text_lr_mult: float = 3.0  # text encoder lr = lr * this: each word is in few captions
    seed: int = 0


def _caption_ids(text_encoder: TextEncoder, scenes, rng, cfg: DiffusionTrainConfig, caption) -> torch.Tensor:
    prompts = ["" if rng.random() < cfg.caption_dropout else caption(sc, rng) for sc in scenes]
    ids = tokenize(text_encoder.cfg, prompts)
    unk = (ids >= len(SPECIALS)) & (torch.from_numpy(rng.random(ids.shape)) < cfg.unk_rate)
    return ids.masked_fill(unk, UNK)


def _batch_loss(model, text_encoder: TextEncoder, latents: torch.Tensor, scenes, cfg: DiffusionTrainConfig, caption,
                rng, gen: torch.Generator) -> torch.Tensor:
    """The diffusion loss of one random batch of scenes with fresh captions."""
    idx = rng.integers(len(scenes), size=cfg.batch)
    ids = _caption_ids(text_encoder, [scenes[i] for i in idx], rng, cfg, caption)
    return diffusion_loss(model, text_encoder, latents[torch.from_numpy(idx)], ids, gen, cfg.min_snr_gamma)


def _step(loss: torch.Tensor, opt, sched, params, grad_clip: float) -> None:
    """One optimiser step: backward, clip the gradient norm, step the optimiser and the schedule."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    sched.step()


def diffusion_loss(model, text_encoder: TextEncoder, x0: torch.Tensor, ids: torch.Tensor, gen: torch.Generator,
                   min_snr_gamma: float = 0.0):
    """Squared eps error at uniform random timesteps; x0 are model-space latents.

    With ``min_snr_gamma`` > 0 each sample is weighted by min(SNR, gamma) / SNR = min(1, gamma sigma^2)
    (Min-SNR weighting, Hang et al. 2023, https://arxiv.org/abs/2303.09556): nearly clean steps,
    which teach only fine detail, stop dominating the gradient, and training converges faster.
    """
    sigmas = model.model_sampling.sigmas
    t = torch.randint(0, len(sigmas), (x0.shape[0],), generator=gen)
    sigma = sigmas[t].view(-1, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=gen)
    x = x0 + sigma * eps
    context = text_encoder(ids)
    pred = model.diffusion_model(x / torch.sqrt(sigma**2 + 1), t.float(), context=context)
    per_sample = reduce((pred - eps) ** 2, "b ... -> b", "mean")
    if min_snr_gamma > 0:
        per_sample = per_sample * (min_snr_gamma * sigma.flatten() ** 2).clamp(max=1)
    return per_sample.mean()


def train_diffusion(model, text_encoder: TextEncoder, latents: torch.Tensor, scenes, cfg: DiffusionTrainConfig,
                    monitor=None, monitor_every: int = 0, caption=training_caption, freeze_text: bool = False):
    """Train in place; returns EMA copies ``(unet, text_encoder)`` in eval mode.

    latents: (N, 4, 8, 8) model-space latents of ``scenes`` (N of them).
    monitor: optional ``fn(step, ema_unet, ema_text)`` called every ``monitor_every`` steps.
    caption: ``fn(scene, rng) -> str``, the world's training captions (v1's by default).
    freeze_text: train the UNet only (a fine-tune that keeps the base's text encoder, as most
    community fine-tunes and every LoRA-only or UNet merge do); the returned text encoder is unchanged.
    """
    if len(latents) != len(scenes):
        raise ValueError(f"{len(latents)} latents for {len(scenes)} scenes; they must pair up")
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    unet = model.diffusion_model.train()
    text_encoder.train(not freeze_text).requires_grad_(not freeze_text)
    params = [*unet.parameters(), *([] if freeze_text else text_encoder.parameters())]
    groups = [{"params": list(unet.parameters())}]
    if not freeze_text:
        groups.append({"params": list(text_encoder.parameters()), "lr": cfg.lr * cfg.text_lr_mult})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.steps, cfg.warmup, cfg.lr_min_ratio))
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    start, running = time.time(), None
    for step in range(cfg.steps):
        loss = _batch_loss(model, text_encoder, latents, scenes, cfg, caption, rng, gen)
        _step(loss, opt, sched, params, cfg.grad_clip)
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))  # short memory early on
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text, text_encoder, decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == cfg.steps - 1:
            log.info("diffusion step %d/%d loss %.4f (%.0f s)", step, cfg.steps, running, time.time() - start)
        if monitor is not None and monitor_every and (step + 1) % monitor_every == 0 and step + 1 < cfg.steps:
            monitor(step + 1, ema_unet, ema_text)
    return ema_unet, ema_text


def train_lora(model, text_encoder: TextEncoder, lora, latents: torch.Tensor, scenes, cfg: DiffusionTrainConfig,
               caption=training_caption):
    """Train only ``lora`` (a ``training.lora.LoRA``) on the diffusion loss, UNet and text encoder frozen;
    ``cfg.lr``, warm-up, decay and clipping as in ``train_diffusion`` (no EMA: the LoRA is returned as
    trained, in eval mode). The UNet is never modified: the LoRA runs as forward hooks while training."""
    if len(latents) != len(scenes):
        raise ValueError(f"{len(latents)} latents for {len(scenes)} scenes; they must pair up")
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.diffusion_model.eval().requires_grad_(False)
    text_encoder.eval().requires_grad_(False)
    params = list(lora.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.steps, cfg.warmup, cfg.lr_min_ratio))
    handles = lora.attach(model.diffusion_model)
    try:
        for step in range(cfg.steps):
            loss = _batch_loss(model, text_encoder, latents, scenes, cfg, caption, rng, gen)
            _step(loss, opt, sched, params, cfg.grad_clip)
            if step % 100 == 0 or step == cfg.steps - 1:
                log.info("LoRA step %d/%d loss %.4f", step, cfg.steps, loss.item())
    finally:
        for handle in handles:
            handle.remove()
    return lora.eval()
