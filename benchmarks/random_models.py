"""ComfyUI SD1.x models with random weights, built from ComfyUI's own classes (no download).

ComfyUI's ops make `reset_parameters()` a no-op (it expects weights from a file), so a fresh
model holds uninitialised memory; `initialise_weights` calls torch's base-class initialisers.
Call `safecfg_comfy.locate.setup_comfyui()` before importing this module.
"""

from __future__ import annotations

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.supported_models

from hgr_core import atomic_write

TINY_SD15_UNET = {  # ~1M parameters, COMFYUI.md's tiny config
    "model_channels": 32, "in_channels": 4, "out_channels": 4, "channel_mult": [1, 2],
    "num_res_blocks": [1, 1], "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1],
    "transformer_depth_middle": 1, "context_dim": 32, "use_spatial_transformer": True,
    "use_linear_in_transformer": False, "legacy": False, "adm_in_channels": None,
    "use_temporal_attention": False, "use_temporal_resblock": False, "image_size": 32,
}

SD15_UNET = {  # the standard SD1.5 UNet (860M parameters)
    "model_channels": 320, "in_channels": 4, "out_channels": 4, "channel_mult": [1, 2, 4, 4],
    "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1], "transformer_depth_middle": 1,
    "context_dim": 768, "use_spatial_transformer": True, "use_linear_in_transformer": False,
    "legacy": False, "adm_in_channels": None, "use_temporal_attention": False,
    "use_temporal_resblock": False, "image_size": 32,
}

_INITIALISABLE = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.Embedding)


@torch.no_grad()
def initialise_weights(module: torch.nn.Module, seed: int = 0, std: float = 0.02) -> torch.nn.Module:
    """Deterministically give every weight a sane value (small normal matrices, unit norms)."""
    generator = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
            if m.weight is not None:
                m.weight.fill_(1.0)
                m.bias.zero_()
        elif isinstance(m, _INITIALISABLE):
            m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * std)
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
    return module


def sd15_model(unet_config: dict = TINY_SD15_UNET, dtype: torch.dtype = torch.float32, seed: int = 0):
    """A ComfyUI ModelPatcher of the SD1.5 family with random weights, on ComfyUI's device."""
    config = comfy.supported_models.SD15(dict(unet_config))
    config.set_inference_dtype(dtype, None)
    model = config.get_model({})
    initialise_weights(model.diffusion_model, seed)
    model.diffusion_model.to(dtype)
    device = comfy.model_management.get_torch_device()
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=torch.device("cpu"))


SD_VAE_DDCONFIG = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                   "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def write_random_sd15_checkpoint(path, seed: int = 0, dtype: torch.dtype = torch.float16):
    """Write a full-size SD1.5 checkpoint (UNet, CLIP-L, VAE) with random weights.

    Built from ComfyUI's own classes and combined by the model's `state_dict_for_saving`, so
    `comfy.sd.load_checkpoint_guess_config` recognises it as SD15. ~2 GB in fp16, ~15 s here.
    Written to a temp file and renamed, so an interrupted write never leaves a bad cache.
    """
    import comfy.sd1_clip
    import comfy.utils
    from comfy.ldm.models.autoencoder import AutoencoderKL

    config = comfy.supported_models.SD15(dict(SD15_UNET))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({})
    initialise_weights(model.diffusion_model, seed)
    clip = initialise_weights(comfy.sd1_clip.SD1ClipModel(), seed + 1)
    vae = initialise_weights(AutoencoderKL(ddconfig=dict(SD_VAE_DDCONFIG), embed_dim=4), seed + 2)
    state = model.state_dict_for_saving(clip.state_dict(), vae.state_dict())
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    atomic_write(path, lambda tmp: comfy.utils.save_torch_file(state, tmp))
    return path
