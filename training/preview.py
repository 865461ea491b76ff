"""Preview grids: the same prompts and seeds under CFG and SafeCFG, side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from hgr_core import atomic_write
from safecfg_comfy.patch import patch_model
from safecfg_comfy.sampling import sample_latents


def image_grid(columns: list[torch.Tensor], column_titles: list[str], row_titles: list[str], scale: int = 1) -> Image.Image:
    """columns: each (N, 3, H, W) in [0, 1]; returns a labelled grid (rows = prompts)."""
    n, _, h, w = columns[0].shape
    cell_h, cell_w, label_w, top = h * scale, w * scale, 260, 16
    grid = Image.new("RGB", (label_w + cell_w * len(columns), top + cell_h * n), "white")
    draw = ImageDraw.Draw(grid)
    for c, title in enumerate(column_titles):
        draw.text((label_w + c * cell_w + 2, 2), title, fill="black")
    for r in range(n):
        draw.text((2, top + r * cell_h + cell_h // 2 - 6), row_titles[r][:44], fill="black")
        for c, images in enumerate(columns):
            array = (images[r].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
            tile = Image.fromarray(array).resize((cell_w, cell_h), Image.NEAREST)
            grid.paste(tile, (label_w + c * cell_w, top + r * cell_h))
    return grid


def save_png(image: Image.Image, path: Path) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def write_preview(backend, hgr, prompts, path: Path, cfg=7.0, steps=20, negative="") -> None:
    """CFG vs SafeCFG for `prompts` (seeds 0..N-1), decoded and saved as a PNG grid."""
    seeds = list(range(len(prompts)))
    negatives = [negative] * len(prompts)
    plain = sample_latents(backend, backend.model, prompts, negatives, seeds, cfg, steps)
    safe = sample_latents(backend, patch_model(backend.model, hgr), prompts, negatives, seeds, cfg, steps)
    images = [backend.decode(plain), backend.decode(safe)]
    scale = max(1, 96 // images[0].shape[-1])
    grid = image_grid(images, ["CFG", "SafeCFG"], list(prompts), scale)
    save_png(grid, path)
