"""What kind of model a ComfyUI model is, read from its objects by class name.

ComfyUI mixes a prediction class into `model_sampling` (comfy/model_sampling.py: EPS,
V_PREDICTION(EPS), EDM(V_PREDICTION), CONST, X0(EPS), IMG_TO_IMG(X0), COSMOS_RFLOW;
comfy_extras/nodes_model_advanced.py: LCM(EPS)); we look at the class names in its MRO so
training, nodes and benchmarks share one mapping. The latent space is the class of
`model.get_model_object("latent_format")` (comfy/latent_formats.py: SD15, SDXL, SD3, Flux, ...).
"""

from __future__ import annotations

# Parameterisations whose denoised output is not eps/v/flow arithmetic on the model output, so the
# guidance direction an HGR was trained on does not exist. Subclasses come first: EDM is a
# V_PREDICTION and LCM an EPS by inheritance, but neither behaves like one.
UNSUPPORTED_PARAMETERISATIONS = ("IMG_TO_IMG", "X0", "EDM", "LCM", "COSMOS_RFLOW")
_KINDS = (("V_PREDICTION", "v"), ("CONST", "flow"), ("EPS", "eps"))
IMAGE_LATENT_DIMENSIONS = 2


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
