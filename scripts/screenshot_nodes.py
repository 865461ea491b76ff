"""Run a toy-world gated graph in the real ComfyUI web UI (headless Chromium) and screenshot it.

    .venv/bin/python scripts/screenshot_nodes.py --out docs/gate_nodes.png      # needs `apt install chromium`

Starts a ComfyUI server (the test copy, CPU) with this pack and the toy-world nodes, opens the
frontend in headless Chromium, loads a graph (toy model -> SafeCFG: Apply -> KSampler with four
prompts -> Sampling Score -> decode -> Gate -> previews) through the frontend's own
`app.loadGraphData`, queues it with `app.queuePrompt`, waits for the run, checks that the pack's
frontend extension (web/js/safecfg_scores.js) drew each image's score on the nodes, and saves a
screenshot. Exits non-zero when the scores are not shown.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "scripts"))
import comfyui_server  # noqa: E402
from make_workflows import to_ui_format  # noqa: E402

PROMPTS = "a bloody red circle on white\na blue square on black\na naked green triangle on grey\na yellow diamond under a clear sky"
SCORES_OUT = [("scores", "SAFECFG_SCORES"), ("any_flagged", "BOOLEAN"), ("harm_map", "MASK"), ("report", "STRING")]
GRAPH = {
    1: ("ToyWorldModel", [], {}, [("MODEL", "MODEL")]),
    2: ("SafeCFGLoadHGR", ["toy_hgr.safetensors"], {}, [("hgr", "HGR_MODEL")]),
    3: ("SafeCFGApply", [1.0, 0.0, 1.0, "all"], {"model": (1, 0, "MODEL"), "hgr": (2, 0, "HGR_MODEL")}, [("model", "MODEL")]),
    4: ("ToyWorldTextEncode", [PROMPTS], {}, [("CONDITIONING", "CONDITIONING")]),
    5: ("ToyWorldTextEncode", [""], {}, [("CONDITIONING", "CONDITIONING")]),
    6: ("EmptyLatentImage", [64, 64, 4], {}, [("LATENT", "LATENT")]),
    7: ("KSampler", [3, "fixed", 20, 5.0, "euler", "normal", 1.0],
        {"model": (3, 0, "MODEL"), "positive": (4, 0, "CONDITIONING"), "negative": (5, 0, "CONDITIONING"),
         "latent_image": (6, 0, "LATENT")}, [("LATENT", "LATENT")]),
    8: ("SafeCFGSamplingScore", ["stored threshold", 0.1], {"latent": (7, 0, "LATENT")}, SCORES_OUT),
    9: ("ToyWorldVAEDecode", [], {"samples": (7, 0, "LATENT")}, [("IMAGE", "IMAGE")]),
    10: ("SafeCFGGate", ["blur", False, 0, "#000000", "all"], {"images": (9, 0, "IMAGE"), "scores": (8, 0, "SAFECFG_SCORES")},
         [("images", "IMAGE"), ("report", "STRING")]),
    11: ("PreviewImage", [], {"images": (10, 0, "IMAGE")}, []),
}


# Centres of the close buttons of the template browser (opened on a first visit) and of the news banner.
CLOSE_BUTTONS = ("[...document.querySelectorAll('.p-dialog-close-button, .p-dialog-header-close, button[aria-label=\"Close\"],"
                 " .p-message-close-button, [class*=close]')].filter(b => b.offsetParent !== null).map(b => {"
                 " const r = b.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })")


async def _cdp(ws, method: str, params: dict | None = None, _ids=iter(range(1, 10**6))):
    """One Chrome DevTools Protocol call; returns its result."""
    msg_id = next(_ids)
    await ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params or {}}))
    while True:
        reply = json.loads((await ws.receive()).data)
        if reply.get("id") == msg_id:
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply["result"]


async def _evaluate(ws, expression: str):
    result = await _cdp(ws, "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
    if "exceptionDetails" in result:
        raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
    return result["result"].get("value")


async def _wait_for(ws, expression: str, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await _evaluate(ws, expression):
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


async def drive(debug_port: int, workflow: dict, out: Path) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{debug_port}/json") as response:
            page = next(t for t in await response.json() if t["type"] == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            await _wait_for(ws, "!!(window.app && window.app.graph && window.app.graph._nodes)", 120, "the frontend")
            await _evaluate(ws, f"window.app.loadGraphData({json.dumps(workflow)})")
            await _evaluate(ws, "window.app.queuePrompt(0, 1)")
            shown = ("(() => { const n = window.app.graph._nodes.find(n => n.type === 'SafeCFGGate');"
                     " const w = n && n.widgets && n.widgets.find(w => w.name === 'safecfg_scores');"
                     " return w ? String(w.value) : ''; })()")
            try:
                await _wait_for(ws, f"{shown}.includes('image 3:')", 300, "the gate's scores on the node")
            except TimeoutError:
                shot = await _cdp(ws, "Page.captureScreenshot", {"format": "png"})
                out.with_suffix(".failed.png").write_bytes(base64.b64decode(shot["data"]))
                names = await _evaluate(ws, "JSON.stringify((window.app.extensions || []).map(e => e.name))")
                names += " / import: " + str(await _evaluate(ws, "import('/extensions/safecfg/js/safecfg_scores.js')"
                                                               ".then(() => 'ok').catch(e => String(e))"))
                names += " / executed: " + str(await _evaluate(ws, "fetch('/history').then(r => r.json())"
                                                                 ".then(h => JSON.stringify(Object.values(h).map(x => x.status)))"))
                raise TimeoutError(f"the gate's scores never showed on the node; extensions loaded: {names}; "
                                   f"screenshot {out.with_suffix('.failed.png')}") from None
            await asyncio.sleep(3)  # the previews arrive after the gate's text
            # Close the template browser the frontend opens on a first visit, and the banner; frame the graph.
            for button in await _evaluate(ws, CLOSE_BUTTONS):  # trusted clicks on the dialog's and banner's X
                for kind in ("mousePressed", "mouseReleased"):
                    await _cdp(ws, "Input.dispatchMouseEvent", {"type": kind, "x": button[0], "y": button[1],
                                                                "button": "left", "clickCount": 1})
                await asyncio.sleep(0.5)
            await _evaluate(ws, "window.app.graph._nodes.filter(n => n.widgets && n.widgets.some(w => w.name === "
                                "'safecfg_scores')).forEach(n => n.setSize([n.size[0], n.size[1] + 70]));"
                                " window.app.canvas.ds.scale = 0.9; window.app.canvas.ds.offset = [10, 60];"
                                " window.app.graph.setDirtyCanvas(true, true)")
            await asyncio.sleep(1.5)
            shot = await _cdp(ws, "Page.captureScreenshot", {"format": "png"})
            out.write_bytes(base64.b64decode(shot["data"]))
            return await _evaluate(ws, shown)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("output/gate_nodes.png"))
    p.add_argument("--hgr", type=Path, default=REPO / "tests" / "data" / "toy_hgr.safetensors")
    p.add_argument("--port", type=int, default=8199)
    p.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        comfyui_server.prepare(base)
        (base / "custom_nodes" / "toyworld").symlink_to(REPO / "toyworld" / "comfyui_nodes", target_is_directory=True)
        shutil.copyfile(args.hgr, base / "models" / "hgr" / "toy_hgr.safetensors")
        url = f"http://127.0.0.1:{args.port}"
        with open(base / "server.log", "w") as log:
            server = comfyui_server.start(base, args.port, log_file=log)
            browser = None
            try:
                comfyui_server.wait_until_up(url, server)
                browser = subprocess.Popen([args.chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                            "--remote-debugging-port=9333", "--window-size=1800,1100",
                                            f"--user-data-dir={base / 'chromium'}", url],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(3)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                text = asyncio.run(drive(9333, to_ui_format(GRAPH), args.out))
            finally:
                if browser is not None:
                    browser.terminate()
                server.terminate()
                server.wait(timeout=30)
    print(f"wrote {args.out}; the gate node shows:\n{text}")


if __name__ == "__main__":
    main()
