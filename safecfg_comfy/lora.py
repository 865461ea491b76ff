"""Apply a LoRA file to a ComfyUI model the way ComfyUI's stock `LoraLoaderModelOnly` node does.

`LoraLoader.load_lora` reads the file with `comfy.utils.load_torch_file(path, safe_load=True)` and
calls `comfy.sd.load_lora_for_models(model, None, lora, strength, 0)`; this does the same on a
path, so benchmarks and previews sample the safety LoRA through ComfyUI's own key mapping and
weight patching (merged into the weights at load time: no extra work per step).

Unlike the stock node, it refuses a LoRA that does not fit the model: ComfyUI only logs "lora key
not loaded" for a module the model lacks and skips a patch whose shape differs, so a safety LoRA
made for another model would otherwise apply partly or not at all, silently.
"""

from __future__ import annotations

from pathlib import Path

DOWN = ".lora_down.weight"


def apply_lora(model, path: str | Path, strength: float = 1.0):
    """A clone of ModelPatcher `model` with the LoRA at `path` patched in at `strength`; `model` is untouched.
    Raises ValueError when a module of the file is missing from the model or has another shape."""
    import comfy.sd
    import comfy.utils

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA {path.name}: file not found")
    lora = comfy.utils.load_torch_file(str(path), safe_load=True)
    check_lora_fits(model, lora, path.name)
    patched, _ = comfy.sd.load_lora_for_models(model, None, lora, strength, 0)
    return patched


def check_lora_fits(model, lora: dict, name: str) -> None:
    """Every LoRA module of `lora` (down/up pairs) maps onto a weight of `model` with matching shape,
    by ComfyUI's own key mapping (`comfy.lora.model_lora_keys_unet`, `load_lora`)."""
    import comfy.lora
    import comfy.lora_convert
    import comfy.utils

    modules = {k[: -len(DOWN)] for k in lora if k.endswith(DOWN)}
    if not modules:
        raise ValueError(f"LoRA {name}: no '*{DOWN}' tensors; not a LoRA file ComfyUI's LoRA loaders read")
    key_map = comfy.lora.model_lora_keys_unet(model.model, {})
    loaded = comfy.lora.load_lora(comfy.lora_convert.convert_lora(dict(lora)), key_map)
    loaded = {key: adapter for key, adapter in loaded.items() if getattr(adapter, "name", None) == "lora"}
    if len(loaded) < len(modules):
        raise ValueError(f"LoRA {name}: only {len(loaded)} of its {len(modules)} modules exist in this model; "
                         "it was made for another model (train one for this model with training.finetune_safe)")
    for key, adapter in loaded.items():
        weight_key = key[0] if isinstance(key, tuple) else key
        up, down = adapter.weights[0], adapter.weights[1]
        shape = comfy.utils.get_attr(model.model, weight_key).shape
        if (up.shape[0], down.shape[1]) != tuple(shape[:2]):
            raise ValueError(f"LoRA {name}: module {weight_key} is {up.shape[0]}x{down.shape[1]} in the file but "
                             f"{shape[0]}x{shape[1]} in this model; it was made for another model")
