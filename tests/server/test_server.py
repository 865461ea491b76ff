"""The pack inside a real ComfyUI server process: node info, example workflows, error handling, and
an SD1.5 txt2img graph with SafeCFG through /prompt (validation, inference mode, model loading,
sampling, decoding, saving)."""

import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[2] / "scripts"))
import comfyui_server  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

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
    # With a client id, as the browser sends, /history also lists the UI output of cached output nodes.
    status, body = comfyui_server.post_json(URL + "/prompt", {"prompt": prompt, "client_id": "safecfg-tests"})
    assert status == 200, body
    prompt_id = body["prompt_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = comfyui_server.get_json(f"{URL}/history/{prompt_id}")
        if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
            return history[prompt_id]
        time.sleep(0.3)
    raise TimeoutError(f"prompt {prompt_id} did not finish")


def _queue_is_empty() -> bool:
    queue = comfyui_server.get_json(URL + "/queue")
    return not queue["queue_running"] and not queue["queue_pending"]


def _txt2img(checkpoint: str, hgr: str | None, start_percent: float = 0.0, end_percent: float = 1.0) -> dict:
    """SD1.5 txt2img at 128 px (16x16 latents, 2 steps), through SafeCFGApply unless hgr is None."""
    model = ["1", 0]
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a lighthouse on a cliff"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
        "6": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {
            "model": model, "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["6", 0], "seed": 7,
            "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "safecfg_test"}},
    }
    if hgr is not None:
        graph["4"] = {"class_type": "SafeCFGLoadHGR", "inputs": {"hgr_name": hgr}}
        graph["5"] = {"class_type": "SafeCFGApply", "inputs": {
            "model": ["1", 0], "hgr": ["4", 0], "strength": 1.0, "start_percent": start_percent,
            "end_percent": end_percent, "categories": "all"}}
        graph["7"]["inputs"]["model"] = ["5", 0]
    return graph


@pytest.fixture(scope="module")
def sd15_files(server, random_sd15_checkpoint):
    """The cached random SD1.5 checkpoint linked into the server's models/checkpoints, and an SD1.5
    HGR (4 channels, eps, random head: it changes the guidance everywhere) in models/hgr."""
    checkpoints = server / "models" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / "random_sd15.safetensors").symlink_to(random_sd15_checkpoint)
    save_hgr(redirecting_hgr(), server / "models" / "hgr" / "sd15_random_head.safetensors",
             base_model="SD15", latent_format="SD15")
    return "random_sd15.safetensors", "sd15_random_head.safetensors"


def _saved_image(server, history: dict) -> np.ndarray:
    (image,) = history["outputs"]["9"]["images"]
    path = server / image["type"] / image["subfolder"] / image["filename"]
    assert path.is_file(), path
    with Image.open(path) as png:
        assert png.size == (128, 128)
        return np.asarray(png.convert("RGB"), dtype=np.int16)


def test_sd15_checkpoint_txt2img_with_safecfg_through_prompt_saves_a_128px_image(server, sd15_files):
    """The whole path a user's graph takes, on a checkpoint CheckpointLoaderSimple recognises as SD1.5;
    the same graph without SafeCFGApply (same seed) gives another image, so SafeCFG really ran.

    On 2 idle CPU cores: ~28 s for the first graph (loading the checkpoint is most of it), ~8 s for
    the second (sampling and decoding only); two to three times that when the cores are shared."""
    checkpoint, hgr = sd15_files
    started = time.monotonic()
    with_safecfg = _run(_txt2img(checkpoint, hgr), timeout=600)
    assert with_safecfg["status"]["status_str"] == "success", with_safecfg["status"]
    safecfg_image = _saved_image(server, with_safecfg)
    first_run = time.monotonic() - started

    plain = _run(_txt2img(checkpoint, None), timeout=300)
    assert plain["status"]["status_str"] == "success", plain["status"]
    difference = np.abs(safecfg_image - _saved_image(server, plain)).mean()
    print(f"SafeCFG graph {first_run:.1f} s (checkpoint load included), plain CFG rerun "
          f"{time.monotonic() - started - first_run:.1f} s, mean pixel difference {difference:.2f}")
    assert difference > 0.5


def test_start_after_end_is_refused_by_prompt_validation_before_anything_runs(server, sd15_files):
    checkpoint, hgr = sd15_files
    history_before = len(comfyui_server.get_json(URL + "/history"))
    status, body = comfyui_server.post_json(URL + "/prompt", {"prompt": _txt2img(checkpoint, hgr, 0.9, 0.1)})
    assert status == 400, body
    errors = body["node_errors"]["5"]
    assert errors["class_type"] == "SafeCFGApply"
    details = " ".join(e["details"] for e in errors["errors"])
    assert "start_percent (0.9) is after end_percent (0.1)" in details and "set start_percent <= end_percent" in details
    assert _queue_is_empty() and len(comfyui_server.get_json(URL + "/history")) == history_before


def test_passes_out_of_range_is_refused_by_prompt_validation(server, sd15_files):
    graph = _txt2img(*sd15_files)
    graph["5"]["inputs"]["passes"] = 9
    status, body = comfyui_server.post_json(URL + "/prompt", {"prompt": graph})
    assert status == 400, body
    errors = body["node_errors"]["5"]
    assert errors["class_type"] == "SafeCFGApply"
    assert "passes" in " ".join(e["details"] for e in errors["errors"]) and _queue_is_empty()


def test_a_retrained_hgr_file_is_reloaded_by_the_running_server(server):
    """The server's prompt worker keeps its cache between prompts; a file rewritten under the same
    name (here with another architecture, so the parameter count shows it) must be loaded again."""
    path = server / "models" / "hgr" / "retrained.safetensors"
    save_hgr(redirecting_hgr(seed=1), path, threshold=0.25)
    first = _run(_info_graph(path.name))
    unchanged = _run(_info_graph(path.name))
    assert "1" in _cached_nodes(unchanged)  # same file: the loader's output comes from the cache
    assert _info_text(unchanged) == _info_text(first)

    save_hgr(redirecting_hgr(seed=2, channel_mult=(1, 2)), path, threshold=0.75)
    retrained = _run(_info_graph(path.name))
    assert "1" not in _cached_nodes(retrained)
    assert "detection threshold: 0.75" in _info_text(retrained)
    assert _line(_info_text(retrained), "parameters:") != _line(_info_text(first), "parameters:")


def _cached_nodes(history: dict) -> list[str]:
    return dict(history["status"]["messages"])["execution_cached"]["nodes"]


def _info_text(history: dict) -> str:
    return history["outputs"]["2"]["text"][0]


def _line(text: str, prefix: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(prefix))


def _info_graph(name: str) -> dict:
    return {"1": {"class_type": "SafeCFGLoadHGR", "inputs": {"hgr_name": name}},
            "2": {"class_type": "SafeCFGHGRInfo", "inputs": {"hgr": ["1", 0]}}}


def test_server_lists_the_nodes_and_the_example_workflows(server):
    info = comfyui_server.get_json(URL + "/object_info/SafeCFGApply")["SafeCFGApply"]
    assert info["output"] == ["MODEL"] and "hgr" in info["input"]["required"]
    assert info["display_name"] == "SafeCFG: Apply" and all(info["output_tooltips"])
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
    assert "file: good.safetensors" in ok["outputs"]["2"]["text"][0]
    assert str(server) not in error["exception_message"] + ok["outputs"]["2"]["text"][0]


def _gated_txt2img(checkpoint: str, hgr: str, seed: int, prefix: str) -> dict:
    """_txt2img through SafeCFGApply, then Sampling Score -> Gate (blur) -> SaveImage."""
    graph = _txt2img(checkpoint, hgr)
    graph["7"]["inputs"]["seed"] = seed
    graph["10"] = {"class_type": "SafeCFGSamplingScore", "inputs": {
        "latent": ["7", 0], "operating_point": "stored threshold", "custom_threshold": 0.1}}
    graph["11"] = {"class_type": "SafeCFGGate", "inputs": {
        "images": ["8", 0], "scores": ["10", 0], "mode": "blur", "region_only": False, "size": 0, "colour": "#000000",
        "categories": "all"}}
    graph["9"]["inputs"].update(images=["11", 0], filename_prefix=prefix)
    return graph


def _gate_score(history: dict) -> float:
    text = history["outputs"]["11"]["text"][0]
    return float(_line(text, "image 0:").split()[2])


def test_queued_prompts_keep_their_own_sampling_scores_and_the_gate_shows_them(server, sd15_files):
    """Two prompts queued back to back are scored separately; the last one rerun with only the
    file prefix changed (KSampler cached) gets its own score back from the score store."""
    checkpoint, hgr = sd15_files
    ids = []
    for seed in (11, 12):
        status, body = comfyui_server.post_json(URL + "/prompt", {"prompt": _gated_txt2img(checkpoint, hgr, seed, f"q{seed}"),
                                                                 "client_id": "safecfg-tests"})
        assert status == 200, body
        ids.append(body["prompt_id"])
    deadline, done = time.monotonic() + 600, {}
    while len(done) < 2 and time.monotonic() < deadline:
        for prompt_id in ids:
            history = comfyui_server.get_json(f"{URL}/history/{prompt_id}")
            if prompt_id in history and history[prompt_id]["status"].get("completed") is not None:
                done[prompt_id] = history[prompt_id]
        time.sleep(0.5)
    first, second = (done[i] for i in ids)
    assert first["status"]["status_str"] == second["status"]["status_str"] == "success"
    assert _gate_score(first) != _gate_score(second)
    assert "threshold" in first["outputs"]["11"]["text"][0]
    again = _run(_gated_txt2img(checkpoint, hgr, 12, "q12-again"), timeout=300)
    assert "7" in _cached_nodes(again)
    assert _gate_score(again) == _gate_score(second)


def test_the_frontend_extension_that_shows_scores_is_served(server):
    import re
    import urllib.parse
    import urllib.request

    extensions = comfyui_server.get_json(URL + "/extensions")
    (script,) = [e for e in extensions if e.endswith("/js/safecfg_scores.js")]
    with urllib.request.urlopen(URL + script) as response:
        body = response.read().decode()
    assert "SafeCFGGate" in body and "onExecuted" in body
    # Its imports resolve against its own URL, as the browser resolves them (a wrong ../ depth fails silently there).
    for module in re.findall(r'from "([^"]+)"', body):
        with urllib.request.urlopen(urllib.parse.urljoin(URL + script, module)) as response:
            assert response.status == 200 and b"export" in response.read(), module
