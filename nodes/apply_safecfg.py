"""SafeCFGApply: patch a MODEL so sampling uses SafeCFG instead of CFG (METHOD.md section 2).

Thin node: validate, clone, install a pre-CFG closure around `hgr_core.safecfg_denoised`.
The hook only replaces the conditional prediction, so ComfyUI's own CFG and any cfg/post-CFG
patch applied afterwards (RescaleCFG, CFGZeroStar, ...) run on top of the redirected guidance.
"""

from __future__ import annotations

import logging

import comfy.model_sampling
import torch
from comfy_api.latest import io

from ..hgr_core import HGR, safecfg_denoised
from .sockets import HGRModel

log = logging.getLogger(__name__)

ALL_CATEGORIES = "all"


def model_prediction_type(model) -> str | None:
    """'eps', 'v' or 'flow' for a ComfyUI ModelPatcher; None for kinds SafeCFG does not support."""
    sampling = model.get_model_object("model_sampling")
    if isinstance(sampling, (comfy.model_sampling.X0, comfy.model_sampling.EDM)):
        return None
    if isinstance(sampling, comfy.model_sampling.V_PREDICTION):
        return "v"
    if isinstance(sampling, comfy.model_sampling.CONST):
        return "flow"
    if isinstance(sampling, comfy.model_sampling.EPS):
        return "eps"
    return None


def check_compatible(model, hgr: HGR) -> None:
    """Refuse an HGR trained for another latent space or prediction type (e.g. SD1.5 HGR on SD3)."""
    name = hgr.metadata.get("path", "this HGR")
    channels = model.get_model_object("latent_format").latent_channels
    if channels != hgr.config.latent_channels:
        raise ValueError(
            f"{name} was trained for {hgr.config.latent_channels}-channel latents "
            f"({hgr.metadata.get('base_model', 'unknown base model')}) but the model has {channels}; "
            "load an HGR trained for this checkpoint's family (python -m training.train_hgr)"
        )
    wanted = hgr.metadata.get("prediction_type", "eps")
    actual = model_prediction_type(model)
    if actual != wanted:
        raise ValueError(
            f"{name} was trained for {wanted}-prediction models but the model is {actual or 'unsupported'}-prediction; "
            "load an HGR trained for this checkpoint (python -m training.train_hgr)"
        )


def category_mask(hgr: HGR, categories: str) -> torch.Tensor:
    """Parse the node's comma-separated category list ('all' = every category of the HGR)."""
    available = hgr.config.categories
    if categories.strip().lower() in ("", ALL_CATEGORIES):
        return torch.ones(len(available))
    chosen = [c.strip() for c in categories.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise ValueError(f"categories: unknown {unknown}; this HGR redirects {list(available)} (or 'all')")
    return torch.tensor([1.0 if c in chosen else 0.0 for c in available])


def make_pre_cfg_hook(hgr: HGR, strength: float, sigma_start: float, sigma_end: float, mask: torch.Tensor):
    """A stateless closure for set_model_sampler_pre_cfg_function (safe to deep-copy via clone)."""

    def safecfg_pre_cfg(args):
        conds_out = args["conds_out"]
        if len(conds_out) < 2 or conds_out[0] is None or conds_out[1] is None:
            return conds_out
        sigma, x = args["sigma"], args["input"]
        active = (sigma <= sigma_start) & (sigma >= sigma_end)
        if not bool(active.any()):
            return conds_out
        if next(hgr.parameters()).device != x.device:
            hgr.to(x.device)
        with torch.no_grad():
            cond, _ = safecfg_denoised(hgr, x, sigma, conds_out[0], conds_out[1], strength, mask.to(x.device))
        cond = torch.where(active.view(-1, *([1] * (cond.ndim - 1))).to(x.device), cond, conds_out[0])
        return [cond, *conds_out[1:]]

    return safecfg_pre_cfg


class SafeCFGApply(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafeCFGApply",
            display_name="Apply SafeCFG",
            category="sampling/safecfg",
            description="Redirects harmful classifier-free guidance with an HGR while sampling; "
            "clean prompts keep their CFG direction.",
            inputs=[
                io.Model.Input("model"),
                HGRModel.Input("hgr"),
                io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="0 = plain CFG, 1 = full redirection of harmful guidance."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Redirect from this point of sampling (0 = first step)."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Stop redirecting after this point of sampling (1 = last step)."),
                io.String.Input("categories", default=ALL_CATEGORIES,
                                tooltip="Comma-separated harm categories to redirect, or 'all'."),
            ],
            outputs=[io.Model.Output(display_name="model")],
        )

    @classmethod
    def execute(cls, model, hgr, strength, start_percent, end_percent, categories=ALL_CATEGORIES) -> io.NodeOutput:
        if start_percent > end_percent:
            raise ValueError(f"start_percent ({start_percent}) must not exceed end_percent ({end_percent})")
        check_compatible(model, hgr)
        sampling = model.get_model_object("model_sampling")
        hook = make_pre_cfg_hook(
            hgr, strength,
            sigma_start=float(sampling.percent_to_sigma(start_percent)),
            sigma_end=float(sampling.percent_to_sigma(end_percent)),
            mask=category_mask(hgr, categories),
        )
        patched = model.clone()
        patched.set_model_sampler_pre_cfg_function(hook, disable_cfg1_optimization=True)
        return io.NodeOutput(patched)
