"""SafeCFG as an eval-learn technique plugin (entry point `safecfg` in group `eval_learn.techniques`).

Importing this package imports neither ComfyUI nor the SafeCFG repository: `SafeCFGTechnique()`
locates and imports them when a run constructs it (see `runtime`).
"""

from .config import SafeCFGConfig
from .wrapper import SafeCFGTechnique

__all__ = ["SafeCFGConfig", "SafeCFGTechnique"]
