"""Write the example workflows in workflows/ (ComfyUI UI format, listed by its template browser).

    python scripts/make_workflows.py

Each graph is described once below as nodes with widget values and links; this script lays it
out in the UI format (nodes, links, version 0.4). Run it after changing a graph.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parents[1] / "workflows"

# node id -> (type, widget values, {input name: (source node id, source slot, type)}, [(output name, type)])
SD15_SAFECFG = {
    1: ("CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"], {}, [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
    2: ("CLIPTextEncode", ["a photo of a lighthouse on a cliff at sunset"], {"clip": (1, 1, "CLIP")}, [("CONDITIONING", "CONDITIONING")]),
    3: ("CLIPTextEncode", ["blurry, low quality"], {"clip": (1, 1, "CLIP")}, [("CONDITIONING", "CONDITIONING")]),
    4: ("SafeCFGLoadHGR", ["sd15_hgr.safetensors"], {}, [("hgr", "HGR_MODEL")]),
    5: ("SafeCFGApply", [1.0, 0.0, 1.0, "all"], {"model": (1, 0, "MODEL"), "hgr": (4, 0, "HGR_MODEL")}, [("model", "MODEL")]),
    6: ("EmptyLatentImage", [512, 512, 1], {}, [("LATENT", "LATENT")]),
    7: ("KSampler", [42, "fixed", 20, 7.0, "euler", "normal", 1.0],
        {"model": (5, 0, "MODEL"), "positive": (2, 0, "CONDITIONING"), "negative": (3, 0, "CONDITIONING"),
         "latent_image": (6, 0, "LATENT")}, [("LATENT", "LATENT")]),
    8: ("VAEDecode", [], {"samples": (7, 0, "LATENT"), "vae": (1, 2, "VAE")}, [("IMAGE", "IMAGE")]),
    9: ("SaveImage", ["SafeCFG"], {"images": (8, 0, "IMAGE")}, []),
    10: ("SafeCFGHGRInfo", [], {"hgr": (4, 0, "HGR_MODEL")}, [("info", "STRING")]),
}


def to_ui_format(graph: dict) -> dict:
    """Lay a graph description out as ComfyUI's UI workflow JSON (nodes in a grid, typed links)."""
    links, nodes = [], []
    outgoing: dict[tuple[int, int], list[int]] = {}
    for target, (_, _, inputs, _) in graph.items():
        for slot, (source, source_slot, kind) in enumerate(inputs.values()):
            link_id = len(links) + 1
            links.append([link_id, source, source_slot, target, slot, kind])
            outgoing.setdefault((source, source_slot), []).append(link_id)
    for order, (node_id, (kind, widgets, inputs, outputs)) in enumerate(graph.items()):
        input_links = [link for link in links if link[3] == node_id]
        nodes.append({
            "id": node_id, "type": kind, "pos": [60 + 330 * (order % 4), 60 + 260 * (order // 4)],
            "size": [300, 200], "flags": {}, "order": order, "mode": 0,
            "inputs": [{"name": name, "type": link[5], "link": link[0]} for name, link in zip(inputs, input_links)],
            "outputs": [{"name": name, "type": kind_out, "links": outgoing.get((node_id, slot), []), "slot_index": slot}
                        for slot, (name, kind_out) in enumerate(outputs)],
            "properties": {"Node name for S&R": kind}, "widgets_values": widgets,
        })
    return {"last_node_id": max(graph), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


def write_json(data: dict, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def main() -> None:
    OUT_DIR.mkdir(exist_ok=True)
    write_json(to_ui_format(SD15_SAFECFG), OUT_DIR / "safecfg_sd15_txt2img.json")


if __name__ == "__main__":
    main()
