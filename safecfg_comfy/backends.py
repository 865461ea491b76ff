"""Frozen text-to-image models for training and benchmarks, as ComfyUI ModelPatchers.

`Backend` is what `train_hgr` and the benchmarks sample through (ComfyUI's own samplers, so
trajectories come from exactly the code path users generate with); `CheckpointBackend` loads any
checkpoint ComfyUI's CheckpointLoaderSimple loads. The toy world's backend is
`training.backends.ToyBackend`. Call `safecfg_comfy.locate.setup_comfyui()` first.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import torch

from .model_kinds import prediction_type

log = logging.getLogger(__name__)

PRECISIONS = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Distinct prompts a CheckpointBackend keeps encoded. A shard needs at most 3 x --trajectory-batch
# (positives, negatives, targets; 48 at the default 16) and the few user negatives recur in every
# shard, so 256 re-encodes almost nothing while memory stays bounded whatever the prompt count:
# SD1.5's 77 x 768 float32 encoding is 236 KB (60 MB for 256), SDXL's 77 x 2048 630 KB (160 MB).
ENCODING_CACHE_SIZE = 256


class LRUCache:
    """At most `size` entries; adding one more drops the least recently used (size 0 keeps none)."""

    def __init__(self, size: int):
        if size < 0:
            raise ValueError(f"cache size must be >= 0, got {size}")
        self.size = size
        self._entries: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def get(self, key, make):
        """The cached value of `key`, or `make()` stored under it."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = make()
        if self.size:
            self._entries[key] = value
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value


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

    def conditioning_shape(self, prompt: str) -> tuple:
        """A key that two prompts share when their encodings batch together (here: the encoding's shape).

        Batches (trajectory shards, benchmark and preview batches) group prompts by this key.
        """
        return tuple(self.conditioning([prompt])[0][0].shape[1:])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """ComfyUI-space latents -> images (B, 3, H, W) in [0, 1]."""
        raise NotImplementedError


class CheckpointBackend(Backend):
    """Any checkpoint ComfyUI's CheckpointLoaderSimple loads (SD1.x, SD2.x, SDXL, SD3, ...)."""

    def __init__(self, path: str | Path, resolution: int = 512, precision: str = "auto",
                 cache_size: int = ENCODING_CACHE_SIZE):
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
        self._cache = LRUCache(cache_size)  # prompt -> (cond, pooled), bounded: I2P + COCO are thousands
        log.info("loaded %s as %s (%s-prediction), latent %s", path.name, self.base_model, self.prediction_type, self.latent_shape)

    def _encode(self, prompt: str):
        """(cond, pooled) of a prompt, through the LRU cache."""
        return self._cache.get(prompt, lambda: self.clip.encode_from_tokens(self.clip.tokenize(prompt), return_pooled=True))

    def conditioning_shape(self, prompt: str) -> tuple:
        """The prompt's token layout per text encoder: the length of each chunk it tokenises to (CLIP:
        77 per 75 tokens, so a long prompt has 2 or more chunks; T5: its token count).

        Equal layouts encode to equal shapes. Tokenising is string work where encoding is a pass of
        every text encoder (T5-XXL's included), so planning thousands of prompts encodes none of
        them and leaves the bounded encoding cache to the shards. `conditioning` still checks the
        shapes it concatenates.
        """
        tokens = self.clip.tokenize(prompt)
        return tuple((name, tuple(len(chunk) for chunk in chunks)) for name, chunks in sorted(tokens.items()))

    def conditioning(self, prompts):
        encoded = [self._encode(p) for p in prompts]
        shapes = {tuple(c.shape[1:]): p[:60] for p, (c, _) in zip(prompts, encoded)}  # shape -> a prompt
        if len(shapes) > 1:
            raise ValueError(f"prompts encode to different token lengths, so they cannot share a batch: {shapes} "
                             "(group them by conditioning_shape)")
        cond = torch.cat([c for c, _ in encoded])
        extras = {"pooled_output": torch.cat([p for _, p in encoded])} if encoded[0][1] is not None else {}
        return [[cond, extras]]

    @torch.no_grad()  # ComfyUI's VAE.decode builds an autograd graph otherwise (weights loaded with requires_grad)
    def decode(self, latents):
        return self.vae.decode(latents).movedim(-1, 1).clamp(0, 1).float().cpu()
