"""SafeCFG node pack: ComfyUI loads this file from custom_nodes/ (V3 entry point)."""

from typing_extensions import override

from comfy_api.latest import ComfyExtension, io

from .nodes import NODE_LIST
from .nodes.model_folder import register_hgr_folder

register_hgr_folder()

# The frontend extension that shows each image's score on the detection and gate nodes (web/js).
WEB_DIRECTORY = "./web"


class SafeCFGExtension(ComfyExtension):
    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODE_LIST)


async def comfy_entrypoint() -> SafeCFGExtension:
    return SafeCFGExtension()
