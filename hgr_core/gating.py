"""Censoring images (ComfyUI's IMAGE layout: (B, H, W, C) floats in [0, 1]) and upsampling harm maps.

Blur is a Gaussian strong enough to hide content, not a soft-focus effect: sigma = size / 2 with
size 1/8 of the shorter side by default (a 512 px image: sigma 32 px). Pixelate averages size x size
blocks. Solid fills with one colour. Region-only censoring applies any of them only where the mask
is on (at or above `mask_threshold` after growing it by `grow` pixels, so a mark's edges are
covered too); outside it the image is left bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

STYLES = ("blur", "pixelate", "solid")


def default_size(images: torch.Tensor) -> int:
    """Blur/pixel block size when the user leaves it at 0: 1/8 of the shorter side, at least 2 px."""
    return max(2, min(images.shape[1], images.shape[2]) // 8)


def upsample_map(harm_map: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, h, w) latent-grid map -> (B, height, width) by bilinear interpolation (half-pixel centres)."""
    if harm_map.ndim != 3:
        raise ValueError(f"harm map must be (B, h, w), got shape {tuple(harm_map.shape)}")
    if harm_map.shape[1:] == (height, width):
        return harm_map.float()
    return F.interpolate(harm_map[:, None].float(), size=(height, width), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)


def _gaussian_blur(images: torch.Tensor, size: int) -> torch.Tensor:
    sigma = max(size / 2, 0.5)
    radius = min(int(3 * sigma), max(images.shape[1], images.shape[2]) - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets ** 2) / (2 * sigma ** 2))
    kernel = (kernel / kernel.sum()).to(images)
    x = images.permute(0, 3, 1, 2)
    c = x.shape[1]
    pad = min(radius, x.shape[2] - 1, x.shape[3] - 1)
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate" if pad < radius else "reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x.permute(0, 2, 3, 1)


def _pixelate(images: torch.Tensor, size: int) -> torch.Tensor:
    x = images.permute(0, 3, 1, 2)
    h, w = x.shape[2:]
    small = F.adaptive_avg_pool2d(x, (max(1, -(-h // size)), max(1, -(-w // size))))
    return F.interpolate(small, size=(h, w), mode="nearest").permute(0, 2, 3, 1)


def censored(images: torch.Tensor, style: str, size: int = 0, colour: tuple[float, ...] = (0.0, 0.0, 0.0)) -> torch.Tensor:
    """The whole images censored in `style`; size 0 = `default_size`."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    size = size or default_size(images)
    if style == "blur":
        return _gaussian_blur(images.float(), size).clamp(0, 1).to(images.dtype)
    if style == "pixelate":
        return _pixelate(images.float(), size).to(images.dtype)
    fill = torch.tensor(colour, dtype=images.dtype, device=images.device)[: images.shape[-1]]
    return fill.expand_as(images).clone()


def region(mask: torch.Tensor, grow: int = 0, mask_threshold: float = 0.5) -> torch.Tensor:
    """(B, H, W) soft mask -> (B, H, W) bool region, grown by `grow` pixels (max pooling)."""
    on = (mask.float() >= mask_threshold).float()[:, None]
    if grow > 0:
        on = F.max_pool2d(on, kernel_size=2 * grow + 1, stride=1, padding=grow)
    return on[:, 0] > 0


def censor_region(images: torch.Tensor, area: torch.Tensor, style: str, size: int = 0, colour=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """Censor only inside `area` ((B, H, W) bool); pixels outside it are returned unchanged."""
    if area.shape != images.shape[:3]:
        raise ValueError(f"mask is {tuple(area.shape[1:])} but the images are {tuple(images.shape[1:3])}")
    return torch.where(area[..., None], censored(images, style, size, colour), images)


def parse_colour(text: str) -> tuple[float, float, float]:
    """'#RRGGBB' or 'R,G,B' (0-255) -> floats in [0, 1]."""
    value = text.strip()
    try:
        if value.startswith("#") and len(value) == 7:
            parts = [int(value[i:i + 2], 16) for i in (1, 3, 5)]
        else:
            parts = [int(p) for p in value.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 3 or not all(0 <= p <= 255 for p in parts):
        raise ValueError(f"colour {text!r} is not '#RRGGBB' or 'R,G,B' with values 0-255 (e.g. '#000000')")
    return tuple(p / 255 for p in parts)
