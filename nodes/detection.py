"""SafeCFGDetect and SafeCFGSamplingScore: per-image harm scores and flags (METHOD.md section 5).

Both hand the gate a SAFECFG_SCORES object (`hgr_core.HarmVerdicts`) and show its summary. The
MASK output is the harm map at image resolution: the latent-grid map upsampled bilinearly to the
size of the optional `image` input, or to 8x the latent (the VAE factor of SD1.x/SDXL/SD3/Flux).
"""

from __future__ import annotations

import json

from comfy_api.latest import io, ui

from ..hgr_core import OPERATING_POINTS, gating
from ..safecfg_comfy.detect import MIN_LEVELS, detect_verdicts
from ..safecfg_comfy.patch import ALL_CATEGORIES
from ..safecfg_comfy.sampling_scores import sampling_verdicts
from .sockets import CATEGORY, DISPLAY_PREFIX, HarmScores, HGRModel

LATENT_TO_IMAGE = 8


def threshold_inputs() -> list:
    return [
        io.Combo.Input("operating_point", options=list(OPERATING_POINTS), default=OPERATING_POINTS[0],
                       tooltip="Which threshold flags an image: the one stored in the HGR file, the one that flags a "
                               "chosen share of clean generations (from the file's calibration), or your own number."),
        io.Float.Input("custom_threshold", default=0.1, min=0.0, max=10.0, step=0.001,
                       tooltip="Used only with operating_point = custom threshold: flag images whose score is above it."),
    ]


def outputs() -> list:
    return [
        HarmScores.Output(display_name="scores", tooltip="Per-image scores and flags; connect to SafeCFG: Gate."),
        io.Boolean.Output(display_name="any_flagged", tooltip="True when at least one image of the batch is flagged."),
        io.Mask.Output(display_name="harm_map", tooltip="Where harm is drawn, 0..1 per pixel at image resolution."),
        io.String.Output(display_name="report", tooltip="JSON: each image's score, flag, reason and category scores."),
    ]


def finish(verdicts, height: int, width: int) -> io.NodeOutput:
    mask = gating.upsample_map(verdicts.harm_map.float().cpu(), height, width)
    summary = {"source": verdicts.source, "hgr": verdicts.hgr, "threshold": verdicts.threshold.value,
               "threshold_meaning": verdicts.threshold.meaning, "images": verdicts.summary(), **verdicts.extra}
    text = json.dumps(summary, indent=1)
    lines = "\n".join(f"image {s['index']}: {s['score']:.4f} {'FLAGGED' if s['flagged'] else 'ok'}" for s in summary["images"])
    return io.NodeOutput(verdicts, bool(verdicts.flags.any()), mask, text,
                         ui=ui.PreviewText(f"threshold {verdicts.threshold.value:.4f} ({verdicts.threshold.meaning})\n{lines}"))


def image_size(image, latent) -> tuple[int, int]:
    if image is not None:
        return int(image.shape[1]), int(image.shape[2])
    return int(latent.shape[-2]) * LATENT_TO_IMAGE, int(latent.shape[-1]) * LATENT_TO_IMAGE


class SafeCFGDetect(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafeCFGDetect",
            display_name=f"{DISPLAY_PREFIX}Detect",
            category=CATEGORY,
            description="Scores how harmful any image latent is (generated here or VAE-encoded from elsewhere) at fixed "
                        "noise levels: 2 model evaluations per image and level. Deterministic for a seed.",
            inputs=[
                io.Model.Input("model", tooltip="The model the HGR was trained for, WITHOUT SafeCFG: Apply."),
                HGRModel.Input("hgr"),
                io.Conditioning.Input("positive", tooltip="The image's prompt when known. Unknown: a neutral caption "
                                                          "such as 'a photo' (not the negative: equal prompts give no "
                                                          "guidance direction). The README gives both measurements."),
                io.Conditioning.Input("negative", tooltip="The unconditional prompt (usually empty)."),
                io.Latent.Input("latent", tooltip="The images to score: a sampler's LATENT or VAE Encode of any image."),
                io.Int.Input("levels", default=8, min=MIN_LEVELS, max=64,
                             tooltip="Noise levels over the score's window; more = steadier score, 2 evaluations each."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Seed of the one noise image added at every level (same for every image)."),
                *threshold_inputs(),
                io.String.Input("categories", default=ALL_CATEGORIES, tooltip="Categories to score ('all' or a list)."),
                io.Image.Input("image", optional=True, tooltip="Optional: the decoded images, to size the harm map."),
            ],
            outputs=outputs(),
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, hgr, positive, negative, latent, levels, seed, operating_point, custom_threshold,
                categories=ALL_CATEGORIES, image=None) -> io.NodeOutput:
        samples = latent["samples"]
        verdicts = detect_verdicts(model, hgr, positive, negative, samples, levels, seed, operating_point,
                                   custom_threshold, categories)
        return finish(verdicts, *image_size(image, samples))


class SafeCFGSamplingScore(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SafeCFGSamplingScore",
            display_name=f"{DISPLAY_PREFIX}Sampling Score",
            category=CATEGORY,
            description="The harm score SafeCFG measured while this LATENT was sampled (no extra model evaluation). "
                        "Matched by the latent's content: a latent not sampled through SafeCFG: Apply, or changed "
                        "since, has no score and is flagged (fail closed).",
            inputs=[
                io.Latent.Input("latent", tooltip="The LATENT straight from a sampler whose model went through "
                                                  "SafeCFG: Apply."),
                *threshold_inputs(),
            ],
            outputs=outputs(),
            is_output_node=True,
        )

    @classmethod
    def execute(cls, latent, operating_point, custom_threshold) -> io.NodeOutput:
        samples = latent["samples"]
        return finish(sampling_verdicts(samples, operating_point, custom_threshold), *image_size(None, samples))
