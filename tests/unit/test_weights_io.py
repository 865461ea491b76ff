"""HGR weights files: round trip, metadata, and a clear error for each kind of bad file."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from helpers import redirecting_hgr
from hgr_core import HGRConfig, HGRFileError, load_hgr, read_hgr_metadata, save_hgr


@pytest.fixture
def saved(tmp_path):
    hgr = redirecting_hgr(categories=("nudity", "violence", "gore"))
    path = save_hgr(hgr, tmp_path / "model.safetensors", threshold=0.25, training={"steps": 7})
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
    assert not loaded.training


def test_metadata_is_all_strings_with_the_documented_fields(saved):
    meta = read_hgr_metadata(saved[1])
    assert meta["format"] == "safecfg-hgr" and meta["format_version"] == "1"
    assert json.loads(meta["categories"]) == ["nudity", "violence", "gore"]
    assert meta["latent_channels"] == "4" and meta["base_model"] == "SD1.x"
    assert HGRConfig.from_json(meta["config"]) == saved[0].config


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


def test_unknown_format_version(saved, tmp_path):
    tensors = dict(saved[0].state_dict())
    meta = read_hgr_metadata(saved[1]) | {"format_version": "99"}
    path = tmp_path / "future.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(HGRFileError, match="future.safetensors has HGR format version '99'"):
        load_hgr(path)


def test_tensors_not_matching_the_config(saved, tmp_path):
    meta = read_hgr_metadata(saved[1])
    config = json.loads(meta["config"]) | {"base_channels": 32}
    path = tmp_path / "mismatch.safetensors"
    save_file(dict(saved[0].state_dict()), str(path), metadata=meta | {"config": json.dumps(config)})
    with pytest.raises(HGRFileError, match="mismatch.safetensors: tensors do not match the config"):
        load_hgr(path)


def test_invalid_metadata_values(saved, tmp_path):
    meta = read_hgr_metadata(saved[1]) | {"threshold": "high"}
    path = tmp_path / "badmeta.safetensors"
    save_file(dict(saved[0].state_dict()), str(path), metadata=meta)
    with pytest.raises(HGRFileError, match="badmeta.safetensors has invalid HGR metadata"):
        load_hgr(path)


def test_unknown_prediction_type_is_refused_on_save(tmp_path):
    with pytest.raises(ValueError, match="prediction_type"):
        save_hgr(redirecting_hgr(), tmp_path / "x.safetensors", prediction_type="x0")
