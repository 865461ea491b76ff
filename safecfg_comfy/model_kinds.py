"""What kind of model a ComfyUI model is, read from its objects by class name.

ComfyUI mixes a prediction class into `model_sampling` (comfy/model_sampling.py: EPS,
V_PREDICTION(EPS), EDM(V_PREDICTION), CONST, X0(EPS), IMG_TO_IMG(X0), COSMOS_RFLOW;
comfy_extras/nodes_model_advanced.py: LCM(EPS)); we look at the class names in its MRO so
training, nodes and benchmarks share one mapping. The latent space is the class of
`model.get_model_object("latent_format")` (comfy/latent_formats.py: SD15, SDXL, SD3, Flux, ...).
The family is the class of `model.model.model_config` (comfy/supported_models.py: SD15, SD20,
SDXL, SSD1B(SDXL), SD3, Flux, FluxSchnell(Flux), ...).
"""

from __future__ import annotations

# Parameterisations whose denoised output is not eps/v/flow arithmetic on the model output, so the
# guidance direction an HGR was trained on does not exist. Subclasses come first: EDM is a
# V_PREDICTION and LCM an EPS by inheritance, but neither behaves like one.
UNSUPPORTED_PARAMETERISATIONS = ("IMG_TO_IMG", "X0", "EDM", "LCM", "COSMOS_RFLOW")
_KINDS = (("V_PREDICTION", "v"), ("CONST", "flow"), ("EPS", "eps"))
IMAGE_LATENT_DIMENSIONS = 2
# Model config classes (and their subclasses) that ComfyUI samples without classifier-free
# guidance. Every Flux config in ComfyUI 0.3.75 derives from `supported_models.Flux`: FLUX.1 [dev],
# Kontext and Fill (FluxInpaint) and FLUX.2 (Flux2) are guidance-distilled (the scale is a model
# input, set by the FluxGuidance node), FLUX.1 [schnell] (FluxSchnell) is step-distilled and
# sampled at CFG 1. Other guidance-distilled models show it in the unet config (`guidance_embed`).
CFG_FREE_FAMILIES = ("Flux",)


def _class_names(obj) -> list[str]:
    return [cls.__name__ for cls in type(obj).__mro__]


def unsupported_parameterisation(model_sampling) -> str | None:
    """The name of a parameterisation SafeCFG does not support ('EDM', 'X0', 'LCM', ...), else None."""
    names = _class_names(model_sampling)
    return next((name for name in UNSUPPORTED_PARAMETERISATIONS if name in names), None)


def prediction_type(model_sampling) -> str | None:
    """'eps', 'v' or 'flow' for a ComfyUI model_sampling object; None when SafeCFG does not support it."""
    if unsupported_parameterisation(model_sampling) is not None:
        return None
    names = _class_names(model_sampling)
    return next((kind for class_name, kind in _KINDS if class_name in names), None)


def latent_format_name(latent_format) -> str:
    """The latent space's name as weights files record it: ComfyUI's class name ('SD15', 'SDXL', 'Flux')."""
    return type(latent_format).__name__


def latent_dimensions(latent_format) -> int:
    """Spatial dimensions of the latents: 2 for images, 3 for video, 1 for audio and 3D shapes."""
    return int(getattr(latent_format, "latent_dimensions", IMAGE_LATENT_DIMENSIONS))


def model_family(model_config) -> tuple[str, ...]:
    """ComfyUI's model config class name and those of its bases ('SSD1B', 'SDXL'), without the generic ones."""
    return tuple(name for name in _class_names(model_config) if name not in ("BASE", "object"))


def cfg_free_reason(model_config) -> str | None:
    """Why a model family has no classifier-free guidance for SafeCFG to redirect, else None."""
    family = model_family(model_config)
    if (getattr(model_config, "unet_config", None) or {}).get("guidance_embed"):
        return (f"{family[0]} is guidance-distilled (ComfyUI detects a guidance embedding: the guidance scale is an "
                "input of the model)")
    if any(name in family for name in CFG_FREE_FAMILIES):
        return f"{family[0]} is a Flux model without a guidance embedding: step-distilled like FLUX.1 [schnell], sampled at CFG 1"
    return None
