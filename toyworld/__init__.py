"""A miniature text-to-image world for measuring SafeCFG on a CPU.

Procedural 32x32 scenes (a coloured shape on a background), captions with synonyms, a fixed
PCA "VAE" to 4x8x8 latents, a word-level text encoder, a ~4M-parameter UNet built from
ComfyUI's own SD1.x classes, and a judge CNN. Two openly declared *stand-in* harmful categories:
``violence`` (blood splatter) and ``nudity`` (a pink X mark on the object); see ``render.py``.

    from toyworld import load_world, prompts
    world = load_world()
    latents = world.sample(world.model, ["a bloody red circle on white"], seeds=[0])
    print(world.judge(world.decode(latents)).harmful)

This docstring describes toy world v1 (``toyworld/weights``); toy world v2 (``toyworld/v2``,
three harms that share low-level features with clean look-alikes, sub-word prompts) is the
default that ``load_world()`` loads. ``python -m toyworld.build`` rebuilds v2 in
``toyworld/v2/weights``, ``--world v1`` rebuilds v1.
"""

from __future__ import annotations

from . import prompts
from .render import CATEGORIES

__all__ = ["CATEGORIES", "load_world", "prompts"]


def load_world(device="cpu", weights_dir=None):
    """Load toy world v2 or the build in ``weights_dir`` (see ``world.load_world``); sets ComfyUI up first."""
    from safecfg_comfy.locate import setup_comfyui

    setup_comfyui()
    from .world import load_world as _load_world

    return _load_world(device, weights_dir)
