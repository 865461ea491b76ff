"""hgr_core.files: atomic_write, the one temp-file + rename helper every writer uses, and stale_cache_keys."""

import json
import os
import stat

import pytest
import torch
from safetensors.torch import load_file, save_file

from hgr_core import atomic_write, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_the_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "report.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert os.listdir(path.parent) == ["report.json"]


def test_atomic_write_json_round_trips_nan_and_ends_with_a_newline(tmp_path):
    path = atomic_write_json(tmp_path / "report.json", {"rate": float("nan"), "n": [1, 2]})
    text = path.read_text()
    assert text.endswith("}\n") and "\n  \"n\"" in text  # indent 2 by default
    back = json.loads(text)
    assert back["n"] == [1, 2] and back["rate"] != back["rate"]  # NaN survives
    assert atomic_write_json(path, [1], indent=None).read_text() == "[1]\n"


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = atomic_write_text(tmp_path / "weights.safetensors", "old")

    def fail(tmp):
        open(tmp, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["weights.safetensors"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_written_files_are_readable_by_others_like_a_plain_open(tmp_path):
    """mkstemp and safetensors create owner-only files; ComfyUI may run as another user."""
    umask = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "w.safetensors", lambda tmp: save_file({"a": torch.ones(2)}, tmp))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert torch.equal(load_file(str(path))["a"], torch.ones(2))


def test_stale_cache_keys_compares_as_json_and_names_what_changed():
    from hgr_core.files import stale_cache_keys

    key = {"budget": (4, 8), "sha": "ab", "categories": ["nudity"]}
    cached = json.loads(json.dumps(key))  # what a record read back from JSON holds: tuples became lists
    assert stale_cache_keys(cached, key) == []
    assert stale_cache_keys({**cached, "extra": 1}, key) == []  # fields the key does not ask about are ignored
    assert stale_cache_keys({**cached, "sha": "cd"}, key) == ["sha"]
    assert stale_cache_keys({"sha": "ab"}, key) == ["budget", "categories"]
