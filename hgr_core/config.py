"""The HGR network's architecture, as a frozen dataclass that weights files carry as JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

CONTEXT_INPUTS = ("noisy_latent", "uncond_denoised")


@dataclass(frozen=True)
class HGRConfig:
    """Architecture of a Harmful Guidance Redirector. Defaults suit SD1.x (4 latent channels)."""

    latent_channels: int = 4  # 4 for SD1.x/SD2.x/SDXL, 16 for SD3/Flux-style latents
    categories: tuple[str, ...] = ("nudity", "violence")  # one gate (and target) per category
    base_channels: int = 48  # width of the first U-Net level
    channel_mult: tuple[int, ...] = (1, 2, 4)  # one U-Net level per entry; 3 levels halve twice
    blocks_per_level: int = 1  # residual blocks per level on the way down and up
    sigma_features: int = 32  # Fourier features of log(sigma) before the embedding MLP
    # What the network sees besides g: "noisy_latent" = x / sqrt(sigma^2 + 1),
    # "uncond_denoised" = D_u, the unconditional x0 estimate. Both show *what is being drawn*.
    context: tuple[str, ...] = CONTEXT_INPUTS
    gate_bias_init: float = -2.0  # initial gate logit: sigmoid(-2) = 0.12, mostly "clean"

    def __post_init__(self):
        # Accept lists (from JSON) but store tuples so the config stays hashable.
        for name in ("categories", "channel_mult", "context"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.latent_channels < 1:
            raise ValueError(f"latent_channels must be >= 1, got {self.latent_channels}")
        if not self.categories or len(set(self.categories)) != len(self.categories):
            raise ValueError(f"categories must be non-empty and unique, got {self.categories}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"channel_mult must be positive, got {self.channel_mult}")
        if self.base_channels % 8:
            raise ValueError(f"base_channels must be a multiple of 8 (GroupNorm), got {self.base_channels}")
        unknown = set(self.context) - set(CONTEXT_INPUTS)
        if unknown:
            raise ValueError(f"unknown context inputs {sorted(unknown)}; choose from {CONTEXT_INPUTS}")

    @property
    def num_categories(self) -> int:
        return len(self.categories)

    @property
    def downsample_factor(self) -> int:
        """Latent sizes are padded to a multiple of this internally."""
        return 2 ** (len(self.channel_mult) - 1)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "HGRConfig":
        """Rebuild from JSON; raise ValueError naming unknown or invalid fields."""
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise ValueError("config JSON must be an object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"unknown config fields {sorted(unknown)}")
        return cls(**fields)
