"""The world's diffusion model: ComfyUI's own SD1.x UNet class, shrunk to ~4M parameters.

Built from ``comfy.supported_models.SD15`` with a small ``unet_config``, so it is an SD15-family
``BaseModel`` with eps prediction on SD's scaled-linear schedule (ComfyUI's ``model_sampling``),
4 latent channels and SD15's stock ``latent_format`` (scale_factor 0.18215; see ``latent.py``).
ComfyUI's samplers, CFG hooks and ``ModelPatcher.clone()`` treat it exactly like a real checkpoint.

Callers must have run ``safecfg_comfy.locate.setup_comfyui()`` before importing this module.
"""

from __future__ import annotations

import json
import os

import comfy.model_patcher
import comfy.supported_models
import torch
import torch.nn as nn

from .files import load_checked, save_atomic

UNET_CONFIG = {
    "model_channels": 64,
    "channel_mult": [1, 2],
    "num_res_blocks": [1, 1],
    "transformer_depth": [1, 1],
    "transformer_depth_output": [1, 1, 1, 1],
    "transformer_depth_middle": 1,
    "context_dim": 32,
    "in_channels": 4,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "use_linear_in_transformer": False,
    "legacy": False,
    "adm_in_channels": None,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
    "image_size": 32,  # required by UNetModel, unused by SD1.x
}
FORMAT = "toyworld-unet/1"


def build_model(unet_config: dict = UNET_CONFIG):
    """An SD15-family ``comfy.model_base.BaseModel`` with *uninitialised* weights (float32)."""
    model_config = comfy.supported_models.SD15(dict(unet_config))
    model_config.set_inference_dtype(torch.float32, None)
    return model_config.get_model({})


def init_weights(unet: nn.Module) -> None:
    """Initialise every weight; ComfyUI's ops make ``reset_parameters`` a no-op.

    Torch's default initialisers for convs/linears/norms, then zeros for each residual branch's
    last layer (ResBlock ``out_layers``, transformer ``proj_out``) and the output conv, so the
    fresh UNet starts as a near-identity stack, as in the ADM/LDM code it comes from.
    """
    with torch.no_grad():
        for p in unet.parameters():
            p.fill_(float("nan"))  # so the check below proves every parameter was reached
        for m in unet.modules():
            for cls in (nn.Conv2d, nn.Linear, nn.GroupNorm, nn.LayerNorm):
                if isinstance(m, cls):
                    cls.reset_parameters(m)
        last_layers = [unet.out[-1]]
        last_layers += [m.out_layers[-1] for m in unet.modules() if type(m).__name__ == "ResBlock"]
        last_layers += [m.proj_out for m in unet.modules() if type(m).__name__ == "SpatialTransformer"]
        for layer in last_layers:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
    bad = [name for name, p in unet.named_parameters() if not torch.isfinite(p).all()]
    assert not bad, f"parameters left uninitialised: {bad[:5]}"


def new_model(seed: int = 0):
    """A freshly initialised model (seeded)."""
    model = build_model()
    torch.manual_seed(seed)
    init_weights(model.diffusion_model)
    return model


def patcher(model, device: str | torch.device = "cpu"):
    """Wrap a model for ComfyUI's samplers."""
    device = torch.device(device)
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


def save_unet(unet: nn.Module, path: str | os.PathLike, summary: dict) -> None:
    """Save the UNet weights as fp16 (halves the file; sampling quality unchanged) with its config."""
    meta = {"format": FORMAT, "unet_config": json.dumps(UNET_CONFIG), "family": "SD15", "prediction": "eps",
            "latent_channels": "4", "summary": json.dumps(summary)}
    save_atomic({k: v.to(torch.float16) for k, v in unet.state_dict().items()}, path, meta)


def load_unet(path: str | os.PathLike):
    """Rebuild the model from the file's metadata and load its weights strictly, as float32."""
    sd, meta = load_checked(path, FORMAT)
    model = build_model(json.loads(meta["unet_config"]))
    model.diffusion_model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model
