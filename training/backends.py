"""Model backends for HGR training: a ComfyUI checkpoint (`safecfg_comfy.backends`), or the toy world.

Both hand out a ComfyUI ModelPatcher sampled with ComfyUI's own samplers. Call
`safecfg_comfy.locate.setup_comfyui()` first.
"""

from __future__ import annotations

from safecfg_comfy.backends import PRECISIONS, Backend, CheckpointBackend

__all__ = ["PRECISIONS", "Backend", "CheckpointBackend", "ToyBackend"]


class ToyBackend(Backend):
    """The miniature world of `toyworld` (4x8x8 latents, SD1.x architecture)."""

    base_model = "toyworld"

    def __init__(self, device: str = "cpu", weights_dir=None):
        from toyworld import load_world

        self.world = load_world(device, weights_dir)
        self.base_model = self.world.hgr_base_model  # shown in the HGR's metadata: which toy world it was trained on
        self.model = self.world.model
        self.latent_shape = tuple(self.world.latent_shape)

    def conditioning(self, prompts):
        return self.world.conditioning(list(prompts))

    def decode(self, latents):
        return self.world.decode(latents)
