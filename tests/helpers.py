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
