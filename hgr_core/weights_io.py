"""HGR weights as .safetensors with self-describing metadata (METHOD.md section 4).

The file's metadata (all strings) carries the network config, so `load_hgr` rebuilds the exact
architecture from the file alone and loads strictly. Nothing is ever unpickled.

Metadata fields of format version 1:
  format, format_version   "safecfg-hgr", "1"
  config                   HGRConfig as JSON (the architecture)
  base_model               the model family trained on, for display (e.g. "SD15", "toyworld")
  latent_channels          the config's channel count, for display
  prediction_type          "eps", "v" or "flow"
  categories               JSON list, the config's categories
  threshold                calibrated detection threshold
  training                 JSON training summary
Optional fields, added later without changing the version (a file without one keeps its original
meaning, so files written before the field existed load as they always did):
  latent_format            ComfyUI's latent format class name of the model trained on ("SD15",
                           "SDXL", "SD3", "Flux", ...). Absent: the family is known only by its
                           channel count, and an SD1.5 HGR cannot be told from an SDXL one.
  combine_rule             how per-category changes combine, "sum" or "mean"
                           (`guidance.combine_redirections`). Absent: "mean", the rule every HGR
                           used before the field existed.
  calibration              JSON: how `threshold` was calibrated (percentile, false-positive target,
                           number of clean validation trajectories, the score's sigma window and
                           the sampling settings they were drawn from). Absent: the threshold is a
                           percentile of plain step-mean scores (before `scoring` weighted by sigma).
A reader accepts every format version up to its own; bump FORMAT_VERSION only for a field that
older readers must not ignore.

A weights file is untrusted input: its declared network is bounded and compared with the file's
tensor shapes (header only, the network built on the meta device) before memory is allocated.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch.overrides import TorchFunctionMode

from .config import HGRConfig
from .files import atomic_write
from .network import COMBINE_RULES, HGR, parameter_count

log = logging.getLogger(__name__)

FORMAT_NAME = "safecfg-hgr"
FORMAT_VERSION = "1"
PREDICTION_TYPES = ("eps", "v", "flow")
DEFAULT_THRESHOLD = 0.1  # uncalibrated fallback; train_hgr stores a calibrated value

# Bounds on a declared network. The module count (levels x blocks) is bounded before even the
# meta-device build, which costs Python time per module; the parameter bound is 25x the SD1.x
# default HGR (3.8 M), far above what the method needs (METHOD.md: "a few million").
MAX_LEVELS = 8
MAX_BLOCKS_PER_LEVEL = 8
MAX_PARAMETERS = 100_000_000  # 400 MB of float32


class HGRFileError(ValueError):
    """A weights file that cannot be used as an HGR; the message names the file and the fix."""


def save_hgr(
    model: HGR,
    path: str | os.PathLike,
    *,
    base_model: str = "SD1.x",
    latent_format: str | None = None,
    prediction_type: str = "eps",
    threshold: float = DEFAULT_THRESHOLD,
    training: dict | None = None,
    calibration: dict | None = None,
    extra: dict[str, str] | None = None,
) -> Path:
    """Write `model`'s weights and metadata to `path` atomically; the file records `model.combine_rule`.

    latent_format: the class name of ComfyUI's latent format of the model the HGR was trained on
    ("SD15", "SDXL", ...; `safecfg_comfy.model_kinds.latent_format_name`); None leaves the field out.
    calibration: how the threshold was calibrated (JSON-serialisable); None leaves the field out.
    """
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    if latent_format is not None and not latent_format.isidentifier():
        raise ValueError(f"latent_format must be a ComfyUI latent format class name such as 'SD15', got {latent_format!r}")
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
        "combine_rule": model.combine_rule,
        **({"latent_format": latent_format} if latent_format is not None else {}),
        **({"calibration": json.dumps(calibration, sort_keys=True)} if calibration is not None else {}),
        **(extra or {}),
    }
    tensors = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in model.state_dict().items()}
    path = atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    log.info("saved HGR (%d tensors) to %s", len(tensors), path)
    return path


def _reason(error: Exception, path: Path) -> str:
    """An exception's text without the server's folders (OSError messages carry the full path)."""
    return str(error).replace(str(path), path.name)


def _readable_version(version: str | None) -> bool:
    return version in {str(v) for v in range(1, int(FORMAT_VERSION) + 1)}


def read_hgr_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The raw metadata of an HGR file, validated for format name and version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HGR weights file not found: {path.name}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise HGRFileError(
            f"{path.name} is truncated or not a .safetensors file ({_reason(e, path)}); re-download or re-export it"
        ) from e
    if metadata.get("format") != FORMAT_NAME:
        raise HGRFileError(
            f"{path.name} is not an HGR weights file (metadata format={metadata.get('format')!r}, expected "
            f"{FORMAT_NAME!r}); put only files exported by `python -m training.train_hgr` in models/hgr"
        )
    if not _readable_version(metadata.get("format_version")):
        raise HGRFileError(
            f"{path.name} has HGR format version {metadata.get('format_version')!r}, this pack reads "
            f"versions 1 to {FORMAT_VERSION}; update the node pack or re-export the weights"
        )
    return metadata


def _parse_metadata(path: Path, metadata: dict[str, str]) -> tuple[HGRConfig, dict]:
    try:
        config = HGRConfig.from_json(metadata["config"])
        info = {
            "file": path.name,  # for messages and display: never show the server's folders
            "path": str(path),  # for local tools (benchmark reports)
            "base_model": metadata.get("base_model", "unknown"),
            "latent_format": metadata.get("latent_format"),  # None: written before the field existed
            "prediction_type": metadata.get("prediction_type", "eps"),
            "threshold": float(metadata.get("threshold", DEFAULT_THRESHOLD)),
            "training": json.loads(metadata.get("training", "{}")),
            "combine_rule": metadata.get("combine_rule", "mean"),  # absent: the rule of older files
            "calibration": json.loads(metadata["calibration"]) if "calibration" in metadata else None,
        }
    except (KeyError, ValueError, TypeError) as e:
        raise HGRFileError(f"{path.name} has invalid HGR metadata ({type(e).__name__}: {e}); re-export it") from e
    if not math.isfinite(info["threshold"]):
        raise HGRFileError(f"{path.name} has a non-finite detection threshold {info['threshold']}; re-export it")
    if info["prediction_type"] not in PREDICTION_TYPES:
        raise HGRFileError(
            f"{path.name} has unknown prediction_type {info['prediction_type']!r}; expected one of {PREDICTION_TYPES}"
        )
    if info["combine_rule"] not in COMBINE_RULES:
        raise HGRFileError(
            f"{path.name} has unknown combine_rule {info['combine_rule']!r}; expected one of {COMBINE_RULES} "
            "(update the node pack, or re-export the weights)"
        )
    if info["latent_format"] is not None and not info["latent_format"].isidentifier():
        raise HGRFileError(f"{path.name} has an invalid latent_format {info['latent_format']!r}; re-export it")
    return config, info


class _WeightsOnMeta(TorchFunctionMode):
    """Like `with torch.device("meta")` (tensors without a device go to the meta device: no memory),
    except `torch.linspace`, which stays on the CPU: meta kernels for the 16-element frequency table
    of the sigma embedding (linspace, pow) run through torch._refs, whose first import takes ~1.5 s."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _CONSTRUCTORS and kwargs.get("device") is None:
            kwargs = {**kwargs, "device": "meta"}
        return func(*args, **kwargs)


_CONSTRUCTORS = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint,
                 torch.arange, torch.eye, torch.tensor, torch.as_tensor, torch.empty_strided}


def _tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in the file, from the header alone (no tensor data is read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as e:
        raise HGRFileError(f"{path.name} is truncated or corrupt ({_reason(e, path)}); re-download or re-export it") from e


def _shape_differences(expected: dict, found: dict, limit: int = 3) -> str:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    resized = [f"{k} {found[k]} instead of {expected[k]}" for k in sorted(set(expected) & set(found)) if expected[k] != found[k]]
    parts = [f"{label}: {', '.join(items[:limit])}{', ...' if len(items) > limit else ''}"
             for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", resized)) if items]
    return "; ".join(parts)


def check_declared_network(path: Path, config: HGRConfig) -> None:
    """Refuse a config that is implausibly large or does not match the file's tensors, allocating nothing."""
    levels, blocks = len(config.channel_mult), config.blocks_per_level
    if levels > MAX_LEVELS or blocks > MAX_BLOCKS_PER_LEVEL:
        raise HGRFileError(
            f"{path.name} declares {levels} U-Net levels of {blocks} blocks (at most {MAX_LEVELS} levels of "
            f"{MAX_BLOCKS_PER_LEVEL}); the file was edited or is not a SafeCFG export, re-export it"
        )
    with _WeightsOnMeta():
        skeleton = HGR(config)
    parameters = parameter_count(skeleton)
    if parameters > MAX_PARAMETERS:
        raise HGRFileError(
            f"{path.name} declares a network of {parameters:,} parameters (at most {MAX_PARAMETERS:,}); "
            "the file was edited or is not a SafeCFG export, re-export it"
        )
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    differences = _shape_differences(expected, _tensor_shapes(path))
    if differences:
        raise HGRFileError(
            f"{path.name}: tensors do not match the config stored in the file ({differences}); "
            "the file was edited or written by a different exporter, re-export it"
        )


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as e:
        raise HGRFileError(f"{path.name} is truncated or corrupt ({_reason(e, path)}); re-download or re-export it") from e


def load_hgr(path: str | os.PathLike, device: str | torch.device = "cpu") -> HGR:
    """Rebuild an HGR from the file's metadata and load its weights strictly.

    The declared network is checked against the file's tensor shapes before it is built. The
    returned module is in eval mode, float32, combines categories by the file's rule
    (`.combine_rule`) and carries `.metadata` (file name, path, base_model, latent_format or None,
    prediction_type, threshold, training summary, combine_rule, calibration or None).
    """
    path = Path(path)
    config, info = _parse_metadata(path, read_hgr_metadata(path))
    check_declared_network(path, config)
    model = HGR(config, combine_rule=info["combine_rule"])
    try:
        model.load_state_dict(_read_tensors(path), strict=True)
    except RuntimeError as e:  # shapes were checked; a dtype the copy cannot convert ends here
        raise HGRFileError(
            f"{path.name}: tensors do not match the config stored in the file ({str(e).splitlines()[0]}...); "
            "the file was edited or written by a different exporter, re-export it"
        ) from e
    model.metadata = info
    return model.to(device).eval().requires_grad_(False)
