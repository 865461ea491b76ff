"""The toy world as a ComfyUI custom-node package (V3 entry point), for graph tests and demos.

Not part of the SafeCFG pack: the pack's `__init__.py` never lists these nodes. Load it the way
ComfyUI loads any pack, `nodes.load_custom_node("<repo>/toyworld/comfyui_nodes")` (the tests'
`toy_graph` fixture does), or link this folder into a ComfyUI's `custom_nodes/`.

ComfyUI imports this file under a path-derived module name, so the nodes live in
`toyworld.comfyui_nodes.toy_nodes`, imported by its absolute name: tests that import it get the
same module, hence the same cached world, as the registered nodes.
"""

import sys
from pathlib import Path

from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.append(_REPO)  # after ComfyUI's folder: the repo's nodes/ must not shadow nodes.py

from toyworld.comfyui_nodes.toy_nodes import NODE_LIST  # noqa: E402  (needs the path above)


class ToyWorldExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODE_LIST)


async def comfy_entrypoint() -> ToyWorldExtension:
    return ToyWorldExtension()
