"""HGR weights files: round trip, metadata, and a clear error for each kind of bad file."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from helpers import REPO, redirecting_hgr
from hgr_core import HGRConfig, HGRFileError, load_hgr, read_hgr_metadata, save_hgr


@pytest.fixture
def saved(tmp_path):
    hgr = redirecting_hgr(categories=("nudity", "violence", "gore"))
    path = save_hgr(hgr, tmp_path / "model.safetensors", latent_format="SD15", threshold=0.25, training={"steps": 7})
    return hgr, path


def test_round_trip_reproduces_weights_config_and_metadata(saved):
    hgr, path = saved
    loaded = load_hgr(path)
    assert loaded.config == hgr.config
    for name, tensor in hgr.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded.metadata["threshold"] == 0.25
    assert loaded.metadata["training"] == {"steps": 7}
    assert loaded.metadata["prediction_type"] == "eps"
    assert loaded.metadata["latent_format"] == "SD15"
    assert loaded.metadata["file"] == "model.safetensors"
    assert not loaded.training


def test_metadata_is_all_strings_with_the_documented_fields(saved):
    meta = read_hgr_metadata(saved[1])
    assert meta["format"] == "safecfg-hgr" and meta["format_version"] == "1"
    assert json.loads(meta["categories"]) == ["nudity", "violence", "gore"]
    assert meta["latent_channels"] == "4" and meta["base_model"] == "SD1.x"
    assert meta["latent_format"] == "SD15"
    assert HGRConfig.from_json(meta["config"]) == saved[0].config


def test_latent_format_is_left_out_when_not_given(tmp_path):
    path = save_hgr(redirecting_hgr(), tmp_path / "old-style.safetensors")
    assert "latent_format" not in read_hgr_metadata(path)
    assert load_hgr(path).metadata["latent_format"] is None


def test_version_1_file_with_only_the_original_fields_loads(saved, tmp_path):
    # What train_hgr wrote before optional fields existed: exactly these keys, written directly.
    original = ("format", "format_version", "config", "base_model", "latent_channels", "prediction_type",
                "categories", "threshold", "training")
    meta = {k: v for k, v in read_hgr_metadata(saved[1]).items() if k in original}
    path = tmp_path / "v1.safetensors"
    save_file({k: v.contiguous() for k, v in saved[0].state_dict().items()}, str(path), metadata=meta)
    loaded = load_hgr(path)
    assert loaded.config == saved[0].config and loaded.metadata["threshold"] == 0.25
    assert loaded.metadata["latent_format"] is None
    # trained before the rule was recorded: it keeps the gate-weighted mean it was trained with
    assert loaded.combine_rule == "mean" and loaded.metadata["combine_rule"] == "mean"
    assert loaded.metadata["calibration"] is None


@pytest.mark.parametrize("rule", ["sum", "mean"])
def test_combine_rule_round_trips_and_the_math_uses_it(tmp_path, rule):
    hgr = redirecting_hgr()
    hgr.combine_rule = rule
    path = save_hgr(hgr, tmp_path / "rule.safetensors")
    assert read_hgr_metadata(path)["combine_rule"] == rule
    loaded = load_hgr(path)
    assert loaded.combine_rule == rule and loaded.metadata["combine_rule"] == rule


def test_a_new_hgr_records_the_sum_rule(tmp_path):
    assert read_hgr_metadata(save_hgr(redirecting_hgr(), tmp_path / "new.safetensors"))["combine_rule"] == "sum"


def test_calibration_round_trips_as_json(tmp_path):
    calibration = {"percentile": 99.0, "false_positive_target": 0.01, "clean_trajectories": 40,
                   "score": {"sigma_window": [0.4, 8.0]}, "sampling": {"drawn": {"sampler": {"euler": 40}}}}
    path = save_hgr(redirecting_hgr(), tmp_path / "calibrated.safetensors", threshold=0.2, calibration=calibration)
    assert json.loads(read_hgr_metadata(path)["calibration"]) == calibration
    assert load_hgr(path).metadata["calibration"] == calibration
    assert "calibration" not in read_hgr_metadata(save_hgr(redirecting_hgr(), tmp_path / "plain.safetensors"))


def test_unknown_combine_rule_in_the_file_is_refused(saved, tmp_path):
    meta = read_hgr_metadata(saved[1]) | {"combine_rule": "max"}
    path = tmp_path / "badrule.safetensors"
    save_file(dict(saved[0].state_dict()), str(path), metadata=meta)
    with pytest.raises(HGRFileError, match="badrule.safetensors has unknown combine_rule 'max'"):
        load_hgr(path)


def test_save_leaves_no_temp_file_behind(saved, tmp_path):
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_hgr(tmp_path / "nope.safetensors")


def test_file_that_is_not_safetensors(tmp_path):
    path = tmp_path / "pickle.safetensors"
    path.write_bytes(b"\x80\x04\x95 not a safetensors header")
    with pytest.raises(HGRFileError, match="pickle.safetensors.*not a .safetensors file"):
        load_hgr(path)


def test_truncated_file(saved, tmp_path):
    data = saved[1].read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(HGRFileError, match="cut.safetensors.*(truncated|corrupt)"):
        load_hgr(path)


def test_safetensors_that_is_not_an_hgr(tmp_path):
    path = tmp_path / "lora.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"ss_network_module": "lora"})
    with pytest.raises(HGRFileError, match="lora.safetensors is not an HGR"):
        load_hgr(path)


@pytest.mark.parametrize("version", ["99", "2", "0", "1.0", ""])
def test_format_version_beyond_this_reader_or_malformed_is_refused(saved, tmp_path, version):
    tensors = dict(saved[0].state_dict())
    meta = read_hgr_metadata(saved[1]) | {"format_version": version}
    path = tmp_path / "future.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(HGRFileError, match=f"future.safetensors has HGR format version '{version}', this pack reads versions 1 to 1"):
        load_hgr(path)


def test_tensors_not_matching_the_config(saved, tmp_path):
    meta = read_hgr_metadata(saved[1])
    config = json.loads(meta["config"]) | {"base_channels": 32}
    path = tmp_path / "mismatch.safetensors"
    save_file(dict(saved[0].state_dict()), str(path), metadata=meta | {"config": json.dumps(config)})
    with pytest.raises(HGRFileError, match=r"mismatch.safetensors: tensors do not match the config .*shape: down\.0\.0\.conv1\.bias \(16,\) instead of \(32,\)"):
        load_hgr(path)


def _with_declared_config(saved, path, **fields):
    meta = read_hgr_metadata(saved[1])
    config = json.loads(meta["config"]) | fields
    save_file(dict(saved[0].state_dict()), str(path), metadata=meta | {"config": json.dumps(config)})
    return path


def test_tensors_missing_for_a_declared_level_are_named(saved, tmp_path):
    path = _with_declared_config(saved, tmp_path / "deeper.safetensors", channel_mult=[1, 2, 4, 8])
    with pytest.raises(HGRFileError, match=r"deeper.safetensors: tensors do not match .*missing: down\.3"):
        load_hgr(path)


def test_implausibly_deep_network_is_refused_before_it_is_built(saved, tmp_path):
    path = _with_declared_config(saved, tmp_path / "deep.safetensors", channel_mult=[1] * 1000, blocks_per_level=1000)
    with pytest.raises(HGRFileError, match="deep.safetensors declares 1000 U-Net levels of 1000 blocks"):
        load_hgr(path)


# Run in a fresh interpreter: its peak RSS before the load is just torch + hgr_core, so any large
# allocation inside load_hgr (even one freed again before it raises) shows in ru_maxrss.
_MEMORY_PROBE = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
from hgr_core import HGRFileError, load_hgr
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    load_hgr(sys.argv[1])
    message = None
except HGRFileError as e:
    message = str(e)
seconds = time.perf_counter() - start
grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # Linux: kilobytes
print(json.dumps({"message": message, "seconds": seconds, "grown_mb": grown_kb / 1024}))
"""


def test_file_declaring_a_27_gb_network_is_refused_fast_without_allocating(tmp_path):
    # The attack from the issue: a tiny file whose metadata declares base_channels 2048, which used to
    # make load_hgr allocate 6.8 G float32 parameters (27 GB) before any check.
    path = save_hgr(redirecting_hgr(), tmp_path / "bomb.safetensors")
    meta = read_hgr_metadata(path)
    config = json.loads(meta["config"]) | {"base_channels": 2048}
    save_file({"stem.weight": torch.zeros(1)}, str(path), metadata=meta | {"config": json.dumps(config), "training": "{}"})
    assert path.stat().st_size < 1024
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(path), str(REPO)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["message"] and "bomb.safetensors declares a network of 6,837,774,346 parameters" in result["message"]
    assert result["seconds"] < 1.0, result
    assert result["grown_mb"] < 100, result


def test_error_messages_name_the_file_but_not_its_folder(saved, tmp_path):
    bad = {
        "missing.safetensors": None,
        "pickle.safetensors": b"\x80\x04\x95 not a safetensors header",
        "cut.safetensors": saved[1].read_bytes()[:100],
    }
    for name, data in bad.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    _with_declared_config(saved, tmp_path / "resized.safetensors", base_channels=32)
    _with_declared_config(saved, tmp_path / "huge.safetensors", base_channels=4096)
    for name in [*bad, "resized.safetensors", "huge.safetensors"]:
        with pytest.raises((HGRFileError, FileNotFoundError)) as error:
            load_hgr(tmp_path / name)
        assert name in str(error.value) and str(tmp_path) not in str(error.value), str(error.value)


def test_invalid_metadata_values(saved, tmp_path):
    meta = read_hgr_metadata(saved[1]) | {"threshold": "high"}
    path = tmp_path / "badmeta.safetensors"
    save_file(dict(saved[0].state_dict()), str(path), metadata=meta)
    with pytest.raises(HGRFileError, match="badmeta.safetensors has invalid HGR metadata"):
        load_hgr(path)


def test_invalid_latent_format_in_the_file_is_refused(saved, tmp_path):
    meta = read_hgr_metadata(saved[1]) | {"latent_format": "SD 1.5"}
    path = tmp_path / "badformat.safetensors"
    save_file(dict(saved[0].state_dict()), str(path), metadata=meta)
    with pytest.raises(HGRFileError, match="badformat.safetensors has an invalid latent_format 'SD 1.5'"):
        load_hgr(path)


def test_unknown_prediction_type_is_refused_on_save(tmp_path):
    with pytest.raises(ValueError, match="prediction_type"):
        save_hgr(redirecting_hgr(), tmp_path / "x.safetensors", prediction_type="x0")
    with pytest.raises(ValueError, match="latent_format"):
        save_hgr(redirecting_hgr(), tmp_path / "x.safetensors", latent_format="SD1.5")
