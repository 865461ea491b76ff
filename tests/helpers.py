"""Helpers shared by the tests (import them: `from helpers import REPO, run_node, ...`)."""

from __future__ import annotations

import socket
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_node(comfy_nodes, node_id: str, **inputs):
    """Execute a registered node the way ComfyUI's executor calls it; returns its outputs tuple."""
    cls = comfy_nodes.NODE_CLASS_MAPPINGS[node_id]
    out = getattr(cls, cls.FUNCTION)(**inputs)
    return tuple(out.result) if hasattr(out, "result") else tuple(out)


def redirecting_hgr(seed: int = 0, **config):
    """An HGR whose output layer is random: it changes the guidance everywhere."""
    from hgr_core import HGR, HGRConfig

    torch.manual_seed(seed)
    hgr = HGR(HGRConfig(base_channels=16, **config))
    with torch.no_grad():
        hgr.head.weight.normal_(0, 0.05)
        hgr.head.bias.zero_()
    hgr.metadata = {"prediction_type": "eps", "path": "test-hgr"}
    return hgr.eval()


def identity_hgr(**config):
    from hgr_core import HGR, HGRConfig

    hgr = HGR(HGRConfig(base_channels=16, **config)).eval()
    hgr.metadata = {"prediction_type": "eps", "path": "identity-hgr"}
    return hgr


# Tiny unet configs of ComfyUI 0.3.75's model families (comfy/supported_models.py), for models
# built in-process: no checkpoint file of SDXL, SD3, Flux or Wan is small.
SDXL_TINY_UNET = {  # the SDXL UNet's structure (ADM vector input, linear transformer projections), tiny
    "model_channels": 32, "in_channels": 4, "out_channels": 4, "channel_mult": [1, 2],
    "num_res_blocks": [1, 1], "transformer_depth": [0, 1], "transformer_depth_output": [0, 0, 1, 1],
    "transformer_depth_middle": 1, "context_dim": 32, "num_head_channels": 32, "use_spatial_transformer": True,
    "use_linear_in_transformer": True, "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816,
    "use_temporal_attention": False, "use_temporal_resblock": False, "image_size": 32,
}
SD20_TINY_UNET = {  # SD2.x's structure (linear transformer projections, 64-channel heads: SD20's unet_extra_config), tiny
    "model_channels": 64, "in_channels": 4, "out_channels": 4, "channel_mult": [1, 2],
    "num_res_blocks": [1, 1], "transformer_depth": [1, 1], "transformer_depth_output": [1, 1, 1, 1],
    "transformer_depth_middle": 1, "context_dim": 32, "use_spatial_transformer": True,
    "use_linear_in_transformer": True, "legacy": False, "adm_in_channels": None,
    "use_temporal_attention": False, "use_temporal_resblock": False, "image_size": 32,
}
SD3_TINY_MMDIT = {"in_channels": 16, "out_channels": 16, "pos_embed_scaling_factor": None, "patch_size": 2, "depth": 1,
                  "adm_in_channels": 32, "pos_embed_max_size": 16, "num_patches": 256,
                  "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 32, "out_features": 64}}}
FLUX_TINY = {"image_model": "flux", "guidance_embed": True, "in_channels": 16, "out_channels": 16, "vec_in_dim": 32,
             "context_in_dim": 32, "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2, "depth": 1,
             "depth_single_blocks": 1, "axes_dim": [8, 12, 12], "theta": 10000, "patch_size": 2, "qkv_bias": True}
WAN21_TINY = {"image_model": "wan2.1", "model_type": "t2v", "patch_size": [1, 2, 2], "text_len": 8, "in_dim": 16,
              "dim": 64, "ffn_dim": 64, "freq_dim": 32, "text_dim": 32, "out_dim": 16, "num_heads": 2, "num_layers": 1}


def comfy_model(family: str, unet_config: dict, state_dict: dict | None = None):
    """A ModelPatcher of `comfy.supported_models.<family>` with a tiny config (weights uninitialised).

    state_dict: what the family's `model_type` reads to pick a prediction type (SD20: v or eps).
    """
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    config = getattr(comfy.supported_models, family)(dict(unet_config))
    config.set_inference_dtype(torch.float32, None)
    return comfy.model_patcher.ModelPatcher(config.get_model(state_dict or {}),
                                            load_device=comfy.model_management.get_torch_device(),
                                            offload_device=torch.device("cpu"))


def _grid_numbers(harmful: float, fidelity: float, pixel_diff: float) -> dict:
    count = {"k": 0 if harmful != harmful else round(harmful * 20), "n": 0 if harmful != harmful else 20, "rate": harmful, "low": max(0.0, harmful - 0.2),
             "high": min(1.0, harmful + 0.2)}
    return {"harmful": count, "clean_fidelity": fidelity, "clean_attribute_accuracy": fidelity,
            "clean_pixel_diff": pixel_diff, "clean_max_pixel_change": 4 * pixel_diff, "seconds": 1.0}


def sld_grid_report(rows=None, cfg: float = 5.0) -> dict:
    """A minimal `benchmarks.sld_grid` report: (name, on_front, dev harmful rate, dev clean fidelity,
    dev pixel diff) per grid point (made-up numbers, for the code that reads the report), tuned at `cfg`."""
    rows = rows or [("max", False, 0.05, 0.50, 0.20), ("g01", True, 0.10, 0.90, 0.08), ("g02", True, 0.30, 0.99, 0.01)]
    preset = {"warmup_steps": 0, "sld_scale": 5000.0, "threshold": 0.025, "momentum": 0.5, "beta": 0.7}
    grid = [{"name": name, "preset": preset, "warmup_steps": 0, "on_front": front,
             "dev": _grid_numbers(harmful, fidelity, diff)} for name, front, harmful, fidelity, diff in rows]
    return {"kind": "sld_grid", "world": "toyworld-v2", "settings": {"condition": {"cfg": cfg}}, "grid": grid,
            "front": [r["name"] for r in grid if r["on_front"]]}
