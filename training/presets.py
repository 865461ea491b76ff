"""Per-family presets of `train_hgr --preset`: flag defaults, and what the checkpoint must be.

A preset sets the defaults of `--resolution` and `--base-channels` (explicit flags still win) and
names what ComfyUI must detect in `--checkpoint`: the model family (a class of
comfy/supported_models.py, or a subclass: SSD1B is an SDXL), the latent format, its channels and
the prediction type (`safecfg_comfy.model_kinds`). A mismatch is refused before any sampling.
Families sampled without classifier-free guidance (Flux) are refused with or without a preset.
Names are ComfyUI 0.3.75's.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from safecfg_comfy.model_kinds import cfg_free_reason, latent_format_name, model_family, prediction_type


@dataclass(frozen=True)
class Preset:
    name: str
    family: str  # ComfyUI's model config class (comfy/supported_models.py); subclasses match
    latent_format: str  # ComfyUI's latent format class (comfy/latent_formats.py)
    latent_channels: int  # checked, not set: the HGR takes the model's channels
    prediction: str  # safecfg_comfy.model_kinds.prediction_type: "eps", "v" or "flow"
    resolution: int  # --resolution default: the image size the family was trained at
    base_channels: int  # --base-channels default: the HGR's width at full latent resolution

    def flag_defaults(self) -> dict:
        """argparse dests -> values: the flags a preset sets (any explicit flag overrides its entry)."""
        return {"resolution": self.resolution, "base_channels": self.base_channels}

    def expected(self) -> str:
        return f"{self.family} ({self.latent_format} latents, {self.latent_channels} channels, {self.prediction}-prediction)"


# The HGR reads g, x/sqrt(sigma^2+1) and D_u, so its input has 3 x latent channels: 12 for the
# 4-channel families, 48 for SD3. The width follows the latent channels, not the image size: a
# larger image adds positions, each with the same job (the HGR's share of a step still falls:
# README "Performance", 0.68% of an SD1.5 UNet forward at 64x64 latents, 0.28% of SDXL's at 128x128).
PRESETS = {p.name: p for p in (
    # SD1.x: trained at 512 px; 4-channel SD latents (scale 0.18215); eps-prediction. Width 48 is
    # HGRConfig's default, sized for these 12 input channels.
    Preset("sd15", family="SD15", latent_format="SD15", latent_channels=4, prediction="eps",
           resolution=512, base_channels=48),
    # SD2.1-v (768-v-ema): trained at 768 px, v-prediction. ComfyUI's family for every SD2.x is
    # SD20 and it reuses the SD15 latent format (same VAE); the prediction type is what tells the
    # 768-v model from the 512 px eps base (ComfyUI reads it from the weights), so an SD2.x base is
    # refused here. Same latents as SD1.x, same width.
    Preset("sd21-v", family="SD20", latent_format="SD15", latent_channels=4, prediction="v",
           resolution=768, base_channels=48),
    # SDXL base: trained at 1024 px (1 megapixel buckets), eps-prediction, its own 4-channel latent
    # format (scale 0.13025), so an SD1.5 HGR never loads on it. 4 channels again: width 48;
    # the 128x128 latents cost 4x SD1.5's per HGR step, not a wider network.
    Preset("sdxl", family="SDXL", latent_format="SDXL", latent_channels=4, prediction="eps",
           resolution=1024, base_channels=48),
    # SD3 / SD3.5: 1024 px, 16-channel latents, rectified flow (ComfyUI's CONST model sampling,
    # "flow" here). 48 input channels: width 64 keeps the first level wider than its input; not
    # tuned on a real SD3 (none runs on this CPU), at (64/48)^2 = 1.8x the width-48 HGR's cost.
    Preset("sd3", family="SD3", latent_format="SD3", latent_channels=16, prediction="flow",
           resolution=1024, base_channels=64),
)}

# Names a user may reach for that have no CFG: refused by name, with the reason, before loading.
CFG_FREE_PRESETS = {
    "flux": "Flux (FLUX.1 [dev], Kontext, Fill) is guidance-distilled: the guidance scale is an input of the model",
    "flux-dev": "FLUX.1 [dev] is guidance-distilled: the guidance scale is an input of the model",
    "flux-schnell": "FLUX.1 [schnell] is step-distilled and sampled at CFG 1",
    "flux2": "FLUX.2 is guidance-distilled: the guidance scale is an input of the model",
}
NO_CFG = "no CFG to redirect"
CFG_FAMILIES = "SafeCFG trains for models sampled with classifier-free guidance (--preset " + ", ".join(PRESETS) + ")"


def preset_by_name(text: str) -> Preset:
    """argparse type of --preset: the Preset, or an error that names the choices (or why there is no CFG)."""
    name = text.strip().lower()
    if name in CFG_FREE_PRESETS:
        raise argparse.ArgumentTypeError(f"{name}: {CFG_FREE_PRESETS[name]}, so there is {NO_CFG}; {CFG_FAMILIES}")
    if name not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {text!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class DetectedModel:
    """What ComfyUI detected in a loaded model, in the terms a Preset names."""

    family: tuple[str, ...]  # model config class, then its bases: ("SSD1B", "SDXL")
    latent_format: str
    latent_channels: int
    prediction: str | None  # None: a parameterisation SafeCFG does not support
    cfg_free: str | None  # why the family has no CFG (model_kinds.cfg_free_reason), else None

    def describe(self) -> str:
        prediction = f"{self.prediction}-prediction" if self.prediction else "unsupported prediction type"
        return f"{self.family[0]} ({self.latent_format} latents, {self.latent_channels} channels, {prediction})"


def detect(model) -> DetectedModel:
    """Read family, latent space and prediction type from a ComfyUI ModelPatcher."""
    config = model.model.model_config
    latent_format = model.get_model_object("latent_format")
    return DetectedModel(family=model_family(config), latent_format=latent_format_name(latent_format),
                         latent_channels=int(latent_format.latent_channels),
                         prediction=prediction_type(model.get_model_object("model_sampling")),
                         cfg_free=cfg_free_reason(config))


def mismatches(preset: Preset, model: DetectedModel) -> list[str]:
    """The properties in which the detected model differs from the preset (empty: it fits)."""
    wrong = {"family": preset.family not in model.family, "latent format": preset.latent_format != model.latent_format,
             "latent channels": preset.latent_channels != model.latent_channels,
             "prediction type": preset.prediction != model.prediction}
    return [name for name, differs in wrong.items() if differs]


def matching_preset(model: DetectedModel) -> Preset | None:
    return next((p for p in PRESETS.values() if not mismatches(p, model)), None)


def check_model(model: DetectedModel, preset: Preset | None, source: str) -> None:
    """Refuse a family without CFG, and a model the preset does not describe (ValueError naming both)."""
    if model.cfg_free is not None:
        raise ValueError(f"{source}: ComfyUI detects {model.describe()}; {model.cfg_free}, so there is {NO_CFG}. "
                         f"{CFG_FAMILIES}")
    if preset is None:
        return
    wrong = mismatches(preset, model)
    if wrong:
        fit = matching_preset(model)
        advice = (f"use --preset {fit.name}" if fit else
                  "no preset describes it: leave --preset out and set --resolution and --base-channels yourself")
        raise ValueError(f"--preset {preset.name} expects {preset.expected()}, but ComfyUI detects {source} as "
                         f"{model.describe()} (differs in {', '.join(wrong)}); {advice}")


def describe_choice(preset: Preset, args) -> str:
    """One log line: the preset's values and any explicit flag that overrode one."""
    parts = []
    for dest, value in preset.flag_defaults().items():
        chosen = getattr(args, dest)
        flag = "--" + dest.replace("_", "-")
        parts.append(f"{flag} {chosen}" + ("" if chosen == value else f" (explicit; the preset's is {value})"))
    return f"preset {preset.name}: {', '.join(parts)}; expects {preset.expected()}"
