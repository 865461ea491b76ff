"""Weights files: atomic safetensors writes and format-checked reads."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hgr_core import atomic_write

V1_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # toy world v1 (`python -m toyworld.build --world v1`)
V2_WEIGHTS_DIR = Path(__file__).resolve().parent / "v2" / "weights"  # toy world v2 (`python -m toyworld.build`)
DEFAULT_WEIGHTS_DIR = V2_WEIGHTS_DIR  # the world every CLI, load_world() and the toy nodes use without --toy-weights
REBUILD_HINT = "rebuild the toy world with `python -m toyworld.build` (`--world v1` for v1)"


def start_build(args) -> Path:
    """What every world's build does first: log to stderr, set ComfyUI up, use `args.threads` torch
    threads (0: torch's default) and create `args.out`; returns that folder."""
    import logging

    from safecfg_comfy.locate import setup_comfyui

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    setup_comfyui()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    return args.out


def save_atomic(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """Write through `hgr_core.atomic_write`, so a crash never leaves a half-written weights file."""
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_checked(path: str | os.PathLike, fmt: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a weights file whose ``format`` metadata must equal ``fmt``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"toy-world weights {path} not found; {REBUILD_HINT}")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != fmt:
        raise ValueError(f"{path} has format {meta.get('format')!r}, expected {fmt!r}; {REBUILD_HINT}")
    return load_file(str(path)), meta
