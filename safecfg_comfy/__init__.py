"""Everything of this pack that touches ComfyUI's runtime, in one place.

ModelPatcher clones and hooks (`patch`: SafeCFG; `sld_patch`: the SLD baseline; `pixel_redirect`:
the trivial per-pixel baselines of the benchmarks), prediction types
(`model_kinds`), ComfyUI samplers (`sampling`), checkpoints (`backends`), and locating ComfyUI
outside a ComfyUI install (`locate`). `hgr_core` below it is pure tensor math; `nodes/` (the node
API), training, benchmarks and the toy world sit on top of it.

The name cannot collide with ComfyUI's own top-level modules (`comfy*`, `nodes`, `utils`, ...).
Importing this package imports nothing from ComfyUI; its modules do, except `locate`.
"""
