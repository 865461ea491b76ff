"""Custom socket types of the pack, and the names every pack node shares in the node menu."""

from comfy_api.latest import io

# An hgr_core.HGR module with its .metadata (prediction type, threshold, categories).
HGRModel = io.Custom("HGR_MODEL")

CATEGORY = "sampling/safecfg"
DISPLAY_PREFIX = "SafeCFG: "  # display names may change; node ids never do
# Per-image harm verdicts (hgr_core.HarmVerdicts) from SafeCFG: Detect / Sampling Score, for the gate.
HarmScores = io.Custom("SAFECFG_SCORES")
