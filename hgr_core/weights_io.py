"""HGR weights as .safetensors with self-describing metadata (METHOD.md section 4).

The file's metadata (all strings) carries the network config, so `load_hgr` rebuilds the exact
architecture from the file alone and loads strictly. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import HGRConfig
from .network import HGR

log = logging.getLogger(__name__)

FORMAT_NAME = "safecfg-hgr"
FORMAT_VERSION = "1"
PREDICTION_TYPES = ("eps", "v", "flow")
DEFAULT_THRESHOLD = 0.1  # uncalibrated fallback; train_hgr stores a calibrated value


class HGRFileError(ValueError):
    """A weights file that cannot be used as an HGR; the message names the file and the fix."""


def save_hgr(
    model: HGR,
    path: str | os.PathLike,
    *,
    base_model: str = "SD1.x",
    prediction_type: str = "eps",
    threshold: float = DEFAULT_THRESHOLD,
    training: dict | None = None,
    extra: dict[str, str] | None = None,
) -> Path:
    """Write `model`'s weights and metadata to `path` atomically (temp file, then rename)."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    config = model.config
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "config": config.to_json(),
        "base_model": base_model,
        "latent_channels": str(config.latent_channels),
        "prediction_type": prediction_type,
        "categories": json.dumps(list(config.categories)),
        "threshold": repr(float(threshold)),
        "training": json.dumps(training or {}, sort_keys=True),
        **(extra or {}),
    }
    tensors = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("saved HGR (%d tensors) to %s", len(tensors), path)
    return path


def read_hgr_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The raw metadata of an HGR file, validated for format name and version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HGR weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise HGRFileError(f"{path} is truncated or not a .safetensors file ({e}); re-download or re-export it") from e
    if metadata.get("format") != FORMAT_NAME:
        raise HGRFileError(
            f"{path} is not an HGR weights file (metadata format={metadata.get('format')!r}, expected "
            f"{FORMAT_NAME!r}); put only files exported by `python -m training.train_hgr` in models/hgr"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise HGRFileError(
            f"{path} has HGR format version {metadata.get('format_version')!r}, this pack reads "
            f"version {FORMAT_VERSION}; update the node pack or re-export the weights"
        )
    return metadata


def _parse_metadata(path: Path, metadata: dict[str, str]) -> tuple[HGRConfig, dict]:
    try:
        config = HGRConfig.from_json(metadata["config"])
        info = {
            "path": str(path),
            "base_model": metadata.get("base_model", "unknown"),
            "prediction_type": metadata.get("prediction_type", "eps"),
            "threshold": float(metadata.get("threshold", DEFAULT_THRESHOLD)),
            "training": json.loads(metadata.get("training", "{}")),
        }
    except (KeyError, ValueError, TypeError) as e:
        raise HGRFileError(f"{path} has invalid HGR metadata ({type(e).__name__}: {e}); re-export it") from e
    if not math.isfinite(info["threshold"]):
        raise HGRFileError(f"{path} has a non-finite detection threshold {info['threshold']}; re-export it")
    if info["prediction_type"] not in PREDICTION_TYPES:
        raise HGRFileError(f"{path} has unknown prediction_type {info['prediction_type']!r}; expected one of {PREDICTION_TYPES}")
    return config, info


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as e:
        raise HGRFileError(f"{path} is truncated or corrupt ({e}); re-download or re-export it") from e


def load_hgr(path: str | os.PathLike, device: str | torch.device = "cpu") -> HGR:
    """Rebuild an HGR from the file's metadata and load its weights strictly.

    The returned module is in eval mode, float32, and carries `.metadata` (base_model,
    prediction_type, threshold, training summary, path).
    """
    path = Path(path)
    config, info = _parse_metadata(path, read_hgr_metadata(path))
    model = HGR(config)
    try:
        model.load_state_dict(_read_tensors(path), strict=True)
    except RuntimeError as e:
        raise HGRFileError(
            f"{path}: tensors do not match the config stored in the file ({str(e).splitlines()[0]}...); "
            "the file was edited or written by a different exporter, re-export it"
        ) from e
    model.metadata = info
    return model.to(device).eval().requires_grad_(False)
