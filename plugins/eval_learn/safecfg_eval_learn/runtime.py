"""Find the SafeCFG repository and ComfyUI, and import the pack's runtime from them.

The plugin samples through the repository's own code (`safecfg_comfy`, `hgr_core` and the
real-checkpoint benchmark's `benchmarks.safety_real.generate`), not a copy of it. That code is not
an installable distribution on purpose: installing the repository root would put its `nodes/`
package (and `benchmarks`, `training`) into site-packages, in front of ComfyUI's `nodes.py` for
every ComfyUI started from that environment. So the plugin finds the repository on disk, appends
it to the *end* of `sys.path` (as `tests/conftest.py` does) and lets `safecfg_comfy.locate.setup_comfyui`
put ComfyUI *first*, which is the order ComfyUI's name collisions need.

Repository search order: the `safecfg_path` config field, `$SAFECFG_PATH`, then the checkout this
module sits in (`pip install -e plugins/eval_learn`). A regular (non-editable) install has no
checkout around it, so it needs one of the first two.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace

MARKERS = ("safecfg_comfy/patch.py", "hgr_core/__init__.py", "benchmarks/safety_real.py")


class SafeCFGRepoNotFoundError(RuntimeError):
    """No SafeCFG repository was found where the config and environment point."""


def _is_repo(path: Path) -> bool:
    return all((path / marker).is_file() for marker in MARKERS)


def find_repo(explicit: str | None = None) -> Path:
    """The SafeCFG repository root; raises SafeCFGRepoNotFoundError naming where it looked."""
    for source, value in (("config field 'safecfg_path'", explicit), ("SAFECFG_PATH", os.environ.get("SAFECFG_PATH"))):
        if value:
            path = Path(value).expanduser().resolve()
            if not _is_repo(path):
                raise SafeCFGRepoNotFoundError(f"safecfg: {source} is {value}, which is not the SafeCFG repository "
                                               f"(no {' / '.join(MARKERS)}); point it at the folder holding safecfg_comfy/")
            return path
    checkout = Path(__file__).resolve().parents[3]  # <repo>/plugins/eval_learn/safecfg_eval_learn/runtime.py
    if _is_repo(checkout):
        return checkout
    raise SafeCFGRepoNotFoundError("safecfg: SafeCFG repository not found: set the config field 'safecfg_path' or "
                                   "$SAFECFG_PATH to its folder, or install the plugin editable from a checkout "
                                   "(pip install -e plugins/eval_learn)")


def _check_origin(module, repo: Path) -> None:
    origin = Path(module.__file__).resolve()
    if repo not in origin.parents:
        raise ImportError(f"safecfg: {module.__name__} was imported from {origin}, not from the SafeCFG repository "
                          f"{repo}; another package of that name is on sys.path before it")


def import_runtime(repo: Path, comfyui_path: str | None = None, device: str | None = None) -> SimpleNamespace:
    """Put ComfyUI first and the repository last on sys.path; return the pack's runtime pieces.

    device: "cpu", "cuda", or None/"auto". ComfyUI picks its device once per process, when
    `comfy.model_management` is first imported; a later, different request raises ValueError.
    """
    if str(repo) not in sys.path:
        sys.path.append(str(repo))
    import safecfg_comfy.locate

    _check_origin(safecfg_comfy.locate, repo)
    safecfg_comfy.locate.setup_comfyui(comfyui_path, cpu={"cpu": True, "cuda": False}.get(device))
    import comfy.model_management
    import comfy.samplers

    actual = comfy.model_management.get_torch_device()
    if device in ("cpu", "cuda") and actual.type != device:
        raise ValueError(f"safecfg: config field 'device' is {device!r} but ComfyUI in this process runs on {actual} "
                         "(it chooses once per process; a CUDA request needs a GPU build of torch and a visible GPU)")

    import hgr_core
    from benchmarks import safety_metrics, safety_real
    from safecfg_comfy import backends, patch

    for module in (hgr_core, safety_real, backends):
        _check_origin(module, repo)
    return SimpleNamespace(CheckpointBackend=backends.CheckpointBackend, PRECISIONS=backends.PRECISIONS,
                           load_hgr=hgr_core.load_hgr, patch_model=patch.patch_model, generate=safety_real.generate,
                           EvalPrompt=safety_real.EvalPrompt, BenchmarkSettings=safety_metrics.BenchmarkSettings,
                           samplers=tuple(comfy.samplers.KSampler.SAMPLERS),
                           schedulers=tuple(comfy.samplers.KSampler.SCHEDULERS), device=actual)
