"""The pack's nodes in the real ComfyUI: SafeCFGLoadHGR lists models/hgr, loads weights, reloads a
retrained file, refuses bad files with clear errors; every node carries tooltips and one
display-name prefix; SafeCFGApply's validate_inputs refuses settings that would switch it off."""

import asyncio
import copy
import tomllib

import pytest
import torch

from helpers import REPO, redirecting_hgr, run_node
from hgr_core import save_hgr

PACK_NODES = ("SafeCFGLoadHGR", "SafeCFGApply", "SafeCFGHGRInfo")  # public ids: never renamed


def _options(comfy_nodes):
    info = comfy_nodes.NODE_CLASS_MAPPINGS["SafeCFGLoadHGR"].GET_NODE_INFO_V1()
    return info["input"]["required"]["hgr_name"][1]["options"]


def test_lists_safetensors_in_models_hgr_only(comfy_nodes, hgr_dir):
    save_hgr(redirecting_hgr(), hgr_dir / "listed.safetensors")
    (hgr_dir / "ignored.ckpt").write_bytes(b"pickle")
    options = _options(comfy_nodes)
    assert "listed.safetensors" in options
    assert "ignored.ckpt" not in options


def test_loads_weights_with_metadata(comfy_nodes, hgr_dir):
    save_hgr(redirecting_hgr(), hgr_dir / "good.safetensors", threshold=0.3)
    (hgr,) = run_node(comfy_nodes, "SafeCFGLoadHGR", hgr_name="good.safetensors")
    assert hgr.metadata["threshold"] == 0.3
    assert hgr.config.categories == ("nudity", "violence")


def test_hgr_info_names_the_file_without_the_server_folder(comfy_nodes, hgr_dir):
    save_hgr(redirecting_hgr(), hgr_dir / "described.safetensors", threshold=0.3)
    (hgr,) = run_node(comfy_nodes, "SafeCFGLoadHGR", hgr_name="described.safetensors")
    (text,) = run_node(comfy_nodes, "SafeCFGHGRInfo", hgr=hgr)
    assert text.splitlines()[0] == "file: described.safetensors"
    assert "detection threshold: 0.3" in text and str(hgr_dir) not in text


def test_bad_file_raises_a_clear_error_naming_the_file_but_not_the_server_folder(comfy_nodes, hgr_dir):
    (hgr_dir / "broken.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="broken.safetensors is truncated or not a .safetensors") as error:
        run_node(comfy_nodes, "SafeCFGLoadHGR", hgr_name="broken.safetensors")
    assert str(hgr_dir) not in str(error.value)


def test_a_file_retrained_under_the_same_name_is_reloaded_through_comfyuis_cache(comfy_nodes, hgr_dir):
    """The same graph twice through one ComfyUI executor (its caches, as the server keeps them): an
    unchanged file comes from the cache, a file rewritten with other weights is loaded again."""
    from graph import GraphRunner

    path = hgr_dir / "retrained.safetensors"
    save_hgr(redirecting_hgr(seed=1), path)
    prompt = {"1": {"class_type": "SafeCFGLoadHGR", "inputs": {"hgr_name": path.name}},
              "2": {"class_type": "SafeCFGHGRInfo", "inputs": {"hgr": ["1", 0]}}}
    runner = GraphRunner()
    # A fresh copy per run, as /prompt parses one from JSON: the executor stores the fingerprint in it.
    first = runner.run(copy.deepcopy(prompt)).output("1")
    assert runner.run(copy.deepcopy(prompt)).output("1") is first  # cached while the file is unchanged

    retrained = redirecting_hgr(seed=2)
    save_hgr(retrained, path)
    reloaded = runner.run(copy.deepcopy(prompt)).output("1")
    assert reloaded is not first
    assert torch.equal(reloaded.head.weight, retrained.head.weight)
    assert not torch.equal(reloaded.head.weight, first.head.weight)


def test_every_pack_node_has_a_tooltip_on_each_input_and_output(comfy_nodes):
    for node_id in PACK_NODES:
        info = comfy_nodes.NODE_CLASS_MAPPINGS[node_id].GET_NODE_INFO_V1()
        inputs = {**info["input"]["required"], **info["input"].get("optional", {})}
        assert inputs and info["output"], node_id
        for name, (_, options) in inputs.items():
            assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert len(info["output_tooltips"]) == len(info["output"])
        assert all(info["output_tooltips"]), f"{node_id} has an output without a tooltip"


def test_pack_nodes_share_one_display_name_prefix(comfy_nodes):
    names = {node_id: comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id] for node_id in PACK_NODES}
    assert all(name.startswith("SafeCFG: ") for name in names.values()), names
    assert len(set(names.values())) == len(PACK_NODES)


@pytest.mark.parametrize("inputs, problem", [
    ({"start_percent": 0.8, "end_percent": 0.2}, "start_percent (0.8) is after end_percent (0.2)"),
    ({"categories": ", "}, "categories ', ' names no category"),
    ({"categories": ",,"}, "categories ',,' names no category"),
    ({"start_percent": -0.5}, "start_percent is -0.5; set it between 0"),
])
def test_apply_validate_inputs_refuses_settings_that_redirect_nothing(comfy_nodes, inputs, problem):
    settings = {"start_percent": 0.0, "end_percent": 1.0, "categories": "all", **inputs}
    message = comfy_nodes.NODE_CLASS_MAPPINGS["SafeCFGApply"].validate_inputs(**settings)
    assert isinstance(message, str) and problem in message


@pytest.mark.parametrize("categories", ["all", "ALL", "", "nudity", " nudity , violence ", "nudity,"])
def test_apply_validate_inputs_accepts_category_lists_that_select_something(comfy_nodes, categories):
    apply = comfy_nodes.NODE_CLASS_MAPPINGS["SafeCFGApply"]
    assert apply.validate_inputs(start_percent=0.5, end_percent=0.5, categories=categories) is True


def test_comfyui_prompt_validation_reports_start_after_end_as_a_node_error(comfy_nodes):
    """`execution.validate_prompt` (what /prompt runs) calls validate_inputs on SafeCFGApply even
    though its model and HGR inputs are links (nothing is loaded to validate)."""
    import execution

    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "absent.safetensors"}},
        "2": {"class_type": "SafeCFGLoadHGR", "inputs": {"hgr_name": "absent.safetensors"}},
        "3": {"class_type": "SafeCFGApply", "inputs": {"model": ["1", 0], "hgr": ["2", 0], "strength": 1.0,
                                                      "start_percent": 0.9, "end_percent": 0.1, "categories": "all"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["3", 0], "positive": ["6", 0], "negative": ["6", 0], "latent_image": ["4", 0], "seed": 0,
            "steps": 1, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "a lighthouse"}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "never"}},
    }
    valid, _, _, node_errors = asyncio.run(execution.validate_prompt("validation-test", prompt, None))
    assert not valid
    details = [e["details"] for e in node_errors["3"]["errors"]]
    assert any("start_percent (0.9) is after end_percent (0.1)" in d for d in details), details


def test_comfyui_reads_the_minimum_version_and_repository_from_pyproject(comfy_nodes):
    """The Comfy registry's fields as ComfyUI's own parser reads them (tests/unit checks the file)."""
    from comfy_config import config_parser

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    config = config_parser.extract_node_configuration(str(REPO))
    assert config.project.supported_comfyui_version == ">=0.3.75"
    assert config.project.urls.repository == project["project"]["urls"]["Repository"]


def test_keeps_paths_a_user_registered_for_hgr(comfy_nodes, tmp_path):
    import folder_paths
    from importlib import import_module

    register = import_module(comfy_nodes.LOADED_MODULE_DIRS and _pack_module(comfy_nodes) + ".nodes.model_folder").register_hgr_folder
    saved = folder_paths.folder_names_and_paths["hgr"]
    try:
        folder_paths.folder_names_and_paths["hgr"] = ([str(tmp_path)], set())
        assert register() == [str(tmp_path)]
        assert folder_paths.folder_names_and_paths["hgr"][1] == {".safetensors"}
    finally:
        folder_paths.folder_names_and_paths["hgr"] = saved


def _pack_module(comfy_nodes):
    cls = comfy_nodes.NODE_CLASS_MAPPINGS["SafeCFGLoadHGR"]
    return cls.__module__.rsplit(".nodes.", 1)[0]
