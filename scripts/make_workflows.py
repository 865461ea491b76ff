"""Write the example workflows in workflows/ (ComfyUI UI format, listed by its template browser).

    python scripts/make_workflows.py

Each graph is described once below as nodes with widget values and links; this script lays it
out in the UI format (nodes, links, version 0.4). Run it after changing a graph.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))
from hgr_core.files import atomic_write_json  # noqa: E402

OUT_DIR = REPO / "workflows"

# node id -> (type, widget values, {input name: (source node id, source slot, link type[, socket type])},
#             [(output name, type)]). The socket type defaults to the link type; Preview as Text's is "*".
SD15_SAFECFG = {
    1: ("CheckpointLoaderSimple", ["v1-5-pruned-emaonly.safetensors"], {}, [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
    2: ("CLIPTextEncode", ["a photo of a lighthouse on a cliff at sunset"], {"clip": (1, 1, "CLIP")}, [("CONDITIONING", "CONDITIONING")]),
    3: ("CLIPTextEncode", ["blurry, low quality"], {"clip": (1, 1, "CLIP")}, [("CONDITIONING", "CONDITIONING")]),
    4: ("SafeCFGLoadHGR", ["sd15_hgr.safetensors"], {}, [("hgr", "HGR_MODEL")]),
    5: ("SafeCFGApply", [1.0, 0.0, 1.0, "all", 1], {"model": (1, 0, "MODEL"), "hgr": (4, 0, "HGR_MODEL")}, [("model", "MODEL")]),
    6: ("EmptyLatentImage", [512, 512, 1], {}, [("LATENT", "LATENT")]),
    7: ("KSampler", [42, "fixed", 20, 7.0, "euler", "normal", 1.0],
        {"model": (5, 0, "MODEL"), "positive": (2, 0, "CONDITIONING"), "negative": (3, 0, "CONDITIONING"),
         "latent_image": (6, 0, "LATENT")}, [("LATENT", "LATENT")]),
    8: ("VAEDecode", [], {"samples": (7, 0, "LATENT"), "vae": (1, 2, "VAE")}, [("IMAGE", "IMAGE")]),
    9: ("SaveImage", ["SafeCFG"], {"images": (8, 0, "IMAGE")}, []),
    10: ("SafeCFGHGRInfo", [], {"hgr": (4, 0, "HGR_MODEL")}, [("info", "STRING")]),
    # Core's Preview as Text: the frontend draws its text on the canvas (the HGR Info node shows none).
    11: ("PreviewAny", [], {"source": (10, 0, "STRING", "*")}, []),
}


# The same txt2img, then the score SafeCFG measured while sampling gates the decoded images (blur).
SD15_GATED = {
    **{k: v for k, v in SD15_SAFECFG.items() if k in range(1, 9)},
    9: ("SafeCFGSamplingScore", ["stored threshold", 0.1], {"latent": (7, 0, "LATENT")},
        [("scores", "SAFECFG_SCORES"), ("any_flagged", "BOOLEAN"), ("harm_map", "MASK"), ("report", "STRING")]),
    10: ("SafeCFGGate", ["blur", False, 0, "#000000", "all"], {"images": (8, 0, "IMAGE"), "scores": (9, 0, "SAFECFG_SCORES")},
         [("images", "IMAGE"), ("report", "STRING")]),
    11: ("SaveImage", ["SafeCFG"], {"images": (10, 0, "IMAGE")}, []),
    12: ("PreviewAny", [], {"source": (10, 1, "STRING", "*")}, []),
}

# An image from anywhere: VAE-encode it, score it with the image detector, censor the harmful region.
SD15_DETECT_IMAGE = {
    1: SD15_SAFECFG[1],
    2: ("LoadImage", ["example.png", "image"], {}, [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    3: ("VAEEncode", [], {"pixels": (2, 0, "IMAGE"), "vae": (1, 2, "VAE")}, [("LATENT", "LATENT")]),
    4: ("CLIPTextEncode", ["a photo"], {"clip": (1, 1, "CLIP")}, [("CONDITIONING", "CONDITIONING")]),
    5: ("CLIPTextEncode", [""], {"clip": (1, 1, "CLIP")}, [("CONDITIONING", "CONDITIONING")]),
    6: SD15_SAFECFG[4],
    7: ("SafeCFGDetect", [8, 0, "fixed", "stored threshold", 0.1, "all"],
        {"model": (1, 0, "MODEL"), "hgr": (6, 0, "HGR_MODEL"), "positive": (4, 0, "CONDITIONING"),
         "negative": (5, 0, "CONDITIONING"), "latent": (3, 0, "LATENT"), "image": (2, 0, "IMAGE")},
        [("scores", "SAFECFG_SCORES"), ("any_flagged", "BOOLEAN"), ("harm_map", "MASK"), ("report", "STRING")]),
    8: ("SafeCFGGate", ["pixelate", True, 0, "#000000", "all"], {"images": (2, 0, "IMAGE"), "scores": (7, 0, "SAFECFG_SCORES")},
        [("images", "IMAGE"), ("report", "STRING")]),
    9: ("SaveImage", ["SafeCFG-checked"], {"images": (8, 0, "IMAGE")}, []),
    10: ("PreviewAny", [], {"source": (8, 1, "STRING", "*")}, []),
}


def to_ui_format(graph: dict) -> dict:
    """Lay a graph description out as ComfyUI's UI workflow JSON (nodes in a grid, typed links)."""
    links, nodes = [], []
    outgoing: dict[tuple[int, int], list[int]] = {}
    for target, (_, _, inputs, _) in graph.items():
        for slot, (source, source_slot, kind, *_) in enumerate(inputs.values()):
            link_id = len(links) + 1
            links.append([link_id, source, source_slot, target, slot, kind])
            outgoing.setdefault((source, source_slot), []).append(link_id)
    for order, (node_id, (kind, widgets, inputs, outputs)) in enumerate(graph.items()):
        input_links = [link for link in links if link[3] == node_id]
        nodes.append({
            "id": node_id, "type": kind, "pos": [60 + 330 * (order % 4), 60 + 260 * (order // 4)],
            "size": [300, 200], "flags": {}, "order": order, "mode": 0,
            "inputs": [{"name": name, "type": spec[-1], "link": link[0]}  # socket type (or link type)
                       for (name, spec), link in zip(inputs.items(), input_links)],
            "outputs": [{"name": name, "type": kind_out, "links": outgoing.get((node_id, slot), []), "slot_index": slot}
                        for slot, (name, kind_out) in enumerate(outputs)],
            "properties": {"Node name for S&R": kind}, "widgets_values": widgets,
        })
    return {"last_node_id": max(graph), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {}, "version": 0.4}


def main() -> None:
    atomic_write_json(OUT_DIR / "safecfg_sd15_txt2img.json", to_ui_format(SD15_SAFECFG), indent=1)
    atomic_write_json(OUT_DIR / "safecfg_sd15_txt2img_gated.json", to_ui_format(SD15_GATED), indent=1)
    atomic_write_json(OUT_DIR / "safecfg_sd15_detect_image.json", to_ui_format(SD15_DETECT_IMAGE), indent=1)


if __name__ == "__main__":
    main()
