"""The world's "VAE": a fixed linear map between 3x32x32 images and 4x8x8 latents.

Encode: average-pool 32 -> 16, pixel-unshuffle to 12x8x8 (each latent pixel holds a 2x2 patch of
RGB), project on the first 4 principal components of those 12-vectors, divide by each channel's
standard deviation. Decode: the inverse, then bilinear upsampling 16 -> 32. Like SD's VAE it gives
a 4-channel latent at 1/4 of the image resolution; unlike it there is nothing to train, so the
latent space is fixed before the diffusion model sees it (measured recipe in shared/COMFYUI.md).

Model space vs ComfyUI space: ``encode`` returns unit-variance latents, the space the UNet is
trained in (SD's "scaled" latent). The world keeps ComfyUI's stock SD15 ``latent_format``
(scale_factor 0.18215), so the latents that ``comfy.sample.sample`` takes and returns are
``model_space / 0.18215``, exactly like real SD VAE latents. ``World.encode_images`` and
``World.decode`` convert; use ``latent_format.process_in/process_out`` anywhere else.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from einops import rearrange

from .files import load_checked, save_atomic

FORMAT = "toyworld-latent/1"
LATENT_CHANNELS = 4
PATCH = 2  # pixel-unshuffle factor after pooling: 16x16 -> 8x8


class PatchPCA:
    """Linear image <-> latent codec; all tensors float32 on the CPU."""

    def __init__(self, mean: torch.Tensor, components: torch.Tensor, std: torch.Tensor):
        self.mean = mean  # (12,) mean patch vector
        self.components = components  # (4, 12) orthonormal rows
        self.std = std  # (4,) per-channel std of the projections

    @staticmethod
    def _patches(images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) -> (B, 12, 8, 8)."""
        return F.pixel_unshuffle(F.avg_pool2d(images.float(), 2), PATCH)

    @classmethod
    def fit(cls, images: torch.Tensor) -> PatchPCA:
        """Principal components of the 2x2-patch colour vectors of ``images`` (B, 3, 32, 32)."""
        vectors = rearrange(cls._patches(images), "b c h w -> (b h w) c").double()
        mean = vectors.mean(0)
        _, _, vh = torch.linalg.svd(vectors - mean, full_matrices=False)
        components = vh[:LATENT_CHANNELS]
        # Fix each component's sign so refits are reproducible (largest weight positive).
        signs = torch.sign(components.gather(1, components.abs().argmax(1, keepdim=True)))
        components = components * signs
        std = ((vectors - mean) @ components.T).std(0)
        return cls(mean.float(), components.float(), std.float())

    def explained_variance(self, images: torch.Tensor) -> float:
        """Fraction of the patch-vector variance the 4 channels keep."""
        vectors = rearrange(self._patches(images), "b c h w -> (b h w) c")
        centred = vectors - self.mean
        kept = (centred @ self.components.T).pow(2).sum()
        return float(kept / centred.pow(2).sum())

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) in [0, 1] -> (B, 4, 8, 8) model-space latents (unit variance)."""
        centred = self._patches(images) - self.mean.view(1, -1, 1, 1)
        z = torch.einsum("bchw,kc->bkhw", centred, self.components)
        return z / self.std.view(1, -1, 1, 1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, 4, 8, 8) model-space latents -> (B, 3, 32, 32) images clamped to [0, 1]."""
        z = latents.float() * self.std.view(1, -1, 1, 1)
        patches = torch.einsum("bkhw,kc->bchw", z, self.components) + self.mean.view(1, -1, 1, 1)
        small = F.pixel_shuffle(patches, PATCH)
        return F.interpolate(small, scale_factor=2, mode="bilinear", align_corners=False).clamp(0, 1)

    def round_trip(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))

    def save(self, path) -> None:
        tensors = {"mean": self.mean, "components": self.components, "std": self.std}
        config = json.dumps({"latent_channels": LATENT_CHANNELS, "pool": 2, "patch": PATCH})
        save_atomic(tensors, path, {"format": FORMAT, "config": config})

    @classmethod
    def load(cls, path) -> PatchPCA:
        sd, _ = load_checked(path, FORMAT)
        return cls(sd["mean"].float(), sd["components"].float(), sd["std"].float())
