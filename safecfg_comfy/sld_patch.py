"""Safe Latent Diffusion (the baseline) installed on a ComfyUI model: `apply_sld`.

The math is `hgr_core.sld`; this module is the ComfyUI side (a pre-CFG hook with the third model
evaluation). Benchmarks compare it with SafeCFG (`safecfg_comfy.patch.patch_model`, what the
`SafeCFGApply` node installs) in one harness. Returns a patched clone and leaves the input model
alone. Call `safecfg_comfy.locate.setup_comfyui()` before importing this module outside ComfyUI.

How SLD gets its third model evaluation (the choice, and why): a *pre-CFG* hook receives the
already computed D_c and D_u together with `model` and `model_options`, evaluates the safety
concept itself with `comfy.samplers.calc_cond_batch` (after `encode_model_conds`, as ComfyUI's
PerpNeg node does) and replaces D_c so that ComfyUI's own CFG yields the SLD result. Unlike the
single cfg-function slot or `sampler_calc_cond_batch_function`, pre-CFG hooks chain, so SLD
composes with other patches the way SafeCFG does; the price is that the third evaluation runs as
its own UNet call instead of joining the cond/uncond batch (the same FLOPs; on a GPU a batch of 3
may be somewhat faster than 2 + 1).
"""

from __future__ import annotations

import math

import comfy.sampler_helpers
import comfy.samplers
import torch

from ._core import hgr_core

SLDPreset, SLDState = hgr_core.SLDPreset, hgr_core.SLDState

# The sampler hands the model exactly the schedule's sigmas; the tolerance only absorbs float32 rounding.
SIGMA_RTOL = 1e-5


def schedule_step(sigma: torch.Tensor, model_options: dict) -> int:
    """0-based index i of the sampling step at noise level sigma: sigma_i >= sigma > sigma_{i+1}.

    ComfyUI's CFGGuider puts the run's schedule in transformer_options["sample_sigmas"]; deriving
    the step from it rather than counting calls is right for samplers that evaluate the model
    more than once per step: a midpoint evaluation belongs to step i, Heun's evaluation at
    sigma_{i+1} to step i+1. A partial run (KSamplerAdvanced start_at_step) counts from its own
    first step.
    """
    schedule = model_options.get("transformer_options", {}).get("sample_sigmas")
    if schedule is None:
        raise RuntimeError(
            "SLD needs the sampling schedule (transformer_options['sample_sigmas']), which ComfyUI's "
            "CFGGuider provides; sample with KSampler, KSamplerAdvanced or SamplerCustom(Advanced)"
        )
    level = float(sigma.max())
    return max(int((schedule.float() >= level * (1 - SIGMA_RTOL)).sum()) - 1, 0)


class _SLDRun:
    """Momentum of the current sampling run; a new run (sigma rises, or a new step 0) starts fresh.

    Lives in the hook's closure: ModelPatcher.clone() deep-copies model_options but not
    functions, so clones of a patched model share it, which is harmless because every run resets.
    """

    def __init__(self):
        self.state, self.sigma = SLDState(), math.inf

    def advance(self, sigma: torch.Tensor, step: int) -> SLDState:
        level = float(sigma.max())
        if level > self.sigma or (step == 0 and level != self.sigma):
            self.state = SLDState()
        self.sigma = level
        return self.state


def make_sld_hook(safety_conditioning: list, preset: SLDPreset):
    """A pre-CFG hook that evaluates the safety concept and applies SLD to the conditional prediction."""
    safety = comfy.sampler_helpers.convert_cond(safety_conditioning)
    run = _SLDRun()

    def sld_pre_cfg(args):
        conds_out = args["conds_out"]
        if len(conds_out) < 2 or conds_out[0] is None or conds_out[1] is None:
            return conds_out
        if not hgr_core.sld_enabled(args["cond_scale"], preset):
            return conds_out  # like diffusers: no safety guidance (and no third evaluation) without CFG
        x, sigma, model, options = args["input"], args["sigma"], args["model"], args["model_options"]
        step = schedule_step(sigma, options)
        state = run.advance(sigma, step)
        encoded = comfy.samplers.encode_model_conds(model.extra_conds, list(safety), x, x.device, "negative")
        (safety_denoised,) = comfy.samplers.calc_cond_batch(model, [encoded], x, sigma, options)
        cond, run.state = hgr_core.sld_denoised(x, sigma, conds_out[0], conds_out[1], safety_denoised, step, preset, state)
        return [cond, *conds_out[1:]]

    return sld_pre_cfg


def apply_sld(model, safety_conditioning: list, preset: SLDPreset | str = "medium"):
    """A clone of `model` that samples with Safe Latent Diffusion away from the safety concept.

    safety_conditioning: ComfyUI CONDITIONING of the safety concept (e.g. CLIPTextEncode of
    "nudity, violence, ..."); preset: an `SLDPreset` or one of 'weak', 'medium', 'strong', 'max'.
    Costs a third model evaluation per step whenever cfg > 1.
    """
    preset = hgr_core.sld_preset(preset) if isinstance(preset, str) else preset
    patched = model.clone()
    hook = make_sld_hook(safety_conditioning, preset)
    patched.set_model_sampler_pre_cfg_function(hook, disable_cfg1_optimization=True)
    return patched

