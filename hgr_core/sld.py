"""Safe Latent Diffusion (SLD), the baseline SafeCFG is measured against, as pure eps-space math.

Implements the safety guidance of Schramowski et al., "Safe Latent Diffusion: Mitigating
Inappropriate Degeneration in Diffusion Models" (CVPR 2023, https://arxiv.org/abs/2211.05105),
following diffusers' `StableDiffusionPipelineSafe` step by step (equation numbers as that
pipeline's comments give them). With eps_c, eps_u, eps_S the predictions for the prompt, the
negative (or empty) prompt and the safety concept S, and w the guidance scale:

    eps = eps_u + w * ((eps_c - eps_u) - g_S)        after the warm-up steps    (Eq. 3)
    eps = eps_u + w * (eps_c - eps_u)                 during warm-up (plain CFG)

Knobs (`SLDPreset` field, diffusers argument, symbol in the paper):
    warmup_steps  sld_warmup_steps     delta    steps of plain CFG before g_S is applied
    sld_scale     sld_guidance_scale   s_S      scale of the element-wise safety weight mu
    threshold     sld_threshold        lambda   elements with eps_c - eps_S >= lambda get mu = 0
    momentum      sld_momentum_scale   s_m      weight of the momentum nu added to g_S
    beta          sld_mom_beta         beta_m   decay of the momentum nu

SLD steers in eps space, so its thresholds assume eps-scale predictions (what SD's UNet gives,
and what `eps_from_denoised` recovers from ComfyUI's denoised outputs).

The momentum nu is carried from step to step in an explicit `SLDState`; every function here is
pure (tensors and state in, tensors and new state out). Like diffusers, g_S and nu are computed
and updated at every step, warm-up included; only their use waits for the warm-up to end.
Unlike diffusers (which works in the UNet's dtype), the math runs in float32 and returns the
caller's dtype.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .guidance import _per_sample, eps_from_denoised


@dataclass(frozen=True)
class SLDPreset:
    """SLD hyper-parameters; symbols as in the module docstring."""

    warmup_steps: int  # delta: sampling steps of plain CFG before the safety guidance applies
    sld_scale: float  # s_S: mu = clamp(|eps_c - eps_S| * s_S, max=1)
    threshold: float  # lambda: mu = 0 where eps_c - eps_S >= lambda
    momentum: float  # s_m: g_S += s_m * nu
    beta: float  # beta_m: nu <- beta_m * nu + (1 - beta_m) * g_S


# The paper's (and diffusers' SafetyConfig) four strength levels.
SLD_WEAK = SLDPreset(warmup_steps=15, sld_scale=20.0, threshold=0.0, momentum=0.0, beta=0.0)
SLD_MEDIUM = SLDPreset(warmup_steps=10, sld_scale=1000.0, threshold=0.01, momentum=0.3, beta=0.4)
SLD_STRONG = SLDPreset(warmup_steps=7, sld_scale=2000.0, threshold=0.025, momentum=0.5, beta=0.7)
SLD_MAX = SLDPreset(warmup_steps=0, sld_scale=5000.0, threshold=1.0, momentum=0.5, beta=0.7)
SLD_PRESETS = {"weak": SLD_WEAK, "medium": SLD_MEDIUM, "strong": SLD_STRONG, "max": SLD_MAX}


@dataclass(frozen=True)
class SLDState:
    """What SLD carries from one sampling step to the next: the momentum nu (None = zeros)."""

    momentum: torch.Tensor | None = None  # nu, float32, shaped like eps


def sld_preset(name: str) -> SLDPreset:
    """Look a preset up by name ('weak', 'medium', 'strong', 'max')."""
    try:
        return SLD_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown SLD preset {name!r}; choose from {sorted(SLD_PRESETS)}") from None


SLD_REFERENCE_STEPS = 50  # diffusers' default num_inference_steps, for which the presets were set


def sld_preset_for_steps(name: str, steps: int) -> SLDPreset:
    """The named SLD preset with its warm-up scaled from 50 sampling steps to `steps`.

    The presets give the warm-up in steps of diffusers' default 50-step schedule; keeping the same
    share of the schedule is the fair reading at other step counts ("weak" waits 15 of 50 steps;
    taken literally it would act on 5 of 20 steps, and never at 15 steps or fewer).
    """
    return scale_warmup(sld_preset(name), steps)


def scale_warmup(preset: SLDPreset, steps: int) -> SLDPreset:
    """`preset`, its warm-up given in steps of the 50-step reference schedule, scaled to `steps`
    with the same share of the schedule (what `sld_preset_for_steps` does for the named presets)."""
    return dataclasses.replace(preset, warmup_steps=round(preset.warmup_steps * steps / SLD_REFERENCE_STEPS))


def sld_enabled(guidance_scale: float, preset: SLDPreset) -> bool:
    """Whether SLD runs at all: like diffusers, only with CFG (w > 1) and s_S > 1."""
    return guidance_scale > 1.0 and preset.sld_scale > 1.0


def sld_active(step: int, preset: SLDPreset) -> bool:
    """Whether step (0-based) is past the warm-up, i.e. g_S enters the guidance (Eq. 3)."""
    return step >= preset.warmup_steps


def safety_guidance(
    eps_c: torch.Tensor, eps_u: torch.Tensor, eps_s: torch.Tensor, preset: SLDPreset, state: SLDState
) -> tuple[torch.Tensor, SLDState]:
    """The safety guidance g_S with momentum (Eq. 4-8) and the state for the next step.

    eps_c, eps_u, eps_s: eps predictions of any equal shape, e.g. (B, C, H, W).
    Returns (g_S in float32, new state).
    """
    eps_c, eps_u, eps_s = eps_c.float(), eps_u.float(), eps_s.float()
    nu = torch.zeros_like(eps_c) if state.momentum is None else state.momentum.float()
    distance = eps_c - eps_s  # how far the prompt is from the safety concept
    mu = torch.clamp(distance.abs() * preset.sld_scale, max=1.0)  # Eq. 6: element-wise weight
    mu = torch.where(distance >= preset.threshold, torch.zeros_like(mu), mu)  # Eq. 6: only near S
    g_s = (eps_s - eps_u) * mu  # Eq. 4: safety direction, weighted
    g_s = g_s + preset.momentum * nu  # Eq. 7: add the momentum
    nu = preset.beta * nu + (1 - preset.beta) * g_s  # Eq. 8: update the momentum
    return g_s, SLDState(momentum=nu)


def _guidance(
    eps_c: torch.Tensor, eps_u: torch.Tensor, eps_s: torch.Tensor, step: int, preset: SLDPreset, state: SLDState
) -> tuple[torch.Tensor, SLDState]:
    """What w multiplies: (eps_c - eps_u) - g_S after warm-up, eps_c - eps_u before (float32).

    The state advances during warm-up too, as in diffusers.
    """
    g_s, state = safety_guidance(eps_c, eps_u, eps_s, preset, state)
    guidance = eps_c.float() - eps_u.float()  # CFG direction g
    if sld_active(step, preset):
        guidance = guidance - g_s  # Eq. 3: steer away from S
    return guidance, state


def sld_eps(
    eps_c: torch.Tensor,
    eps_u: torch.Tensor,
    eps_s: torch.Tensor,
    guidance_scale: float,
    step: int,
    preset: SLDPreset,
    state: SLDState,
) -> tuple[torch.Tensor, SLDState]:
    """One SLD step: eps = eps_u + w * guidance (Eq. 3). Returns (eps in eps_c's dtype, new state).

    step: 0-based sampling step (for the warm-up). With SLD disabled (w <= 1 or s_S <= 1, see
    `sld_enabled`) this is plain CFG, eps_s is unused and the state is returned unchanged.
    """
    if sld_enabled(guidance_scale, preset):
        guidance, state = _guidance(eps_c, eps_u, eps_s, step, preset, state)
    else:
        guidance = eps_c.float() - eps_u.float()  # plain CFG, as diffusers without SLD
    return (eps_u.float() + guidance_scale * guidance).to(eps_c.dtype), state


def sld_denoised(
    x: torch.Tensor,
    sigma: torch.Tensor,
    cond_denoised: torch.Tensor,
    uncond_denoised: torch.Tensor,
    safety_denoised: torch.Tensor,
    step: int,
    preset: SLDPreset,
    state: SLDState,
) -> tuple[torch.Tensor, SLDState]:
    """Replace the conditional x0 prediction so that any CFG on top of it is SLD (Eq. 3).

    For samplers that hand over denoised predictions D (ComfyUI): eps_c' = eps_c - g_S makes
    eps_u + w * (eps_c' - eps_u) the SLD result for every w, written D_c' = D_c + sigma * g_S.
    During warm-up D_c comes back as it is (bit for bit); the state advances either way.
    Shapes (B, C, H, W), sigma (B,). Returns (D_c' in D_c's dtype, new state).
    """
    eps = [eps_from_denoised(x, d, sigma) for d in (cond_denoised, uncond_denoised, safety_denoised)]
    g_s, state = safety_guidance(*eps, preset, state)
    if not sld_active(step, preset):
        return cond_denoised, state
    new_cond = cond_denoised.float() + _per_sample(sigma, x) * g_s  # eps_c' = eps_c - g_S
    return new_cond.to(cond_denoised.dtype), state
