"""The trajectory store (training.store): float16 shards read per batch, exact per-row fields, old
float32 caches refused, and the trainer's consumers reading a store as they read a dict (no ComfyUI)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from hgr_core import file_sha256
from training import store
from training.jobs import Job, Shard

LATENT = (4, 6, 6)


def _rows(jobs: list[int], steps: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    count = len(jobs) * steps
    rows = {k: torch.randn(count, *LATENT, generator=gen) * 3 for k in store.HALF_FIELDS}
    rows["sigma"] = torch.tensor([14.614642, 1.0 / 3, 0.0291675] * len(jobs))[:count]
    rows["job"] = torch.tensor(jobs).repeat_interleave(steps)
    return rows


def _jobs(n: int) -> list[Job]:
    return [Job(f"prompt {i}", ("nudity",) if i % 2 else (), "safe" if i % 2 else None, "safe" if i % 2 else "none",
                False, i, 7.0, "", "val" if i % 3 == 0 else "train") for i in range(n)]


def _write_cache(folder, shard_jobs=((0, 1), (2, 3), (4, 5))) -> dict[str, torch.Tensor]:
    """A complete cache through the store's writer; returns the rows it was given, concatenated."""
    parts = [_rows(list(jobs), seed=i) for i, jobs in enumerate(shard_jobs)]
    for i, rows in enumerate(parts):
        store.write_shard(folder, i, rows)
    shards = [Shard(tuple(jobs), "euler", "normal", 3) for jobs in shard_jobs]
    store.write_manifest(folder, _jobs(sum(map(len, shard_jobs))), shards, "plan")
    return {k: torch.cat([p[k] for p in parts]) for k in store.FIELDS}


def test_store_keeps_per_row_fields_exact_and_pixels_in_float16(tmp_path):
    written = _write_cache(tmp_path)
    data = store.open_store(tmp_path, preload_bytes=0)
    assert data.rows == 18 and data["x"].shape == (18, *LATENT) and len(data["x"]) == 18
    assert torch.equal(data["sigma"], written["sigma"]) and data["sigma"].dtype == torch.float32
    assert torch.equal(data["job"], written["job"]) and data["job"].dtype == torch.int64
    for name in store.HALF_FIELDS:
        everything = data[name][:]
        assert everything.dtype == torch.float32
        assert torch.equal(everything, written[name].half().float())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == store.STORE_FORMAT and manifest["fields"]["x"] == "float16"
    assert manifest["fields"]["sigma"] == "float32" and manifest["fields"]["job"] == "int64"
    assert [s["rows"] for s in manifest["shards"].values()] == [6, 6, 6]


def test_gather_returns_rows_in_the_asked_order_across_shards_with_repeats(tmp_path):
    written = _write_cache(tmp_path)
    data = store.open_store(tmp_path, preload_bytes=0)  # the lazy path, read from the shard files
    rows = torch.tensor([17, 0, 5, 6, 6, 12, 1, 2, 3])  # every shard, a repeat, a run of consecutive rows
    assert torch.equal(data["g"][rows], written["g"][rows].half().float())
    mask = torch.zeros(18, dtype=torch.bool)
    mask[[3, 9]] = True
    assert torch.equal(data["x"][mask], written["x"][mask].half().float())
    assert data["x"][torch.tensor([], dtype=torch.int64)].shape == (0, *LATENT)
    with pytest.raises(IndexError, match=r"rows must lie in \[0, 18\)"):
        data["x"][torch.tensor([18])]
    with pytest.raises(TypeError, match="1-D tensor of row numbers"):
        data["x"][torch.tensor(3)]


def test_a_recorded_step_costs_the_float16_pixels_and_the_exact_row_fields(tmp_path):
    _write_cache(tmp_path)
    per_row = store.bytes_per_row(LATENT)
    assert per_row == 4 * 4 * 6 * 6 * 2 + 4 + 8
    on_disk = sum(p.stat().st_size for p in tmp_path.glob("shard_*.safetensors"))
    headers = on_disk - 18 * per_row
    assert 0 < headers < 3 * 1024  # one small JSON header per shard


def test_values_float16_cannot_hold_are_refused_not_written_as_inf(tmp_path):
    rows = _rows([0])
    rows["x"][0, 0, 0, 0] = 1e6
    with pytest.raises(ValueError, match=r"x: values beyond float16's range .*1e\+06"):
        store.write_shard(tmp_path, 0, rows)
    assert not list(tmp_path.iterdir())


def _write_format_1_cache(folder) -> None:
    """A cache as train_hgr wrote it before the store: float32 shards, no format anywhere."""
    rows = _rows([0, 1])
    save_file({k: v.contiguous() for k, v in rows.items()}, str(store.shard_path(folder, 0)))
    sha = file_sha256(store.shard_path(folder, 0))
    store.shard_path(folder, 0).with_suffix(".json").write_text(json.dumps({"sha256": sha, "rows": 6, "jobs": [0, 1]}))
    (folder / "manifest.json").write_text(json.dumps({"plan": "old", "jobs": 2, "trajectories": 2, "rows": 6,
                                                      "shards": {"shard_00000.safetensors": {"sha256": sha}}}))
    (folder / "jobs.json").write_text(json.dumps([vars(j) for j in _jobs(2)]))


def test_a_float32_cache_of_the_old_format_is_refused_naming_the_folder_and_the_fix(tmp_path):
    cache = tmp_path / "trajectories" / "0123abcd"
    cache.mkdir(parents=True)
    _write_format_1_cache(cache)
    for refuse in (store.refuse_other_formats, store.open_store, store.read_cache):
        with pytest.raises(store.StoreFormatError, match=r"trajectories/0123abcd: trajectory cache written in float32 "
                                                         r"format 1 .*Delete that folder and rerun train_hgr"):
            refuse(cache)
    assert not store.shard_is_valid(cache, 0)  # its hash matches, its format does not
    (cache / "manifest.json").unlink()  # an interrupted old run: sidecars only
    with pytest.raises(store.StoreFormatError, match="shard_00000.json"):
        store.refuse_other_formats(cache)


def test_a_fresh_or_partial_cache_of_this_format_passes_the_format_check(tmp_path):
    store.refuse_other_formats(tmp_path)
    store.write_shard(tmp_path, 0, _rows([0]))
    store.shard_path(tmp_path, 1).with_suffix(".json").write_text("{not json")  # unreadable: resampled, not refused
    store.refuse_other_formats(tmp_path)
    assert store.shard_is_valid(tmp_path, 0) and not store.shard_is_valid(tmp_path, 1)
    with pytest.raises(FileNotFoundError, match="not a complete trajectory cache"):
        store.open_store(tmp_path)


def test_labels_splits_and_batches_read_a_store_as_they_read_a_dict(tmp_path):
    from training.run import add_labels, rows_of_split
    from training.trainer import batch_at

    written = _write_cache(tmp_path)
    rounded = {k: v.half().float() if k in store.HALF_FIELDS else v for k, v in written.items()}
    jobs = _jobs(6)
    data = add_labels(store.open_store(tmp_path), jobs, ("nudity",))
    assert torch.equal(data["labels"], add_labels(rounded, jobs, ("nudity",))["labels"])
    val = rows_of_split(data, jobs, "val")
    assert torch.equal(val, rows_of_split(rounded, jobs, "val")) and len(val) == 6
    from_store, from_dict = batch_at(data, val, "cpu"), batch_at(rounded, val, "cpu")
    assert set(from_store) == set(from_dict) == {"sigma", "labels", *store.HALF_FIELDS}
    assert all(torch.equal(from_store[k], from_dict[k]) for k in from_dict)
    with pytest.raises(KeyError, match="stored field"):
        data["sigma"] = torch.zeros(18)
    with pytest.raises(ValueError, match="needs 18 rows"):
        data["weights"] = torch.zeros(3)


def test_evaluation_on_a_store_equals_evaluation_on_its_rows_in_memory(tmp_path):
    from hgr_core import HGR, HGRConfig
    from training.run import add_labels
    from training.trainer import evaluate

    written = _write_cache(tmp_path)
    rounded = {k: v.half().float() if k in store.HALF_FIELDS else v for k, v in written.items()}
    jobs, categories = _jobs(6), ("nudity",)
    torch.manual_seed(0)
    hgr = HGR(HGRConfig(latent_channels=4, categories=categories, base_channels=8, channel_mult=(1,)))
    rows = torch.arange(18)
    on_store = evaluate(hgr, add_labels(store.open_store(tmp_path), jobs, categories), jobs, rows, categories, "cpu")
    in_memory = evaluate(hgr, add_labels(rounded, jobs, categories), jobs, rows, categories, "cpu")
    assert on_store.keys() == in_memory.keys()
    assert on_store["clean_scores"] == pytest.approx(in_memory["clean_scores"], rel=1e-5)
    assert on_store["clean_preservation_error"] == pytest.approx(in_memory["clean_preservation_error"], rel=1e-5)


def test_an_unreadable_shard_is_named_with_the_fix(tmp_path):
    _write_cache(tmp_path)
    store.shard_path(tmp_path, 1).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(ValueError, match="shard_00001.safetensors: not a readable trajectory shard .*rerun train_hgr"):
        store.open_store(tmp_path)
    with pytest.raises(ValueError, match=r"shards \[1\] are missing or corrupt"):
        store.read_cache(tmp_path)


def test_a_small_cache_is_read_into_memory_once_and_gives_the_lazy_reads_rows(tmp_path):
    _write_cache(tmp_path)
    lazy, loaded = store.open_store(tmp_path, preload_bytes=0), store.open_store(tmp_path)
    assert lazy.pixel_bytes() == 18 * len(store.HALF_FIELDS) * math.prod(LATENT) * 2  # float16 on disk
    assert not lazy.preloaded and loaded.preloaded
    assert not store.open_store(tmp_path, preload_bytes=lazy.pixel_bytes() - 1).preloaded
    rows = torch.tensor([17, 0, 5, 6, 6, 12])
    for name in store.HALF_FIELDS:
        assert torch.equal(loaded[name][rows], lazy[name][rows]) and loaded[name][rows].dtype == torch.float32
