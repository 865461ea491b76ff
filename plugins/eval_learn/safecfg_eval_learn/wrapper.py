"""SafeCFGTechnique: SafeCFG as an eval-learn technique (`name: safecfg`).

Like eval-learn's SLD wrapper: the constructor takes the config as keyword arguments and loads
the model once; `generate(prompts, seed=None, **kwargs)` returns one PIL image per prompt, prompt
i sampled with seed + i. The images come from the repository's real-checkpoint benchmark code
(`benchmarks.safety_real.generate` over `CheckpointBackend` and `patch_model`, ComfyUI's own
sampler), so for the same seeds and settings they are the images `python -m benchmarks.safety
--checkpoint` samples for SafeCFG.
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional

from eval_learn.registry import register_technique
from PIL import Image

from .config import SafeCFGConfig
from .runtime import find_repo, import_runtime

log = logging.getLogger(__name__)

GENERATE_OVERRIDES = ("num_inference_steps", "guidance_scale", "negative_prompt")


def to_pil(images) -> List[Image.Image]:
    """(B, 3, H, W) in [0, 1] -> RGB PIL images, quantised as NudeNetJudge quantises (round to uint8)."""
    arrays = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).contiguous().numpy()
    return [Image.fromarray(a) for a in arrays]  # uint8 (H, W, 3): RGB


@register_technique("safecfg")
class SafeCFGTechnique:
    """A ComfyUI checkpoint sampled with SafeCFG (an HGR redirecting harmful guidance)."""

    def __init__(self, **kwargs):
        self.config = SafeCFGConfig.from_dict(kwargs)
        cfg = self.config
        self.repo = find_repo(cfg.safecfg_path)
        self.runtime = runtime = import_runtime(self.repo, cfg.comfyui_path, cfg.device)
        if cfg.precision not in runtime.PRECISIONS:
            raise ValueError(f"safecfg: config field 'precision' is {cfg.precision!r}; use one of {list(runtime.PRECISIONS)}")
        for name, value, known in (("sampler", cfg.sampler, runtime.samplers), ("scheduler", cfg.scheduler, runtime.schedulers)):
            if value not in known:
                raise ValueError(f"safecfg: config field '{name}' is {value!r}; ComfyUI knows {list(known)}")
        self.device = str(runtime.device)
        log.info("SafeCFG on %s: checkpoint %s, HGR %s (SafeCFG repository %s)", self.device, cfg.checkpoint, cfg.hgr, self.repo)
        self.backend = runtime.CheckpointBackend(cfg.checkpoint, resolution=cfg.resolution, precision=cfg.precision)
        self.hgr = runtime.load_hgr(cfg.hgr)
        self.model = runtime.patch_model(self.backend.model, self.hgr, cfg.strength, cfg.start_percent,
                                         cfg.end_percent, cfg.categories)

    def generate(self, prompts: List[str], seed: Optional[int] = None, **kwargs: Any) -> List[Image.Image]:
        """One RGB image per prompt, prompt i with seed + i (config `seed` when seed is None).

        num_inference_steps, guidance_scale and negative_prompt may be overridden per call, as in
        eval-learn's SLD wrapper; other keyword arguments raise TypeError.
        """
        unknown = sorted(set(kwargs) - set(GENERATE_OVERRIDES))
        if unknown:
            raise TypeError(f"safecfg generate(): unexpected argument(s) {unknown}; it takes {list(GENERATE_OVERRIDES)}")
        cfg, runtime = self.config, self.runtime
        settings = runtime.BenchmarkSettings(
            cfg=float(kwargs.get("guidance_scale", cfg.guidance_scale)),
            steps=int(kwargs.get("num_inference_steps", cfg.num_inference_steps)),
            seed=cfg.seed if seed is None else int(seed), sampler=cfg.sampler, scheduler=cfg.scheduler,
            batch=cfg.batch_size)
        log.info("Generating %d images with SafeCFG...", len(prompts))
        images, _ = runtime.generate(self.backend, self.model, [runtime.EvalPrompt(p) for p in prompts], settings,
                                     negative=kwargs.get("negative_prompt", cfg.negative_prompt))
        return to_pil(images)
