"""Frozen text-to-image models for training and benchmarks, as ComfyUI ModelPatchers.

`Backend` is what `train_hgr` and the benchmarks sample through (ComfyUI's own samplers, so
trajectories come from exactly the code path users generate with); `CheckpointBackend` loads any
checkpoint ComfyUI's CheckpointLoaderSimple loads. The toy world's backend is
`training.backends.ToyBackend`. Call `safecfg_comfy.locate.setup_comfyui()` first.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .model_kinds import prediction_type

log = logging.getLogger(__name__)

PRECISIONS = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class Backend:
    """A frozen text-to-image model: conditioning, latent shape, decoding."""

    model = None  # comfy.model_patcher.ModelPatcher
    base_model = "unknown"
    latent_shape: tuple[int, int, int] = (4, 64, 64)

    @property
    def prediction_type(self) -> str:
        kind = prediction_type(self.model.get_model_object("model_sampling"))
        if kind is None:
            raise ValueError(f"{self.base_model}: this model's prediction type is not supported by SafeCFG")
        return kind

    def conditioning(self, prompts: list[str]) -> list:
        """ComfyUI conditioning for a batch; raises ValueError when prompts encode to different lengths."""
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """ComfyUI-space latents -> images (B, 3, H, W) in [0, 1]."""
        raise NotImplementedError


class CheckpointBackend(Backend):
    """Any checkpoint ComfyUI's CheckpointLoaderSimple loads (SD1.x, SD2.x, SDXL, SD3, ...)."""

    def __init__(self, path: str | Path, resolution: int = 512, precision: str = "auto"):
        import comfy.sd

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--checkpoint {path}: file not found")
        options = {} if PRECISIONS[precision] is None else {"dtype": PRECISIONS[precision]}
        loaded = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True, model_options=options)
        if loaded[0] is None or loaded[1] is None:
            raise ValueError(f"--checkpoint {path}: ComfyUI found no diffusion model or text encoder in it")
        self.model, self.clip, self.vae = loaded[:3]
        self.base_model = type(self.model.model.model_config).__name__
        channels = self.model.get_model_object("latent_format").latent_channels
        self.downscale = self.vae.spacial_compression_decode() if self.vae is not None else 8
        self.latent_shape = (channels, resolution // self.downscale, resolution // self.downscale)
        self._cache: dict[str, tuple] = {}
        log.info("loaded %s as %s (%s-prediction), latent %s", path.name, self.base_model, self.prediction_type, self.latent_shape)

    def _encode(self, prompt: str):
        if prompt not in self._cache:
            cond, pooled = self.clip.encode_from_tokens(self.clip.tokenize(prompt), return_pooled=True)
            self._cache[prompt] = (cond, pooled)
        return self._cache[prompt]

    def conditioning(self, prompts):
        encoded = [self._encode(p) for p in prompts]
        if len({tuple(c.shape) for c, _ in encoded}) > 1:
            raise ValueError("prompts encode to different token lengths")
        cond = torch.cat([c for c, _ in encoded])
        extras = {"pooled_output": torch.cat([p for _, p in encoded])} if encoded[0][1] is not None else {}
        return [[cond, extras]]

    def decode(self, latents):
        return self.vae.decode(latents).movedim(-1, 1).clamp(0, 1).float().cpu()
