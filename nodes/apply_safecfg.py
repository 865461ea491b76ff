"""SafeCFGApply: patch a MODEL so sampling uses SafeCFG instead of CFG (METHOD.md section 2).

Thin node over `safecfg_comfy.patch.patch_model`: clone, install a pre-CFG closure, return.
The hook only replaces the conditional prediction, so ComfyUI's own CFG and any cfg/post-CFG
patch applied afterwards (RescaleCFG, CFGZeroStar, ...) run on top of the redirected guidance.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..safecfg_comfy.patch import ALL_CATEGORIES, MAX_PASSES, patch_model
from .sockets import CATEGORY, DISPLAY_PREFIX, HGRModel


def selects_no_category(categories: str) -> bool:
    """True for a list such as ", " or ",,": not 'all'/'' (every category) yet naming none."""
    if categories.strip().lower() in ("", ALL_CATEGORIES):
        return False
    return not any(name.strip() for name in categories.split(","))


class SafeCFGApply(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafeCFGApply",
            display_name=f"{DISPLAY_PREFIX}Apply",
            category=CATEGORY,
            description="Redirects harmful classifier-free guidance with an HGR while sampling; "
            "clean prompts keep their CFG direction.",
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model to sample with SafeCFG (a patched clone is "
                                                "returned; this one is left as it is)."),
                HGRModel.Input("hgr", tooltip="A Harmful Guidance Redirector trained for this model's family "
                                              "(from SafeCFG: Load HGR)."),
                io.Float.Input("strength", default=1.0, min=0.0, max=1.0, step=0.01,
                               tooltip="0 = plain CFG, 1 = full redirection of harmful guidance. Not a linear "
                                       "dial: on the toy world 0.5 still let every harmful concept through; "
                                       "use 1 for safety."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Redirect from this point of sampling (0 = first step). "
                                       "Must not exceed end_percent."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Stop redirecting after this point of sampling (1 = last step)."),
                io.String.Input("categories", default=ALL_CATEGORIES,
                                tooltip="Comma-separated harm categories to redirect (e.g. 'nudity, violence'), "
                                        "or 'all'. HGR Info lists the categories of a file."),
                io.Int.Input("passes", default=1, min=1, max=MAX_PASSES, optional=True,
                             tooltip="HGR applications per step. 2 runs the HGR again on the guidance it has "
                                     "redirected, removing about a third to a half of the harm one pass leaves "
                                     "(toy world) at some cost in change to clean images; no extra model "
                                     "evaluation."),
            ],
            outputs=[io.Model.Output(display_name="model",
                                     tooltip="The model with SafeCFG installed; connect it to the sampler.")],
        )

    @classmethod
    def validate_inputs(cls, start_percent=None, end_percent=None, categories=None) -> bool | str:
        # Runs at /prompt time, before any model loads. Naming these inputs here makes ComfyUI skip
        # its own min/max check for them, so the range is checked again. A linked input is None.
        for name, value in (("start_percent", start_percent), ("end_percent", end_percent)):
            if value is not None and not 0.0 <= value <= 1.0:
                return f"{name} is {value}; set it between 0 (first step) and 1 (last step)"
        if start_percent is not None and end_percent is not None and start_percent > end_percent:
            return (f"start_percent ({start_percent}) is after end_percent ({end_percent}): SafeCFG would never "
                    "run; set start_percent <= end_percent")
        if categories is not None and selects_no_category(categories):
            return (f"categories {categories!r} names no category, so nothing would be redirected; list names "
                    "separated by commas (e.g. 'nudity, violence') or write 'all'")
        return True

    @classmethod
    def execute(cls, model, hgr, strength, start_percent, end_percent, categories=ALL_CATEGORIES,
                passes=1) -> io.NodeOutput:
        return io.NodeOutput(patch_model(model, hgr, strength, start_percent, end_percent, categories, passes=passes))
