"""Which prediction type a ComfyUI model uses, read without importing ComfyUI.

ComfyUI mixes a prediction class into `model_sampling` (comfy/model_sampling.py: EPS,
V_PREDICTION(EPS), EDM(V_PREDICTION), CONST, X0(EPS), ...); we look at the class names in its
MRO so training, nodes and benchmarks share one mapping while hgr_core stays ComfyUI-free.
"""

from __future__ import annotations

_UNSUPPORTED = ("X0", "IMG_TO_IMG", "EDM", "COSMOS_RFLOW")
_KINDS = (("V_PREDICTION", "v"), ("CONST", "flow"), ("EPS", "eps"))


def prediction_type(model_sampling) -> str | None:
    """'eps', 'v' or 'flow' for a ComfyUI model_sampling object; None when SafeCFG does not support it."""
    names = [cls.__name__ for cls in type(model_sampling).__mro__]
    if any(name in _UNSUPPORTED for name in names):
        return None
    for class_name, kind in _KINDS:
        if class_name in names:
            return kind
    return None
