"""On-policy rounds of the safety LoRA (DAgger, Ross et al. 2011, https://arxiv.org/abs/1011.0686):
after a round of training, the student (base UNet + LoRA, plain CFG, no HGR) samples the pool
itself, and the teacher's targets are computed at the states *it* visits.

Why: the first round learns only on the teacher's states (SafeCFG paths and the scoring pass's
plain-CFG paths). Where the student undershoots a little, its own path drifts to states with a mark
half drawn, which the teacher never visited; measured on the toy world with the negative
"blurry, low quality", the LoRA's unconditional pass reproduced 72% of the negative's share
(`teacher.move_negative_share`) on teacher states and about half on its own path, and half of the
images kept their harm. Rollout rows cover every pool prompt (clean ones keep their frozen
predictions on the student's paths too) under samplers, steps, scales and negatives drawn as the
teacher's are, with their own seed stream.

Targets at a rollout state x_t, from the frozen UNet (LoRA detached) and the HGR: eps_c and eps_u
on the prompt and the negative, SafeCFG's conditional eps_u + R(g), and for a non-empty negative
the share moved to the unconditional pass, exactly as for teacher rows.
"""

from __future__ import annotations

import random

import torch

from hgr_core import HGR, eps_from_denoised

from .teacher import (TeacherSettings, frozen_denoised, move_negative_share, negative_texts, redirected_eps,
                      stack_rows)


def state_recorder(model, states: list):
    """A clone of `model` whose pre-CFG hook appends (x, sigma) of every call and changes nothing."""

    def record(args):
        states.append((args["input"].detach().float(), args["sigma"].detach().float()))
        return args["conds_out"]

    patched = model.clone()
    patched.set_model_sampler_pre_cfg_function(record, disable_cfg1_optimization=True)
    return patched


@torch.no_grad()
def frozen_targets(backend, hgr: HGR, x: torch.Tensor, sigma: torch.Tensor, contexts: dict, negative: str,
                   cfg: float) -> dict:
    """Target fields (teacher.FIELDS less prompt/negative ids) at states x (B, C, H, W), sigma (scalar or (B,));
    contexts: the batch's cross-attention contexts under "prompts", "negative" and "empty"."""
    x, sigma = x.cpu(), sigma.cpu().reshape(-1).expand(x.shape[0])
    cond = frozen_denoised(backend, x, sigma, contexts["prompts"])
    uncond = frozen_denoised(backend, x, sigma, contexts["negative"])
    row = {"x": x, "sigma": sigma, "eps_c": eps_from_denoised(x, cond, sigma),
           "eps_teacher": redirected_eps(hgr, x, sigma, cond, uncond),
           "eps_u": eps_from_denoised(x, uncond, sigma), "eps_u_shift": torch.zeros(x.shape)}
    if negative:
        move_negative_share(backend, hgr, row, cfg, contexts["empty"])
    return row


@torch.no_grad()
def record_rollouts(backend, hgr: HGR, lora, prompts: list[str], settings: TeacherSettings,
                    batches: list[list[int]], round_index: int, share: tuple[int, int] = (0, 1)) -> dict:
    """Rows (teacher.FIELDS) at the states the student (LoRA attached, plain CFG) visits on `batches`;
    share (rank, world): only batch i with i % world == rank."""
    from safecfg_comfy.sampling import sample_latents  # ComfyUI's runtime: imported once setup_comfyui has run

    negatives = negative_texts(settings)
    draw = random.Random(f"rollouts {settings.seed} {round_index}")
    unet = backend.model.model.diffusion_model
    rows = []
    for b, batch in enumerate(batches):
        sampler, steps = draw.choice(settings.samplers), draw.randint(settings.steps_min, settings.steps_max)
        cfg, negative = draw.uniform(settings.cfg_min, settings.cfg_max), draw.choice(settings.negatives)
        if b % share[1] != share[0]:
            continue
        seeds = [3 * 2**29 + round_index * 100_003 + settings.seed * 10_007 + i for i in batch]  # not teacher/scoring seeds
        texts, states = [prompts[i] for i in batch], []
        handles = lora.attach(unet)
        try:
            sample_latents(backend, state_recorder(backend.model, states), texts, [negative] * len(batch), seeds,
                           cfg, steps, sampler, settings.scheduler)
        finally:
            for h in handles:
                h.remove()
        contexts = {"prompts": backend.conditioning(texts)[0][0], "negative": backend.conditioning([negative])[0][0],
                    "empty": backend.conditioning([""])[0][0]}  # encoded once per batch, not per state
        for x, sigma in states:
            row = frozen_targets(backend, hgr, x, sigma, contexts, negative, cfg)
            rows.append({**row, "prompt": torch.tensor(batch), "negative": torch.full((len(batch),), negatives.index(negative))})
    return {**stack_rows(rows), "negatives": negatives}
