"""Does this HGR fit this ComfyUI model? Checks made when SafeCFG is applied, and category selection."""

from __future__ import annotations

import torch

from ._core import hgr_core
from .model_kinds import prediction_type

HGR = hgr_core.HGR
ALL_CATEGORIES = "all"


def category_mask(hgr: HGR, categories: str) -> torch.Tensor:
    """Parse a comma-separated category list ('all' or '' = every category of the HGR) into a 0/1 mask."""
    available = hgr.config.categories
    if categories.strip().lower() in ("", ALL_CATEGORIES):
        return torch.ones(len(available))
    chosen = [c.strip() for c in categories.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise ValueError(f"categories: unknown {unknown}; this HGR redirects {list(available)} (or 'all')")
    return torch.tensor([1.0 if c in chosen else 0.0 for c in available])


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
    actual = prediction_type(model.get_model_object("model_sampling"))
    if actual != wanted:
        raise ValueError(
            f"{name} was trained for {wanted}-prediction models but the model is {actual or 'unsupported'}-prediction; "
            "load an HGR trained for this checkpoint (python -m training.train_hgr)"
        )
