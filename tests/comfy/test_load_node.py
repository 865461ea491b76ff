"""SafeCFGLoadHGR: lists models/hgr, loads weights, refuses bad files with clear errors."""

import pytest

from helpers import redirecting_hgr, run_node
from hgr_core import save_hgr


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


def test_bad_file_raises_a_clear_error(comfy_nodes, hgr_dir):
    (hgr_dir / "broken.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="broken.safetensors is truncated or not a .safetensors"):
        run_node(comfy_nodes, "SafeCFGLoadHGR", hgr_name="broken.safetensors")


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
