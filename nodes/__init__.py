"""ComfyUI nodes of the SafeCFG pack (V3 schema). Node ids are public API: never rename one."""

from .apply_safecfg import SafeCFGApply
from .detection import SafeCFGDetect, SafeCFGSamplingScore
from .gate import SafeCFGGate
from .hgr_info import SafeCFGHGRInfo
from .load_hgr import SafeCFGLoadHGR

NODE_LIST = [SafeCFGLoadHGR, SafeCFGApply, SafeCFGHGRInfo, SafeCFGDetect, SafeCFGSamplingScore, SafeCFGGate]
