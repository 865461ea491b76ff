"""The training-free detector the benchmarks compare with: CFG direction vs a concept direction.

Per model evaluation, a pre-CFG hook evaluates the model once more with the harm concept's
conditioning (as the SLD baseline does, `sld_patch`) and measures the cosine similarity of the
CFG direction g = eps_c - eps_u with the concept direction c = eps_concept - eps_u, per sample.
A prompt that asks for the concept pulls g towards c. The per-generation score is the same
sigma-window mean as SafeCFG's (`hgr_core.HarmRecorder`), so the two compare on equal terms;
the cost is one extra model evaluation per step (SafeCFG's score costs none).
"""

from __future__ import annotations

import comfy.sampler_helpers
import comfy.samplers
import torch

from ._core import hgr_core


def concept_similarity(x, sigma, cond_denoised, uncond_denoised, concept_denoised) -> torch.Tensor:
    """(B,) cosine of g = eps_c - eps_u and c = eps_concept - eps_u (in denoised space: the same up to -1/sigma)."""
    g = (uncond_denoised.float() - cond_denoised.float()).flatten(1)
    c = (uncond_denoised.float() - concept_denoised.float()).flatten(1)
    return torch.nn.functional.cosine_similarity(g, c, dim=1, eps=1e-8)


def patch_concept_score(model, concept_conditioning: list, on_score):
    """A clone of `model` whose sampling reports `StepHarm(score=cosine)` per step to on_score(sigma, harm)."""
    concept = comfy.sampler_helpers.convert_cond(concept_conditioning)

    def concept_pre_cfg(args):
        conds_out = args["conds_out"]
        x, sigma, model_, options = args["input"], args["sigma"], args["model"], args["model_options"]
        encoded = comfy.samplers.encode_model_conds(model_.extra_conds, list(concept), x, x.device, "negative")
        (concept_denoised,) = comfy.samplers.calc_cond_batch(model_, [encoded], x, sigma, options)
        cosine = concept_similarity(x, sigma, conds_out[0], conds_out[1], concept_denoised)
        on_score(sigma, hgr_core.StepHarm(cosine, cosine[:, None], torch.zeros(x.shape[0], *x.shape[-2:])))
        return conds_out

    patched = model.clone()
    patched.set_model_sampler_pre_cfg_function(concept_pre_cfg, disable_cfg1_optimization=True)
    return patched
