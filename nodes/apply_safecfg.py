"""SafeCFGApply: patch a MODEL so sampling uses SafeCFG instead of CFG (METHOD.md section 2).

Thin node over `safecfg_comfy.patch.patch_model`: clone, install a pre-CFG closure, return.
The hook only replaces the conditional prediction, so ComfyUI's own CFG and any cfg/post-CFG
patch applied afterwards (RescaleCFG, CFGZeroStar, ...) run on top of the redirected guidance.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..safecfg_comfy.patch import ALL_CATEGORIES, patch_model
from .sockets import HGRModel


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
                               tooltip="0 = plain CFG, 1 = full redirection of harmful guidance. Not a linear "
                                       "dial: on the toy world 0.5 still let every harmful concept through; "
                                       "use 1 for safety."),
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
        return io.NodeOutput(patch_model(model, hgr, strength, start_percent, end_percent, categories))
