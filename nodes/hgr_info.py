"""SafeCFGHGRInfo: show what a loaded redirector was trained for (an output node)."""

from __future__ import annotations

import json

from comfy_api.latest import io, ui

from ..hgr_core import HGR, parameter_count
from .sockets import HGRModel


def describe_hgr(hgr: HGR) -> str:
    """A short human-readable summary of an HGR's metadata."""
    meta = hgr.metadata
    lines = [
        f"file: {meta.get('path', '?')}",
        f"base model: {meta.get('base_model', '?')} ({hgr.config.latent_channels}-channel latents, "
        f"{meta.get('prediction_type', '?')}-prediction)",
        f"categories: {', '.join(hgr.config.categories)}",
        f"detection threshold: {meta.get('threshold', '?')}",
        f"parameters: {parameter_count(hgr):,}",
    ]
    if meta.get("training"):
        lines.append("training: " + json.dumps(meta["training"], sort_keys=True))
    return "\n".join(lines)


class SafeCFGHGRInfo(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafeCFGHGRInfo",
            display_name="HGR Info",
            category="sampling/safecfg",
            description="Shows the base model, categories and detection threshold an HGR was trained with.",
            inputs=[HGRModel.Input("hgr")],
            outputs=[io.String.Output(display_name="info")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, hgr) -> io.NodeOutput:
        text = describe_hgr(hgr)
        return io.NodeOutput(text, ui=ui.PreviewText(text))
