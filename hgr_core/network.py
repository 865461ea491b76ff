"""The Harmful Guidance Redirector: a small conditional U-Net acting on the CFG direction.

Gated-residual form of METHOD.md section 3, one gate and one target per harm category k:

    r_k = g + delta_k,   h_k = sigmoid(gate_logit_k) in [0, 1] per pixel

`guidance.combine_redirections` turns (delta, h) into R(g) - g by the network's
`combine_rule`. The output layer is zero-initialised, so delta = 0 and a fresh network is exactly
the identity R(g) = g.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import HGRConfig

EPS = 1e-6
# How per-category changes combine (`guidance.combine_redirections`): "sum" removes every active
# category fully, "mean" (the gate-weighted mean) is what HGRs exported before the rule was recorded use.
COMBINE_RULES = ("mean", "sum")


@dataclass
class HGROutput:
    """Raw network output; `delta` is already in g's scale."""

    delta: torch.Tensor  # (B, K, C, H, W) target minus g, per category
    gate_logits: torch.Tensor  # (B, K, H, W)

    @property
    def gate(self) -> torch.Tensor:
        return torch.sigmoid(self.gate_logits)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4) or 1, channels)


class SigmaEmbedding(nn.Module):
    """Fourier features of log(sigma) followed by an MLP (sigma spans ~0.03..15 for SD)."""

    def __init__(self, features: int, dim: int):
        super().__init__()
        frequencies = math.pi * 2.0 ** torch.linspace(-3, 2, features // 2)
        self.register_buffer("frequencies", frequencies, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        angles = sigma.clamp_min(EPS).log()[:, None] * self.frequencies[None]
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=1))


class ResBlock(nn.Module):
    """Pre-norm residual block with FiLM conditioning on the sigma embedding."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_channels)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = rearrange(self.film(emb), "b (two c) -> two b c 1 1", two=2)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class HGR(nn.Module):
    """Harmful Guidance Redirector. Fully convolutional: any H, W and batch size; C fixed by config.

    combine_rule is not architecture (the same weights load under either rule) but the rule the
    weights were trained with, so it travels in the weights file's metadata, not in HGRConfig. A new
    network trains with "sum"; `load_hgr` sets the rule the file records ("mean" when it records none).
    """

    def __init__(self, config: HGRConfig = HGRConfig(), combine_rule: str = "sum"):
        super().__init__()
        if combine_rule not in COMBINE_RULES:
            raise ValueError(f"combine_rule must be one of {COMBINE_RULES}, got {combine_rule!r}")
        self.config = config
        self.combine_rule = combine_rule
        self.metadata: dict = {}  # filled by load_hgr: prediction type, threshold, training summary
        c, k = config.latent_channels, config.num_categories
        widths = [config.base_channels * m for m in config.channel_mult]
        emb_dim = 4 * config.base_channels
        self.sigma_embedding = SigmaEmbedding(config.sigma_features, emb_dim)
        self.stem = nn.Conv2d(c * (1 + len(config.context)), widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = widths[0]
        for level, width in enumerate(widths):
            self.down.append(self._blocks(previous, width, emb_dim))
            previous = width
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.middle = ResBlock(previous, previous, emb_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            self.up.append(self._blocks(previous + widths[level], widths[level], emb_dim))
            previous = widths[level]
            if level > 0:
                self.upsample.append(nn.Conv2d(previous, previous, 3, padding=1))
        self.head_norm = _norm(previous)
        self.head = nn.Conv2d(previous, k * c + k, 3, padding=1)
        self._init_head_as_identity()

    def _blocks(self, in_channels: int, out_channels: int, emb_dim: int) -> nn.ModuleList:
        blocks = [ResBlock(in_channels, out_channels, emb_dim)]
        blocks += [ResBlock(out_channels, out_channels, emb_dim) for _ in range(self.config.blocks_per_level - 1)]
        return nn.ModuleList(blocks)

    def _init_head_as_identity(self):
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.bias[-self.config.num_categories :] = self.config.gate_bias_init

    def _inputs(self, g, sigma, x, uncond_denoised) -> torch.Tensor:
        parts = [g]
        for name in self.config.context:
            if name == "noisy_latent":
                parts.append(x / torch.sqrt(sigma**2 + 1).view(-1, 1, 1, 1))
            elif name == "uncond_denoised":
                parts.append(uncond_denoised)
        return torch.cat(parts, dim=1)

    def forward(self, g: torch.Tensor, sigma: torch.Tensor, x: torch.Tensor, uncond_denoised: torch.Tensor) -> HGROutput:
        """g, x, uncond_denoised: (B, C, H, W) float32, g in eps space; sigma: (B,).

        g is normalised by its per-sample RMS on the way in and delta rescaled on the way out,
        so the redirection is equivariant to the guidance magnitude (which varies with sigma).
        """
        if g.ndim != 4 or g.shape[1] != self.config.latent_channels:
            raise ValueError(f"expected g of shape (B, {self.config.latent_channels}, H, W), got {tuple(g.shape)}")
        b, c, height, width = g.shape
        rms = g.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt() + EPS
        h = self._inputs(g / rms, sigma, x, uncond_denoised)
        h = _pad_to_multiple(h, self.config.downsample_factor)
        emb = self.sigma_embedding(sigma)
        h = self.stem(h)
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.middle(h, emb)
        for level, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
            if level < len(self.upsample):
                h = self.upsample[level](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.head(F.silu(self.head_norm(h)))[:, :, :height, :width]
        k = self.config.num_categories
        delta = rearrange(out[:, : k * c], "b (k c) h w -> b k c h w", k=k) * rms[:, None]
        return HGROutput(delta=delta, gate_logits=out[:, k * c :])


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    pad_h, pad_w = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
