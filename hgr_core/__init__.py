"""Harmful Guidance Redirector (HGR) and SafeCFG math in plain PyTorch.

Never imports ComfyUI: training, benchmarks and outside scripts use this package directly.
"""

from .config import HGRConfig
from .files import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text, file_sha256
from .guidance import (MAX_PASSES, StepHarm, combine_redirections, eps_from_denoised, harm_map, harm_score, redirection,
                       redirection_parts, safecfg_denoised, safecfg_step)
from .network import COMBINE_RULES, HGR, HGROutput, parameter_count
from .scoring import MIN_COVERAGE, SD_SIGMA_WINDOW, GenerationHarm, GenerationScore, HarmRecorder, generation_score, score_window
from .schedules import ema_decay_at, ema_update, warmup_cosine
from .sld import SLD_PRESETS, SLDPreset, SLDState, safety_guidance, scale_warmup, sld_active, sld_denoised, sld_enabled, sld_eps, sld_preset, sld_preset_for_steps
from .verdicts import OPERATING_POINTS, HarmVerdicts, Threshold, choose_threshold, clean_quantiles, judge
from .weights_io import HGRFileError, load_hgr, read_hgr_metadata, save_hgr

__all__ = [
    "judge",
    "clean_quantiles",
    "choose_threshold",
    "Threshold",
    "HarmVerdicts",
    "OPERATING_POINTS",
    "safecfg_step",
    "redirection_parts",
    "MAX_PASSES",
    "HarmRecorder",
    "GenerationHarm",
    "StepHarm",
    "COMBINE_RULES",
    "GenerationScore",
    "HGR",
    "HGRConfig",
    "HGRFileError",
    "HGROutput",
    "MIN_COVERAGE",
    "SLDPreset",
    "SLDState",
    "SLD_PRESETS",
    "SD_SIGMA_WINDOW",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "file_sha256",
    "atomic_write_text",
    "combine_redirections",
    "ema_decay_at",
    "ema_update",
    "eps_from_denoised",
    "generation_score",
    "harm_map",
    "harm_score",
    "load_hgr",
    "parameter_count",
    "read_hgr_metadata",
    "redirection",
    "safecfg_denoised",
    "safety_guidance",
    "save_hgr",
    "scale_warmup",
    "score_window",
    "sld_active",
    "sld_denoised",
    "sld_enabled",
    "sld_eps",
    "sld_preset",
    "sld_preset_for_steps",
    "warmup_cosine",
]
