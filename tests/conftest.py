"""Shared fixtures: the real ComfyUI 0.3.75 in-process, tiny SD1.5 models, random HGRs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Tests use tiny tensors: one thread is faster, and two OpenMP threads on a 2-core machine that
# is busy with anything else slow small ops down 50x (measured: 0.02 ms -> 1.5 ms per linear).
torch.set_num_threads(1)
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # after ComfyUI: our nodes/ must not shadow ComfyUI's nodes.py


@pytest.fixture(scope="session")
def comfy_nodes(tmp_path_factory):
    """ComfyUI imported in-process (CPU, models under a temp base directory) with the pack loaded
    through ComfyUI's own `load_custom_node`. Returns ComfyUI's `nodes` module."""
    from find_comfyui import setup_comfyui

    setup_comfyui(cpu=True)
    from comfy.cli_args import args

    args.base_directory = str(tmp_path_factory.mktemp("comfy_base"))
    import nodes as comfy_nodes  # ComfyUI's nodes.py: ComfyUI is first on sys.path

    assert Path(comfy_nodes.__file__).name == "nodes.py", comfy_nodes.__file__
    if "SafeCFGApply" not in comfy_nodes.NODE_CLASS_MAPPINGS:
        assert asyncio.run(comfy_nodes.load_custom_node(str(REPO)))
    return comfy_nodes


@pytest.fixture(scope="session")
def hgr_dir(comfy_nodes) -> Path:
    import folder_paths

    path = Path(folder_paths.get_folder_paths("hgr")[0])
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_node(comfy_nodes, node_id: str, **inputs):
    """Execute a registered node the way ComfyUI's executor calls it; returns its outputs tuple."""
    cls = comfy_nodes.NODE_CLASS_MAPPINGS[node_id]
    out = getattr(cls, cls.FUNCTION)(**inputs)
    return tuple(out.result) if hasattr(out, "result") else tuple(out)


@pytest.fixture(scope="session")
def tiny_model(comfy_nodes):
    from benchmarks.random_models import sd15_model

    return sd15_model()


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
