"""Does this HGR fit this ComfyUI model? Checks made when SafeCFG is applied, and category selection."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ._core import hgr_core
from .model_kinds import latent_dimensions, latent_format_name, prediction_type, unsupported_parameterisation

log = logging.getLogger(__name__)

HGR = hgr_core.HGR
ALL_CATEGORIES = "all"
_RETRAIN = "load an HGR trained for this checkpoint's family (python -m training.train_hgr)"
_DIMENSION_KINDS = {1: "audio and 3D", 3: "video"}


def category_mask(hgr: HGR, categories: str) -> torch.Tensor:
    """Parse a comma-separated category list ('all' or '' = every category of the HGR) into a 0/1 mask."""
    available = hgr.config.categories
    if categories.strip().lower() in ("", ALL_CATEGORIES):
        return torch.ones(len(available))
    chosen = [c.strip() for c in categories.split(",") if c.strip()]
    if not chosen:  # e.g. ", ": an all-zero mask would leave SafeCFG silently off
        raise ValueError(f"categories {categories!r} selects no category; write 'all' or names from {list(available)}")
    unknown = [c for c in chosen if c not in available]
    if unknown:
        raise ValueError(f"categories: unknown {unknown}; this HGR redirects {list(available)} (or 'all')")
    return torch.tensor([1.0 if c in chosen else 0.0 for c in available])


def hgr_file_name(hgr: HGR) -> str:
    """The HGR's file name for messages: never the server's folders (hosted services forward errors)."""
    meta = hgr.metadata
    return meta.get("file") or (Path(meta["path"]).name if meta.get("path") else "this HGR")


def check_supported(model) -> None:
    """Refuse models SafeCFG cannot work on at all: non-image latents, EDM/X0/LCM-style parameterisations."""
    latent_format = model.get_model_object("latent_format")
    dims = latent_dimensions(latent_format)
    if dims != 2:
        kind = _DIMENSION_KINDS.get(dims, f"{dims}-D latent")
        raise ValueError(
            f"SafeCFG does not support {kind} models ({latent_format_name(latent_format)} latents are {dims}-D; "
            "SafeCFG redirects the guidance of image models, whose latents are 2-D)"
        )
    sampling = model.get_model_object("model_sampling")
    if prediction_type(sampling) is None:
        unsupported = unsupported_parameterisation(sampling)
        classes = [c.__name__ for c in type(sampling).__mro__[1:] if c.__name__ not in ("Module", "object")]
        what = f"{unsupported}-parameterised models" if unsupported else "this model's parameterisation"
        raise ValueError(
            f"SafeCFG does not support {what} (model sampling: {', '.join(classes)}); it works with eps-, v- and "
            "flow-prediction image models. If a ModelSampling node set this, remove it"
        )


def check_compatible(model, hgr: HGR) -> None:
    """Refuse an HGR trained for another latent space or prediction type (e.g. SD1.5 HGR on SDXL or SD3)."""
    check_supported(model)
    name, meta = hgr_file_name(hgr), hgr.metadata
    latent_format = model.get_model_object("latent_format")
    actual_format, wanted_format = latent_format_name(latent_format), meta.get("latent_format")
    if wanted_format is None:
        log.info("%s records no latent format (exported before the field existed); checking latent channels only", name)
    elif wanted_format != actual_format:
        raise ValueError(
            f"{name} was trained for the {wanted_format} latent space ({meta.get('base_model', 'unknown base model')}) "
            f"but the model uses the {actual_format} latent space; {_RETRAIN}"
        )
    channels = latent_format.latent_channels
    if channels != hgr.config.latent_channels:
        raise ValueError(
            f"{name} was trained for {hgr.config.latent_channels}-channel latents "
            f"({meta.get('base_model', 'unknown base model')}) but the model has {channels}; {_RETRAIN}"
        )
    wanted = meta.get("prediction_type", "eps")
    actual = prediction_type(model.get_model_object("model_sampling"))
    if actual != wanted:
        raise ValueError(
            f"{name} was trained for {wanted}-prediction models but the model is {actual}-prediction; "
            "load an HGR trained for this checkpoint (python -m training.train_hgr)"
        )
