"""train_hgr's presets against what ComfyUI detects: each family fits its preset, a mismatch is refused
naming the flag and the detected family, and families without CFG (Flux) are refused with or without one.

Models are built from ComfyUI 0.3.75's own model configs (`comfy.supported_models`) with tiny unet
configs (helpers.py); nothing samples, so their weights stay uninitialised. The full-size random
SD1.5 checkpoint's refusal through the command line is in tests/cli/test_train_hgr_checkpoint.py.
"""

import pytest
import torch

from helpers import FLUX_TINY, SD3_TINY_MMDIT, SD20_TINY_UNET, SDXL_TINY_UNET, comfy_model

# SD20.model_type reads v-prediction from this bias's spread (std > 0.09: the 768-v weights).
V_PREDICTION_KEY = "output_blocks.11.1.transformer_blocks.0.norm1.bias"


@pytest.fixture(scope="module")
def models(comfy_nodes, tiny_model):
    v_weights = {V_PREDICTION_KEY: torch.linspace(-1, 1, 64)}
    return {"SD15": tiny_model, "SD20-v": comfy_model("SD20", SD20_TINY_UNET, v_weights),
            "SD20-eps": comfy_model("SD20", SD20_TINY_UNET), "SDXL": comfy_model("SDXL", SDXL_TINY_UNET),
            "SSD1B": comfy_model("SSD1B", SDXL_TINY_UNET), "SD3": comfy_model("SD3", SD3_TINY_MMDIT),
            "Flux": comfy_model("Flux", FLUX_TINY),
            "FluxSchnell": comfy_model("FluxSchnell", {**FLUX_TINY, "guidance_embed": False})}


def test_comfyui_detects_the_tiny_models_as_the_families_they_claim(models):
    from training.presets import detect

    seen = {name: detect(m).describe() for name, m in models.items()}
    assert seen == {"SD15": "SD15 (SD15 latents, 4 channels, eps-prediction)",
                    "SD20-v": "SD20 (SD15 latents, 4 channels, v-prediction)",
                    "SD20-eps": "SD20 (SD15 latents, 4 channels, eps-prediction)",
                    "SDXL": "SDXL (SDXL latents, 4 channels, eps-prediction)",
                    "SSD1B": "SSD1B (SDXL latents, 4 channels, eps-prediction)",
                    "SD3": "SD3 (SD3 latents, 16 channels, flow-prediction)",
                    "Flux": "Flux (Flux latents, 16 channels, flow-prediction)",
                    "FluxSchnell": "FluxSchnell (Flux latents, 16 channels, flow-prediction)"}


@pytest.mark.parametrize("preset, model", [("sd15", "SD15"), ("sd21-v", "SD20-v"), ("sdxl", "SDXL"), ("sdxl", "SSD1B"),
                                           ("sd3", "SD3")])
def test_each_preset_accepts_its_family(models, preset, model):
    from training.presets import PRESETS, check_model, detect, matching_preset

    detected = detect(models[model])
    check_model(detected, PRESETS[preset], "--checkpoint m.safetensors")
    check_model(detected, None, "--checkpoint m.safetensors")
    assert matching_preset(detected) is PRESETS[preset]


@pytest.mark.parametrize("preset, model, message", [
    ("sdxl", "SD15", r"--preset sdxl expects SDXL \(SDXL latents, 4 channels, eps-prediction\), but ComfyUI detects "
                     r"--checkpoint m.safetensors as SD15 \(SD15 latents, 4 channels, eps-prediction\) "
                     r"\(differs in family, latent format\); use --preset sd15$"),
    ("sd15", "SD20-v", r"--preset sd15 expects SD15 .* as SD20 .*v-prediction\) \(differs in family, prediction type\); "
                       r"use --preset sd21-v$"),
    ("sd3", "SDXL", r"--preset sd3 .* \(differs in family, latent format, latent channels, prediction type\); "
                    r"use --preset sdxl$"),
    ("sd21-v", "SD20-eps", r"--preset sd21-v expects SD20 \(SD15 latents, 4 channels, v-prediction\), but ComfyUI "
                           r"detects --checkpoint m.safetensors as SD20 \(SD15 latents, 4 channels, eps-prediction\) "
                           r"\(differs in prediction type\); no preset describes it: leave --preset out"),
])
def test_a_mismatched_preset_is_refused_naming_the_flag_and_the_detected_family(models, preset, model, message):
    from training.presets import PRESETS, check_model, detect

    with pytest.raises(ValueError, match=message):
        check_model(detect(models[model]), PRESETS[preset], "--checkpoint m.safetensors")


@pytest.mark.parametrize("model, reason", [("Flux", "Flux is guidance-distilled"),
                                           ("FluxSchnell", "FluxSchnell is a Flux model without a guidance embedding: step-distilled")])
@pytest.mark.parametrize("preset", [None, "sd3", "sd15"])
def test_flux_models_are_refused_with_or_without_a_preset_as_having_no_cfg(models, model, reason, preset):
    from training.presets import PRESETS, check_model, detect

    with pytest.raises(ValueError, match=rf"--checkpoint f.safetensors: ComfyUI detects {model} \(Flux latents, .*\); "
                                         rf"{reason}.*, so there is no CFG to redirect\. SafeCFG trains for models"):
        check_model(detect(models[model]), PRESETS[preset] if preset else None, "--checkpoint f.safetensors")


def test_comfyuis_own_detection_tells_flux_dev_from_schnell_and_both_have_no_cfg(comfy_nodes):
    import comfy.model_detection
    from safecfg_comfy.model_kinds import cfg_free_reason

    dev = comfy.model_detection.model_config_from_unet_config(dict(FLUX_TINY))
    schnell = comfy.model_detection.model_config_from_unet_config({**FLUX_TINY, "guidance_embed": False})
    assert (type(dev).__name__, type(schnell).__name__) == ("Flux", "FluxSchnell")
    assert cfg_free_reason(dev) and cfg_free_reason(schnell)


def test_other_guidance_embedded_families_have_no_cfg_and_chroma_keeps_it(comfy_nodes):
    """HunyuanVideo carries its guidance scale as an input (guidance_embed); Chroma, Flux-shaped, samples with CFG."""
    import comfy.supported_models
    from safecfg_comfy.model_kinds import cfg_free_reason

    hunyuan = comfy.supported_models.HunyuanVideo({"image_model": "hunyuan_video", "guidance_embed": True})
    assert "HunyuanVideo is guidance-distilled" in cfg_free_reason(hunyuan)
    assert cfg_free_reason(comfy.supported_models.Chroma({"image_model": "chroma"})) is None
    assert cfg_free_reason(comfy.supported_models.SD3({"in_channels": 16})) is None
