"""SafeCFGHGRInfo: show what a loaded redirector was trained for (an output node)."""

from __future__ import annotations

import json

from comfy_api.latest import io, ui

from ..hgr_core import HGR, choose_threshold, parameter_count
from ..safecfg_comfy.compat import hgr_file_name
from .sockets import CATEGORY, DISPLAY_PREFIX, HGRModel


def _rule_text(hgr: HGR) -> str:
    rule = getattr(hgr, "combine_rule", "mean")
    return "each active category's change is added" if rule == "sum" else "gate-weighted mean of the active categories"


def _calibration_text(calibration: dict | None) -> str:
    """What the threshold means, when the file says how it was calibrated."""
    if not calibration:
        return " (file has no calibration record)"
    return (f" (the {calibration.get('percentile', '?')}th percentile of harm scores of "
            f"{calibration.get('clean_trajectories', '?')} clean validation generations, "
            f"false-positive target {calibration.get('false_positive_target', '?')})")


def _detector_lines(hgr: HGR) -> list[str]:
    """Each detector's threshold and what it means (`hgr_core.choose_threshold`), and the operating points on offer."""
    lines = []
    for detector in ("sampling", "image"):
        point = choose_threshold(hgr.metadata, detector=detector)
        lines.append(f"{detector} detector: threshold {point.value:.4f}, {point.meaning}")
    quantiles = (hgr.metadata.get("calibration") or {}).get("clean_score_quantiles")
    if quantiles:
        lines.append("operating points (clean false-positive rate -> threshold): "
                     + ", ".join(f"{float(rate) * 100:g}% -> {value:.4f}" for rate, value in quantiles.items()))
    return lines


def describe_hgr(hgr: HGR) -> str:
    """A short human-readable summary of an HGR's metadata."""
    meta = hgr.metadata
    lines = [
        f"file: {hgr_file_name(hgr)}",  # the name only: hosted services forward this text to clients
        f"base model: {meta.get('base_model', '?')} ({meta.get('latent_format') or 'unrecorded'} latent space, "
        f"{hgr.config.latent_channels}-channel latents, {meta.get('prediction_type', '?')}-prediction)",
        f"categories: {', '.join(hgr.config.categories)} (several at once: {_rule_text(hgr)})",
        f"detection threshold: {meta.get('threshold', '?')}{_calibration_text(meta.get('calibration'))}",
        *_detector_lines(hgr),
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
            display_name=f"{DISPLAY_PREFIX}HGR Info",
            category=CATEGORY,
            description="Shows the base model, categories and detection threshold an HGR was trained with. "
            "Connect the text to a Preview as Text node to read it on the canvas.",
            inputs=[HGRModel.Input("hgr", tooltip="The redirector to describe (from SafeCFG: Load HGR).")],
            outputs=[io.String.Output(display_name="info",
                                      tooltip="File name, base model, latent channels, prediction type, categories, "
                                              "detection threshold, parameter count and training summary.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, hgr) -> io.NodeOutput:
        text = describe_hgr(hgr)
        return io.NodeOutput(text, ui=ui.PreviewText(text))
