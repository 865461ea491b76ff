"""SafeCFGGate: censor or drop flagged images of a batch, fail closed, with a JSON report."""

from __future__ import annotations

import json
import logging

from comfy_api.latest import io, ui

from ..hgr_core import gate as gating_rules
from ..hgr_core.gating import parse_colour
from ..safecfg_comfy.patch import ALL_CATEGORIES
from .sockets import CATEGORY, DISPLAY_PREFIX, HarmScores

log = logging.getLogger(__name__)


def chosen_categories(text: str) -> tuple[str, ...] | None:
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    return None if text.strip().lower() in ("", ALL_CATEGORIES) else names


def node_text(report: dict) -> str:
    """One line per image for the node face: index, score, what was done."""
    scores = report.get("scores") or [None] * report["images"]
    done = {**{i: "kept" for i in report["kept"]}, **{i: "CENSORED" for i in report["censored"]},
            **{i: "DROPPED" for i in report["dropped"]}}
    lines = [f"image {i}: {'no score' if s is None else f'{s:.4f}'} {done.get(i, '?')}" for i, s in enumerate(scores)]
    head = f"threshold {report['threshold']:.4f}" if "threshold" in report else f"FAIL CLOSED: {report.get('error', '')}"
    return "\n".join([head, *lines])


class SafeCFGGate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafeCFGGate",
            display_name=f"{DISPLAY_PREFIX}Gate",
            category=CATEGORY,
            description="Blurs, pixelates, fills or drops the images SafeCFG flagged. Fails closed: without valid "
                        "scores for exactly this batch every image is censored (or dropped).",
            inputs=[
                io.Image.Input("images"),
                io.Combo.Input("mode", options=list(gating_rules.MODES), default="blur",
                               tooltip="What happens to a flagged image; drop removes it from the batch."),
                io.Boolean.Input("region_only", default=False,
                                 tooltip="Censor only where the harm map (or the mask input) is on; the whole image "
                                         "when there is no usable mask."),
                io.Int.Input("size", default=0, min=0, max=4096,
                             tooltip="Blur / pixel block size in pixels; 0 = 1/8 of the shorter side."),
                io.String.Input("colour", default="#000000", tooltip="Fill colour of mode 'solid' ('#RRGGBB' or 'R,G,B')."),
                io.String.Input("categories", default=ALL_CATEGORIES,
                                tooltip="Gate on these categories only ('all' = the total score)."),
                HarmScores.Input("scores", optional=True, tooltip="From SafeCFG: Sampling Score or SafeCFG: Detect. "
                                                                  "Unconnected: every image is censored."),
                io.Mask.Input("mask", optional=True, tooltip="Optional region to censor instead of the harm map."),
            ],
            outputs=[io.Image.Output(display_name="images"),
                     io.String.Output(display_name="report", tooltip="JSON: which images were censored or dropped and why.")],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, colour=None) -> bool | str:
        if colour is not None:
            try:
                parse_colour(colour)
            except ValueError as e:
                return str(e)
        return True

    @classmethod
    def execute(cls, images, mode, region_only, size, colour, categories=ALL_CATEGORIES, scores=None, mask=None) -> io.NodeOutput:
        settings = gating_rules.GateSettings(mode=mode, region_only=region_only, size=size, colour=parse_colour(colour),
                                             categories=chosen_categories(categories))
        out, report = gating_rules.gate_batch(images, scores, settings, mask)
        if "error" in report:
            log.warning("SafeCFG: Gate failed closed: %s", report["error"])
        return io.NodeOutput(out, json.dumps(report, indent=1), ui=ui.PreviewText(node_text(report)))
