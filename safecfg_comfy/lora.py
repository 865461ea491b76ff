"""Apply a LoRA file to a ComfyUI model the way ComfyUI's stock `LoraLoaderModelOnly` node does.

`LoraLoader.load_lora` reads the file with `comfy.utils.load_torch_file(path, safe_load=True)` and
calls `comfy.sd.load_lora_for_models(model, None, lora, strength, 0)`; this does the same on a
path, so benchmarks and previews sample the safety LoRA through ComfyUI's own key mapping and
weight patching (merged into the weights at load time: no extra work per step).
"""

from __future__ import annotations

from pathlib import Path


def apply_lora(model, path: str | Path, strength: float = 1.0):
    """A clone of ModelPatcher `model` with the LoRA at `path` patched in at `strength`; `model` is untouched."""
    import comfy.sd
    import comfy.utils

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA {path.name}: file not found")
    lora = comfy.utils.load_torch_file(str(path), safe_load=True)
    patched, _ = comfy.sd.load_lora_for_models(model, None, lora, strength, 0)
    return patched
