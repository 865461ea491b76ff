"""The pack inside a real ComfyUI server process: node info, example workflows, error handling."""

import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[2] / "scripts"))
import comfyui_server  # noqa: E402

from helpers import free_port, redirecting_hgr  # noqa: E402
from hgr_core import save_hgr  # noqa: E402

PORT = free_port()
URL = f"http://127.0.0.1:{PORT}"
pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("server")
    log_path = base / "server.log"
    with open(log_path, "w") as log_file:
        process = comfyui_server.start(base, PORT, log_file=log_file)
        try:
            comfyui_server.wait_until_up(URL, process)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)
            shutil.rmtree(base / "ComfyUI", ignore_errors=True)


def _run(prompt: dict, timeout: float = 60) -> dict:
    status, body = comfyui_server.post_json(URL + "/prompt", {"prompt": prompt})
    assert status == 200, body
    prompt_id = body["prompt_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = comfyui_server.get_json(f"{URL}/history/{prompt_id}")
        if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
            return history[prompt_id]
        time.sleep(0.3)
    raise TimeoutError(f"prompt {prompt_id} did not finish")


def _info_graph(name: str) -> dict:
    return {"1": {"class_type": "SafeCFGLoadHGR", "inputs": {"hgr_name": name}},
            "2": {"class_type": "SafeCFGHGRInfo", "inputs": {"hgr": ["1", 0]}}}


def test_server_lists_the_nodes_and_the_example_workflows(server):
    info = comfyui_server.get_json(URL + "/object_info/SafeCFGApply")["SafeCFGApply"]
    assert info["output"] == ["MODEL"] and "hgr" in info["input"]["required"]
    templates = comfyui_server.get_json(URL + "/workflow_templates")
    assert "safecfg_sd15_txt2img" in templates[comfyui_server.PACK_NAME]


def test_bad_weights_file_is_a_visible_error_and_the_server_keeps_running(server):
    (server / "models" / "hgr" / "broken.safetensors").write_bytes(b"not really weights")
    save_hgr(redirecting_hgr(), server / "models" / "hgr" / "good.safetensors", threshold=0.2)

    failed = _run(_info_graph("broken.safetensors"))
    assert failed["status"]["status_str"] == "error"
    error = dict(failed["status"]["messages"])["execution_error"]
    assert error["node_type"] == "SafeCFGLoadHGR"
    assert "broken.safetensors is truncated or not a .safetensors file" in error["exception_message"]

    assert "SafeCFGLoadHGR" in comfyui_server.get_json(URL + "/object_info")
    ok = _run(_info_graph("good.safetensors"))
    assert ok["status"]["status_str"] == "success"
    assert "detection threshold: 0.2" in ok["outputs"]["2"]["text"][0]
