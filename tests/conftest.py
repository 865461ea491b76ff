"""Shared fixtures: the real ComfyUI 0.3.75 in-process and tiny SD1.5 models (helpers live in helpers.py).

Folders: unit/ (no ComfyUI), comfy/ (ComfyUI in-process), cli/ (the command-line tools as
subprocesses), server/ (a real ComfyUI server process).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))  # `import helpers` from every test folder
# Tests use tiny tensors: one thread is faster, and two OpenMP threads on a 2-core machine that
# is busy with anything else slow small ops down 50x (measured: 0.02 ms -> 1.5 ms per linear).
torch.set_num_threads(1)
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # after ComfyUI: our nodes/ must not shadow ComfyUI's nodes.py


@pytest.fixture(scope="session")
def comfy_nodes(tmp_path_factory):
    """ComfyUI imported in-process (CPU, models under a temp base directory) with the pack loaded
    through ComfyUI's own `load_custom_node`. Returns ComfyUI's `nodes` module."""
    from safecfg_comfy.locate import setup_comfyui

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


@pytest.fixture(scope="session")
def tiny_model(comfy_nodes):
    from benchmarks.random_models import sd15_model

    return sd15_model()
