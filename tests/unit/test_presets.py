"""train_hgr --preset as parsed: per-family defaults that explicit flags override (no ComfyUI)."""

import pytest

from training.cli import parse_args
from training.presets import PRESETS

BASE = ["--checkpoint", "model.safetensors", "--harmful", "h.csv", "--clean", "c.txt", "--output", "x.safetensors"]


@pytest.mark.parametrize("name, resolution, width", [("sd15", 512, 48), ("sd21-v", 768, 48), ("sdxl", 1024, 48),
                                                     ("sd3", 1024, 64)])
def test_each_preset_sets_its_resolution_and_hgr_width(name, resolution, width):
    args = parse_args([*BASE, "--preset", name])
    assert args.preset is PRESETS[name]
    assert (args.resolution, args.base_channels) == (resolution, width)


def test_the_presets_expect_comfyuis_family_latents_and_prediction_type():
    expected = {name: (p.family, p.latent_format, p.latent_channels, p.prediction) for name, p in PRESETS.items()}
    assert expected == {"sd15": ("SD15", "SD15", 4, "eps"), "sd21-v": ("SD20", "SD15", 4, "v"),
                        "sdxl": ("SDXL", "SDXL", 4, "eps"), "sd3": ("SD3", "SD3", 16, "flow")}


@pytest.mark.parametrize("order", ["preset first", "flags first"])
def test_explicit_flags_override_the_preset_wherever_they_stand(order):
    flags = ["--resolution", "64", "--base-channels", "16"]
    argv = [*BASE, "--preset", "sdxl", *flags] if order == "preset first" else [*BASE, *flags, "--preset", "sdxl"]
    args = parse_args(argv)
    assert args.preset.name == "sdxl" and (args.resolution, args.base_channels) == (64, 16)


def test_one_explicit_flag_leaves_the_presets_other_values():
    args = parse_args([*BASE, "--preset", "sd3", "--resolution", "512"])
    assert (args.resolution, args.base_channels) == (512, 64)


def test_without_a_preset_the_flag_defaults_stand():
    args = parse_args(BASE)
    assert args.preset is None and (args.resolution, args.base_channels) == (512, 48)


@pytest.mark.parametrize("name", ["flux", "Flux", "flux-schnell", "flux-dev", "flux2"])
def test_flux_presets_are_refused_as_having_no_cfg_to_redirect(name, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args([*BASE, "--preset", name])
    assert e.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --preset" in error and "no CFG to redirect" in error and "sd15, sd21-v, sdxl, sd3" in error


def test_an_unknown_preset_names_the_choices(capsys):
    with pytest.raises(SystemExit):
        parse_args([*BASE, "--preset", "sd2"])
    assert "unknown preset 'sd2'; choose from sd15, sd21-v, sdxl, sd3" in capsys.readouterr().err


def test_a_preset_with_the_toy_world_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--toy", *BASE[2:], "--preset", "sd15"])
    assert "--preset describes a --checkpoint family" in capsys.readouterr().err
