"""Custom socket types of the pack."""

from comfy_api.latest import io

# An hgr_core.HGR module with its .metadata (prediction type, threshold, categories).
HGRModel = io.Custom("HGR_MODEL")
