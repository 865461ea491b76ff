"""The HGR as a model ComfyUI manages: loaded with the UNet, counted in VRAM, offloaded with it.

`attach_hgr(patched, hgr)` registers the HGR as an additional model of the patched ModelPatcher
(`set_additional_models`). At sampling start `comfy.sampler_helpers.prepare_sampling` collects it
through `get_nested_additional_models()` and `comfy.model_management.load_models_gpu` loads it
next to the UNet, freeing VRAM for it like for any model; offloading returns it to ComfyUI's
offload device. So the pre-CFG hook never moves the network: it finds it where the sampler runs.
Clones of the patched model clone the HGR's patcher, which shares the one `nn.Module`.

Every patcher attached is a clone of one root patcher that lives exactly as long as the HGR module
(it is stored on the module). ComfyUI's `LoadedModel` follows a dead clone to its parent, so when a
SafeCFG-patched model is dropped (a new strength, a new graph) its entry falls back to the root
instead of pointing at a dead patcher of a live module, which `cleanup_models_gc` reports as
"memory leak with model HGR" and answers with a full garbage collection on every run.
"""

from __future__ import annotations

import comfy.model_management
import comfy.model_patcher

from ._core import hgr_core

ADDITIONAL_MODELS_KEY = "safecfg_hgr"
_ROOT_PATCHER_ATTRIBUTE = "_safecfg_root_patcher"


class HGRPatcher(comfy.model_patcher.ModelPatcher):
    """A ModelPatcher that loads and offloads the HGR whole, never layer by layer.

    ComfyUI's partial ("lowvram") loading leaves some layers on the offload device and relies on
    comfy.ops layers casting their weights at run time; the HGR's plain torch layers do not, so a
    split HGR would fail with a device mismatch. It is a few MB: all on the device, or all off.
    """

    def load(self, device_to=None, lowvram_model_memory=0, force_patch_weights=False, full_load=False):
        return super().load(device_to, lowvram_model_memory, force_patch_weights, full_load=True)

    def partially_unload(self, device_to, memory_to_free=0, force_patch_weights=False):
        return 0  # frees nothing layer by layer; ComfyUI's model_unload then detaches the whole HGR


def hgr_patcher(hgr: hgr_core.HGR) -> HGRPatcher:
    """Wrap the HGR for ComfyUI's model management, on the devices ComfyUI uses for UNets."""
    if not hasattr(hgr, "device"):  # ModelPatcher reads where the weights are from `model.device`
        hgr.device = next(hgr.parameters()).device
    return HGRPatcher(
        hgr,
        load_device=comfy.model_management.get_torch_device(),
        offload_device=comfy.model_management.unet_offload_device(),
    )


def root_hgr_patcher(hgr: hgr_core.HGR) -> HGRPatcher:
    """The one patcher that lives as long as `hgr` (a reference cycle the garbage collector frees)."""
    root = hgr.__dict__.get(_ROOT_PATCHER_ATTRIBUTE)
    if root is None:
        root = hgr_patcher(hgr)
        hgr.__dict__[_ROOT_PATCHER_ATTRIBUTE] = root  # not a submodule, parameter or buffer: no state_dict entry
    return root


def attach_hgr(patched, hgr: hgr_core.HGR) -> None:
    """Make `hgr` an additional model of the ModelPatcher `patched`, beside any other SafeCFG's HGR."""
    others = [p for p in attached_hgr_patchers(patched) if p.model is not hgr]
    patched.set_additional_models(ADDITIONAL_MODELS_KEY, others + [root_hgr_patcher(hgr).clone()])


def attached_hgr_patchers(model) -> list[HGRPatcher]:
    """The HGR patchers attached to a ModelPatcher (empty if SafeCFG is not applied)."""
    return model.get_additional_models_with_key(ADDITIONAL_MODELS_KEY)
