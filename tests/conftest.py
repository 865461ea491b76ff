"""Shared fixtures: the real ComfyUI 0.3.75 in-process and tiny SD1.5 models (helpers live in helpers.py).

Folders: unit/ (no ComfyUI), comfy/ (ComfyUI in-process), cli/ (the command-line tools as
subprocesses), server/ (a real ComfyUI server process).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
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
os.environ.setdefault("OMP_NUM_THREADS", "1")  # the same for the CLIs tests run as subprocesses (train_hgr, the demo)
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


@pytest.fixture(scope="session")
def toy_graph(comfy_nodes):
    """The toy-world node set (toyworld/comfyui_nodes: ToyWorldModel, ToyWorldTextEncode,
    ToyWorldVAEDecode, ToyWorldVAEEncode) loaded through ComfyUI's `load_custom_node`, so graphs run
    with `graph.run_prompt` can use it. Returns the World those nodes share (loaded once)."""
    if "ToyWorldModel" not in comfy_nodes.NODE_CLASS_MAPPINGS:
        assert asyncio.run(comfy_nodes.load_custom_node(str(REPO / "toyworld" / "comfyui_nodes")))
    from toyworld.comfyui_nodes.toy_nodes import shared_world

    return shared_world()


@pytest.fixture(scope="session")
def random_sd15_checkpoint(request) -> Path:
    """A full-size SD1.5 checkpoint with random weights (2.3 GB fp16) that CheckpointLoaderSimple
    recognises, written once by `benchmarks.random_models.write_random_sd15_checkpoint` into
    ~/.cache/safecfg (or $SAFECFG_CACHE): about a minute the first time, then only a path (ComfyUI
    is imported in-process only to write it)."""
    cache = Path(os.environ.get("SAFECFG_CACHE", Path.home() / ".cache" / "safecfg"))
    path = cache / "random_sd15_v1.safetensors"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".random_sd15.lock", "w") as lock:  # pytest-xdist workers: one writes, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.is_file():
            request.getfixturevalue("comfy_nodes")
            from benchmarks.random_models import write_random_sd15_checkpoint

            write_random_sd15_checkpoint(path)
    return path
