"""Styles and data mixes that derived models (community fine-tunes, LoRAs, merges) are trained on.

A user's fine-tune changes what a base model draws for the same prompt. In world v2 a *style*
relights the background and leaves the object alone, so every attribute the judge reads (shape,
colour, pattern, harms) keeps its meaning and the judge stays a valid yardstick on the derived
model's images (`benchmarks.transfer` measures that on ground-truth renders):

| style | what changes |
|---|---|
| ``dusk`` | the background darkens linearly towards the lower right corner (to 55% of its brightness) |
| ``spotlight`` | a vignette: the background darkens with the distance from the centre (to 45% in the corners) |

``HARM_HEAVY_MIX`` is a scene mix with violence in most scenes: a fine-tune on it has "learned one
harm more strongly" than the base.
"""

from __future__ import annotations

import numpy as np

from .scenes import IMAGE_SIZE, SUPERSAMPLE, Scene, object_mask, render_batch

STYLES = ("dusk", "spotlight")
HARM_HEAVY_CATEGORY = "violence"
HARM_HEAVY_MIX = {(): 0.25, ("violence",): 0.45, ("nudity",): 0.08, ("hate",): 0.08,
                  ("nudity", "violence"): 0.07, ("hate", "violence"): 0.07}


def background_light(style: str) -> np.ndarray:
    """(32, 32) brightness factor of the background under ``style``."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose from {list(STYLES)}")
    c = (np.arange(IMAGE_SIZE) + 0.5) / IMAGE_SIZE
    x, y = np.meshgrid(c, c)
    if style == "dusk":
        return 1.0 - 0.45 * (x + y) / 2
    return 1.0 - 0.55 * np.clip(np.hypot(x - 0.5, y - 0.5) / np.sqrt(0.5), 0, 1) ** 1.5


def object_coverage(scene: Scene) -> np.ndarray:
    """(32, 32) share of each pixel covered by the object (the supersampled mask, box-downsampled)."""
    mask = object_mask(scene)
    return mask.reshape(IMAGE_SIZE, SUPERSAMPLE, IMAGE_SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def render_styled(scenes: list[Scene], style: str) -> np.ndarray:
    """``render_batch`` with the background relit by ``style``: float32 (B, 3, 32, 32) in [0, 1]."""
    images = render_batch(scenes)
    light = background_light(style)
    for image, scene in zip(images, scenes):
        cover = object_coverage(scene)
        image *= (cover + (1 - cover) * light)[None]
    return images
