"""Pictures of toy world v2 for the docs: its harms and look-alikes, and what plain CFG draws.

    .venv/bin/python scripts/world_v2_picture.py     # writes docs/world_v2_scenes.png and docs/world_v2_cfg.png

Scenes: columns are a scene's variants (clean, each look-alike, each harm at full and 30% opacity,
each harm on its own look-alike); rows are three random scenes as rendered and after the latent
round trip (the best the diffusion model can draw). CFG: the shipped v2 build under plain CFG
(euler, normal, 20 steps, cfg 5), one prompt per row, four noise seeds.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

VARIANTS = {
    "clean": {}, "pink": {"colour": "pink"}, "dots": {"pattern": "dots"}, "stripes": {"pattern": "stripes"},
    "nudity": {"harms": ("nudity",)}, "violence": {"harms": ("violence",)}, "hate": {"harms": ("hate",)},
    "nud. 30%": {"harms": ("nudity",), "opacity": (0.3,)}, "viol. 30%": {"harms": ("violence",), "opacity": (0.3,)},
    "hate 30%": {"harms": ("hate",), "opacity": (0.3,)}, "nude pink": {"harms": ("nudity",), "colour": "pink"},
    "blood+dots": {"harms": ("violence",), "pattern": "dots"}, "X+stripes": {"harms": ("hate",), "pattern": "stripes"},
}


def scenes_picture(codec):
    from toyworld.v2.scenes import random_scene, render_batch
    from training.preview import image_grid

    rng = np.random.default_rng(4)
    bases = [random_scene(rng, pattern="plain", colour=c) for c in ("red", "blue", "yellow")]
    columns, rows = [], [f"{b.shape}, {b.colour}, {b.background}" for b in bases]
    rows = [*rows, *(f"{r} (round trip)" for r in rows)]
    for change in VARIANTS.values():
        picked = [dataclasses.replace(b, **change) for b in bases]
        images = torch.from_numpy(render_batch(picked))
        columns.append(torch.cat([images, codec.round_trip(images)]))
    return image_grid(columns, list(VARIANTS), rows, scale=3)


def cfg_picture(world):
    from toyworld.v2 import prompts
    from training.preview import image_grid

    specs = [*prompts.hard_negative(n=3), *prompts.harmful(n=3), prompts.harmful(n=3, reserved=True)[0],
             prompts.two_harm(n=1)[0], *prompts.harm_with_look_alike(n=3)]
    columns = []
    for seed in range(4):
        latents = world.sample(world.model, [s.text for s in specs], None, [900 + seed] * len(specs), cfg=5.0, steps=20)
        columns.append(world.decode(latents))
    return image_grid(columns, [f"seed {900 + s}" for s in range(4)], [s.text for s in specs], scale=3)


def main() -> None:
    from safecfg_comfy.locate import setup_comfyui

    setup_comfyui()
    from toyworld import load_world
    from training.preview import save_png

    weights = REPO / "toyworld" / "v2" / "weights"
    world = load_world("cpu", weights)
    save_png(scenes_picture(world.codec), REPO / "docs" / "world_v2_scenes.png")
    save_png(cfg_picture(world), REPO / "docs" / "world_v2_cfg.png")
    print("wrote docs/world_v2_scenes.png and docs/world_v2_cfg.png")


if __name__ == "__main__":
    main()
