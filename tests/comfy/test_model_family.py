"""The right model and the right memory: SafeCFG refuses an HGR from another latent space or a model
it does not support, and the HGR is a model ComfyUI's model management loads beside the UNet.

The models are built in-process from ComfyUI 0.3.75's own model configs (`comfy.supported_models`)
with tiny unet configs (helpers.py): no checkpoint file of SDXL, SD3, Flux or Wan is small. Refusals happen in
`patch_model` before any sampling, so those models keep ComfyUI's uninitialised weights.
"""

import inspect
from pathlib import Path

import pytest
import torch

from helpers import FLUX_TINY, SD3_TINY_MMDIT, SDXL_TINY_UNET, WAN21_TINY, identity_hgr, redirecting_hgr
from helpers import comfy_model as _model


@pytest.fixture(scope="module")
def models(comfy_nodes):
    return {"SDXL": _model("SDXL", SDXL_TINY_UNET), "SD3": _model("SD3", SD3_TINY_MMDIT),
            "Flux": _model("Flux", FLUX_TINY), "Wan21": _model("WAN21_T2V", WAN21_TINY)}


def _hgr(latent_format=None, channels=4, prediction="eps", file="trained.safetensors"):
    hgr = identity_hgr(latent_channels=channels)
    hgr.metadata = {"file": file, "path": f"/srv/private/models/hgr/{file}", "prediction_type": prediction,
                    "base_model": latent_format or "unknown", "latent_format": latent_format}
    return hgr


def test_the_tiny_models_are_the_families_they_claim(models):
    from safecfg_comfy.model_kinds import latent_dimensions, latent_format_name, prediction_type

    seen = {name: (latent_format_name(m.get_model_object("latent_format")), m.get_model_object("latent_format").latent_channels,
                   latent_dimensions(m.get_model_object("latent_format")), prediction_type(m.get_model_object("model_sampling")))
            for name, m in models.items()}
    assert seen == {"SDXL": ("SDXL", 4, 2, "eps"), "SD3": ("SD3", 16, 2, "flow"), "Flux": ("Flux", 16, 2, "flow"),
                    "Wan21": ("Wan21", 16, 3, "flow")}


def test_sd15_hgr_is_refused_on_sdxl_although_both_are_4_channel_eps(models):
    from safecfg_comfy.patch import patch_model

    with pytest.raises(ValueError, match="trained.safetensors was trained for the SD15 latent space .* but the model "
                                         "uses the SDXL latent space; load an HGR trained for this checkpoint's family") as e:
        patch_model(models["SDXL"], _hgr("SD15"))
    assert "/srv/private" not in str(e.value)


def test_sdxl_hgr_is_accepted_on_sdxl(models):
    from safecfg_comfy.patch import patch_model

    assert patch_model(models["SDXL"], _hgr("SDXL")) is not models["SDXL"]


def test_hgr_without_a_recorded_latent_format_keeps_the_channel_check(models):
    from safecfg_comfy.patch import patch_model

    patch_model(models["SDXL"], _hgr(None))  # an older file: 4 channels, eps, nothing more is known
    with pytest.raises(ValueError, match="trained.safetensors was trained for 4-channel latents .* the model has 16"):
        patch_model(models["SD3"], _hgr(None, prediction="flow"))


@pytest.mark.parametrize("hgr_format, model", [("SD3", "Flux"), ("Flux", "SD3")])
def test_sd3_and_flux_hgrs_are_refused_on_each_other(models, hgr_format, model):
    from safecfg_comfy.patch import patch_model

    with pytest.raises(ValueError, match=f"trained for the {hgr_format} latent space .* uses the {model} latent space"):
        patch_model(models[model], _hgr(hgr_format, channels=16, prediction="flow"))
    patch_model(models[hgr_format], _hgr(hgr_format, channels=16, prediction="flow"))


def test_video_latents_are_not_supported(models):
    from safecfg_comfy.patch import patch_model

    with pytest.raises(ValueError, match=r"SafeCFG does not support video models \(Wan21 latents are 3-D"):
        patch_model(models["Wan21"], _hgr(None, channels=16, prediction="flow"))


def _resampled(model, node: str, sampling: str):
    from comfy_extras import nodes_model_advanced

    if node == "ModelSamplingDiscrete":
        return nodes_model_advanced.ModelSamplingDiscrete().patch(model, sampling, False)[0]
    return nodes_model_advanced.ModelSamplingContinuousEDM().patch(model, sampling, 120.0, 0.002)[0]


@pytest.mark.parametrize("node, sampling, name", [
    ("ModelSamplingDiscrete", "lcm", "LCM"), ("ModelSamplingDiscrete", "x0", "X0"),
    ("ModelSamplingDiscrete", "img_to_img", "IMG_TO_IMG"), ("ModelSamplingContinuousEDM", "edm", "EDM"),
    ("ModelSamplingContinuousEDM", "edm_playground_v2.5", "EDM"),
])
def test_unsupported_parameterisations_are_refused_as_not_supported(tiny_model, node, sampling, name):
    from safecfg_comfy.patch import patch_model

    with pytest.raises(ValueError, match=f"SafeCFG does not support {name}-parameterised models") as e:
        patch_model(_resampled(tiny_model, node, sampling), _hgr("SD15"))
    assert "unsupported-prediction" not in str(e.value)


def test_continuous_edm_schedule_with_eps_prediction_is_still_eps(tiny_model):
    from safecfg_comfy.patch import patch_model

    patch_model(_resampled(tiny_model, "ModelSamplingContinuousEDM", "eps"), _hgr("SD15"))


def test_toy_world_hgrs_record_sd15_and_fit_the_toy_model(comfy_nodes, tmp_path):
    from hgr_core import load_hgr, save_hgr
    from safecfg_comfy.patch import patch_model
    from training.backends import ToyBackend
    from training.run import trained_latent_format

    backend = ToyBackend()
    assert trained_latent_format(backend) == "SD15"  # the toy UNet is an SD15 config with SD15's latent format
    path = save_hgr(redirecting_hgr(), tmp_path / "toy.safetensors", base_model="toyworld",
                    latent_format=trained_latent_format(backend))
    patch_model(backend.model, load_hgr(path))


# --- the HGR as a ModelPatcher additional model ---------------------------------------------

def _sample(comfy_nodes, model):
    gen = torch.Generator().manual_seed(1)
    positive = [[torch.randn(1, 5, 32, generator=gen), {}]]
    negative = [[torch.randn(1, 5, 32, generator=gen) * 0.1, {}]]
    (out,) = comfy_nodes.common_ksampler(model, 42, 2, 5.0, "euler", "normal", positive, negative,
                                         {"samples": torch.zeros(1, 4, 8, 8)})
    return out["samples"]


def _record_moves(hgr):
    """For every `_apply` on the HGR (what .to(), .cuda(), .float() run): the files on the call stack."""
    moves, original = [], hgr._apply

    def recording_apply(fn, *args, **kwargs):
        moves.append({Path(frame.filename).resolve() for frame in inspect.stack()[1:]})
        return original(fn, *args, **kwargs)

    hgr._apply = recording_apply  # an instance attribute shadows nn.Module._apply
    return moves


def test_patched_model_carries_the_hgr_as_an_additional_model_that_clones_keep(tiny_model):
    from safecfg_comfy.hgr_patcher import HGRPatcher, attached_hgr_patchers
    from safecfg_comfy.patch import patch_model

    hgr = redirecting_hgr()
    patched = patch_model(tiny_model, hgr)
    (patcher,) = attached_hgr_patchers(patched)
    assert isinstance(patcher, HGRPatcher) and patcher.model is hgr
    assert [p.model for p in patched.clone().get_nested_additional_models()] == [hgr]
    assert attached_hgr_patchers(tiny_model) == []  # the input model is untouched
    twice = patch_model(patched, identity_hgr())
    assert len(attached_hgr_patchers(twice)) == 2  # two SafeCFGs in a row: both HGRs are managed


def test_comfyui_loads_and_counts_the_hgr_with_the_unet_and_the_hook_never_moves_it(comfy_nodes, tiny_model):
    import comfy.model_management
    import safecfg_comfy.patch as safecfg_patch
    from safecfg_comfy.hgr_patcher import HGRPatcher
    from safecfg_comfy.patch import patch_model

    hgr = redirecting_hgr(seed=3)
    moves = _record_moves(hgr)
    patched = patch_model(tiny_model, hgr)
    forwards = []
    hgr.register_forward_hook(lambda *_: forwards.append(1))
    assert torch.isfinite(_sample(comfy_nodes, patched)).all()
    assert forwards, "the HGR ran"
    loaded = [m for m in comfy.model_management.current_loaded_models
              if isinstance(m.model, HGRPatcher) and m.model.model is hgr]
    assert len(loaded) == 1, "ComfyUI's load_models_gpu loaded the HGR's patcher"
    size = sum(t.numel() * t.element_size() for t in hgr.state_dict().values())
    assert loaded[0].model_memory() == size and loaded[0].model_loaded_memory() == size  # counted, loaded whole
    assert hgr.device == comfy.model_management.get_torch_device()
    # Moved, and only by ComfyUI's model management (load_models_gpu); never from inside the hook.
    management, hook = Path(comfy.model_management.__file__).resolve(), Path(safecfg_patch.__file__).resolve()
    assert moves and all(management in stack and hook not in stack for stack in moves)


def test_dropping_a_patched_model_while_its_hgr_lives_is_not_a_comfyui_memory_leak(comfy_nodes, tiny_model, caplog):
    """The loader keeps the HGR module; SafeCFG outputs come and go (a new strength, a new graph)."""
    import gc
    import logging

    import comfy.model_management
    from safecfg_comfy.hgr_patcher import HGRPatcher
    from safecfg_comfy.patch import patch_model

    hgr = redirecting_hgr(seed=5)
    for strength in (1.0, 0.5):  # two SafeCFG outputs in turn, the first one dropped
        patched = patch_model(tiny_model, hgr, strength=strength)
        assert torch.isfinite(_sample(comfy_nodes, patched)).all()
        del patched
        gc.collect()
    entries = [m for m in comfy.model_management.current_loaded_models
               if isinstance(m.real_model(), type(hgr)) and m.real_model() is hgr]
    assert entries and not any(m.is_dead() for m in entries)
    assert all(isinstance(m.model, HGRPatcher) for m in entries)
    with caplog.at_level(logging.INFO):
        comfy.model_management.cleanup_models_gc()
    assert "memory leak" not in caplog.text.lower()


def test_hgr_patcher_loads_and_unloads_whole_never_layer_by_layer(comfy_nodes):
    import comfy.model_management
    from safecfg_comfy.hgr_patcher import hgr_patcher

    hgr = redirecting_hgr()
    patcher = hgr_patcher(hgr)
    device = comfy.model_management.get_torch_device()
    patcher.load(device, lowvram_model_memory=1)  # a budget of 1 byte would split a normal ModelPatcher
    assert patcher.loaded_size() == patcher.model_size() and not hgr.model_lowvram
    assert patcher.partially_unload(torch.device("cpu"), memory_to_free=1) == 0
    assert patcher.loaded_size() == patcher.model_size()


@pytest.mark.parametrize("categories", [", ", ",,", " , , "])
def test_a_category_list_that_selects_nothing_is_refused_not_silently_off(tiny_model, categories):
    from safecfg_comfy.patch import patch_model

    with pytest.raises(ValueError, match="selects no category"):
        patch_model(tiny_model, redirecting_hgr(), categories=categories)
