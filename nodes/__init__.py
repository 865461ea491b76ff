"""ComfyUI nodes of the SafeCFG pack (V3 schema). Node ids are public API: never rename one."""

from .apply_safecfg import SafeCFGApply
from .hgr_info import SafeCFGHGRInfo
from .load_hgr import SafeCFGLoadHGR

NODE_LIST = [SafeCFGLoadHGR, SafeCFGApply, SafeCFGHGRInfo]
