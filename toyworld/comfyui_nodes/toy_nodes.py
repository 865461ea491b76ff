"""Toy-world nodes: the toy MODEL, toy text encoding, and the toy "VAE" between IMAGE and LATENT.

Socket types are ComfyUI's own (MODEL, CONDITIONING, LATENT, IMAGE), so these nodes slot into
any graph in place of CheckpointLoaderSimple / CLIPTextEncode / VAEDecode / VAEEncode. Empty
latents need no node of their own: ComfyUI's `EmptyLatentImage` with width = height = 64 gives
the world's 4x8x8 latents (it divides by 8; the toy "VAE" decodes 8x8 to 32x32 pixels, so the
nominal 64 px is not the decoded size, and width 32 would give a 4x4 latent the UNet was never
trained on).
"""

from __future__ import annotations

import logging
import threading

import torch
from comfy_api.latest import io
from einops import rearrange

log = logging.getLogger(__name__)

CATEGORY = "toyworld"
IMAGE_SIZE = 32  # pixels per side of a toy-world image

_world = None
_world_lock = threading.Lock()


def shared_world():
    """Toy world v1 (`toyworld/weights`, on the CPU), loaded once per process.

    v1, not the default v2, on purpose: these nodes exist for graph tests of ComfyUI's plumbing
    (and the node screenshot), whose assertions rely on v1 drawing every asked-for harm and on the
    committed v1 test HGR; v2's CFG draws a harm for only some seeds.

    Every node uses this one object, and tests compare against it. It is loaded with inference
    mode off: the executor runs nodes under `torch.inference_mode()`, and weights created there
    would be inference tensors that LoRA patching or training outside it cannot modify.
    """
    global _world
    with _world_lock:
        if _world is None:
            from toyworld import load_world
            from toyworld.files import V1_WEIGHTS_DIR

            with torch.inference_mode(False):
                _world = load_world("cpu", V1_WEIGHTS_DIR)
    return _world


def split_prompts(text: str) -> list[str]:
    """One prompt per line; a single line (or "") is one prompt that ComfyUI repeats over the batch.

    Only "\\n" separates prompts (not str.splitlines, which also splits on U+2028 and friends);
    leading/trailing blank lines are dropped, a blank line between prompts is the empty prompt.
    """
    return [line.strip() for line in text.strip("\r\n").split("\n")]


class ToyWorldModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ToyWorldModel",
            display_name="Toy World Model",
            category=CATEGORY,
            description="The toy world's (v1) text-to-image UNet (SD1.x architecture, 4x8x8 latents, eps). "
            "Test and demo use only.",
            outputs=[io.Model.Output(display_name="model", tooltip="The shared toy-world model (not a clone).")],
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        return io.NodeOutput(shared_world().model)


class ToyWorldTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ToyWorldTextEncode",
            display_name="Toy World Text Encode",
            category=CATEGORY,
            description="Encodes toy-world prompts to CONDITIONING with the world's own text encoder.",
            inputs=[
                io.String.Input("text", multiline=True, default="a red circle on white",
                                tooltip="One prompt for the whole batch, or one prompt per line (one per "
                                        "image: the latent batch must have as many images as lines). "
                                        "Empty = the unconditional prompt."),
            ],
            outputs=[io.Conditioning.Output(display_name="conditioning",
                                            tooltip="[[embedding (lines, 24, 32), {}]]")],
        )

    @classmethod
    def execute(cls, text: str) -> io.NodeOutput:
        return io.NodeOutput(shared_world().conditioning(split_prompts(text)))


class ToyWorldVAEDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ToyWorldVAEDecode",
            display_name="Toy World VAE Decode",
            category=CATEGORY,
            description="Decodes toy-world latents (B, 4, 8, 8) to 32x32 images with the world's fixed PCA codec.",
            inputs=[io.Latent.Input("samples", tooltip="Latents in ComfyUI space, as KSampler returns them.")],
            outputs=[io.Image.Output(display_name="image", tooltip="(B, 32, 32, 3) in [0, 1].")],
        )

    @classmethod
    def execute(cls, samples) -> io.NodeOutput:
        latents = samples["samples"]
        world = shared_world()
        if tuple(latents.shape[1:]) != world.latent_shape:
            raise ValueError(f"ToyWorldVAEDecode needs (B, {', '.join(map(str, world.latent_shape))}) latents, got "
                             f"{tuple(latents.shape)}; make empty latents with EmptyLatentImage at 64x64")
        return io.NodeOutput(rearrange(world.decode(latents), "b c h w -> b h w c"))


class ToyWorldVAEEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="ToyWorldVAEEncode",
            display_name="Toy World VAE Encode",
            category=CATEGORY,
            description="Encodes 32x32 images to toy-world latents (B, 4, 8, 8) with the world's fixed PCA codec.",
            inputs=[io.Image.Input("pixels", tooltip=f"(B, {IMAGE_SIZE}, {IMAGE_SIZE}, 3) in [0, 1]; "
                                                     "an alpha channel is dropped.")],
            outputs=[io.Latent.Output(display_name="latent", tooltip="Latents in ComfyUI space.")],
        )

    @classmethod
    def execute(cls, pixels) -> io.NodeOutput:
        if pixels.ndim != 4 or tuple(pixels.shape[1:3]) != (IMAGE_SIZE, IMAGE_SIZE) or pixels.shape[3] < 3:
            raise ValueError(f"ToyWorldVAEEncode needs (B, {IMAGE_SIZE}, {IMAGE_SIZE}, 3) images, got "
                             f"{tuple(pixels.shape)}; scale them first (e.g. ImageScale to {IMAGE_SIZE}x{IMAGE_SIZE})")
        images = rearrange(pixels[..., :3], "b h w c -> b c h w")
        return io.NodeOutput({"samples": shared_world().encode_images(images)})


NODE_LIST = [ToyWorldModel, ToyWorldTextEncode, ToyWorldVAEDecode, ToyWorldVAEEncode]
