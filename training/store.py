"""The trajectory store: train_hgr's shard cache on disk and read back in batches (no ComfyUI import).

Format ``safecfg-trajectories/2`` (the manifest's and every shard's ``format``): one safetensors
file per shard with the recorded rows of its jobs, the per-pixel tensors (``HALF_FIELDS``: x, D_u,
g, g* - g) in float16 and the per-row fields in their exact dtype (sigma float32, job int64),
beside a sidecar JSON (format, sha256, rows, jobs); ``manifest.json`` lists the shards once all
exist and ``jobs.json`` the planned jobs. A recorded step of a C x H x W latent costs
``4 * C * H * W * 2 + 12`` bytes (SD1.5 at 512 px: 128 KiB), half of the float32 format 1.

Reading never holds a shard in memory: `TrajectoryStore` keeps the per-row fields of every row
(12 bytes a row, plus what a caller adds, e.g. labels) and reads the rows a batch asks for from
the shard files with positioned reads at the offsets of the safetensors header. Not a memory map:
pages of a map stay resident (and count towards the process's RSS) for as long as the file is
open, so a long-lived map grows with the rows touched, and reopening one per batch cost about
0.4 ms a shard here. Beyond those few bytes a row, memory holds one batch, whatever the number of
trajectories (`benchmarks.trajectory_memory` measures it). Caches of at most ``PRELOAD_BYTES``
(1 GiB; every toy-world cache) are read into memory once instead, for speed.

A cache in another format (float32 shards of format 1, which carry no format field) is refused
with `StoreFormatError`: delete its folder and rerun train_hgr with the same flags to resample it.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import sys
from collections.abc import MutableMapping
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file

from hgr_core import atomic_write, atomic_write_json, atomic_write_text, file_sha256

from .jobs import Job, Shard

log = logging.getLogger(__name__)

STORE_FORMAT = "safecfg-trajectories/2"
FIELDS = ("sigma", "x", "uncond_denoised", "g", "target_change", "job")
HALF_FIELDS = ("x", "uncond_denoised", "g", "target_change")  # per-pixel tensors, float16 on disk
ROW_DTYPES = {"sigma": torch.float32, "job": torch.int64}  # per-row fields, kept exact
JOBS_FILE = "jobs.json"  # the planned jobs, so a cache's rows can be labelled without the prompt files
MANIFEST = "manifest.json"
_DTYPES = {"F16": torch.float16, "F32": torch.float32, "I64": torch.int64}
# A cache whose per-pixel fields take at most this many bytes on disk is read into RAM once when
# opened (as float16) and batches are sliced from memory: a toy-world cache (tens of MB) then trains
# as fast as before the store existed, where reading each batch's rows from 32 shard files cost
# about a third of the demo's training time. Larger caches (real checkpoints: 128 KiB a recorded
# step at 512 px) are read lazily, so memory stays bounded by this limit plus one batch.
PRELOAD_BYTES = 1 << 30


class StoreFormatError(ValueError):
    """A trajectory cache written in another format than `STORE_FORMAT`."""


def shard_path(cache_dir: Path, index: int) -> Path:
    return Path(cache_dir) / f"shard_{index:05d}.safetensors"


def _sidecar(cache_dir: Path, index: int) -> Path:
    return shard_path(cache_dir, index).with_suffix(".json")


def bytes_per_row(latent_shape) -> int:
    """Bytes of one recorded step's tensors (headers aside): the float16 fields and the exact per-row ones."""
    pixels = 1
    for size in latent_shape:
        pixels *= int(size)
    return len(HALF_FIELDS) * pixels * 2 + sum(torch.empty(0, dtype=d).element_size() for d in ROW_DTYPES.values())


def _stored(name: str, values: torch.Tensor) -> torch.Tensor:
    """A field as written: float16 for the per-pixel tensors (refusing what float16 cannot hold), exact otherwise."""
    if name not in HALF_FIELDS:
        return values.to(ROW_DTYPES[name]).contiguous()
    half = values.to(torch.float16).contiguous()
    if not torch.isfinite(half).all():
        raise ValueError(f"{name}: values beyond float16's range (max |value| {values.abs().max().item():.4g}, "
                         f"float16 holds up to 65504); the trajectory store keeps per-pixel fields in float16")
    return half


def write_shard(cache_dir: Path, index: int, rows: dict[str, torch.Tensor]) -> None:
    """Write one shard's rows (`FIELDS`) and then its sidecar, each atomically."""
    if set(rows) != set(FIELDS):
        raise ValueError(f"a shard needs the fields {FIELDS}, got {sorted(rows)}")
    tensors = {name: _stored(name, values) for name, values in rows.items()}
    path = shard_path(cache_dir, index)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": STORE_FORMAT}))
    sidecar = {"format": STORE_FORMAT, "sha256": file_sha256(path), "rows": int(rows["job"].shape[0]),
               "jobs": sorted(set(rows["job"].tolist()))}
    atomic_write_json(_sidecar(cache_dir, index), sidecar, indent=None)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def shard_is_valid(cache_dir: Path, index: int) -> bool:
    """A shard counts only with a sidecar of this format whose hash matches the file (never trust a half-written one)."""
    path, sidecar = shard_path(cache_dir, index), _read_json(_sidecar(cache_dir, index))
    if not path.is_file() or not isinstance(sidecar, dict) or sidecar.get("format") != STORE_FORMAT:
        return False
    return sidecar.get("sha256") == file_sha256(path)


def adopt_shards(source_dir: Path, cache_dir: Path, indices) -> int:
    """Copy each valid shard `indices` of another cache that this one lacks (a plan that extends
    another's jobs and shards shares its first shards; `plan_hash` names the two apart). Written as
    `write_shard` writes, file then sidecar, each atomically; returns how many were copied."""
    copied = 0
    for i in indices:
        if shard_is_valid(cache_dir, i) or not shard_is_valid(source_dir, i):
            continue
        source = shard_path(source_dir, i)
        atomic_write(shard_path(cache_dir, i), lambda tmp, source=source: shutil.copyfile(source, tmp))  # streamed
        atomic_write_text(_sidecar(cache_dir, i), _sidecar(source_dir, i).read_text())
        copied += 1
    return copied


def refuse_other_formats(cache_dir: Path) -> None:
    """Raise StoreFormatError when the cache's manifest or any sidecar is of another format (e.g. float32 format 1)."""
    cache_dir = Path(cache_dir)
    for path in [cache_dir / MANIFEST, *sorted(cache_dir.glob("shard_*.json"))]:
        record = _read_json(path) if path.is_file() else None
        if not isinstance(record, dict) or record.get("format") == STORE_FORMAT:
            continue  # absent or unreadable: a shard still to sample, resampled like a corrupt one
        found = record.get("format")
        written = f"format {found}" if found else "float32 format 1"
        raise StoreFormatError(
            f"{cache_dir.parent.name}/{cache_dir.name}: trajectory cache written in {written} ({path.name}); "
            f"this SafeCFG reads {STORE_FORMAT} (float16). Delete that folder and rerun train_hgr with the same "
            "flags: it resamples the trajectories in the new format")


def write_manifest(cache_dir: Path, jobs: list[Job], shards: list[Shard], digest: str) -> dict:
    """List the complete cache's shards (with their rows and sampling) and write the jobs beside it."""
    sidecars = [json.loads(_sidecar(cache_dir, i).read_text()) for i in range(len(shards))]
    manifest = {"format": STORE_FORMAT, "plan": digest, "jobs": len(jobs),
                "trajectories": sum(len(s.jobs) for s in shards), "rows": sum(s["rows"] for s in sidecars),
                "fields": {name: "float16" if name in HALF_FIELDS else str(ROW_DTYPES[name]).removeprefix("torch.")
                           for name in FIELDS},
                "shards": {shard_path(cache_dir, i).name: {"sha256": c["sha256"], "rows": c["rows"], "sampler": s.sampler,
                                                           "scheduler": s.scheduler, "steps": s.steps}
                           for i, (s, c) in enumerate(zip(shards, sidecars))}}
    atomic_write_json(Path(cache_dir) / MANIFEST, manifest, indent=1)
    atomic_write_json(Path(cache_dir) / JOBS_FILE, [asdict(j) for j in jobs], indent=None)
    return manifest


class ShardFile:
    """One shard's safetensors header: where each field's rows lie in the file."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with open(path, "rb") as f:
                size = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(size))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path.name}: not a readable trajectory shard ({e}); rerun train_hgr to resample it") from None
        meta = header.pop("__metadata__", None) or {}
        if meta.get("format") != STORE_FORMAT:
            raise StoreFormatError(f"{path.parent.name}/{path.name}: shard of format {meta.get('format')!r}, "
                                   f"expected {STORE_FORMAT}; delete the cache folder and rerun train_hgr")
        self.fields = {name: (_DTYPES[t["dtype"]], tuple(t["shape"]), 8 + size + t["data_offsets"][0])
                       for name, t in header.items()}
        self.rows = self.fields["job"][1][0]

    def read(self, name: str) -> torch.Tensor:
        """A whole field (for the small per-row ones)."""
        return self.read_rows(name, torch.arange(self.rows))

    def read_rows(self, name: str, rows: torch.Tensor) -> torch.Tensor:
        """Rows `rows` (local indices, any order, repeats allowed) of field `name`, in its stored dtype."""
        dtype, shape, offset = self.fields[name]
        out = torch.empty((len(rows), *shape[1:]), dtype=dtype)
        row_bytes = out[0].numel() * out.element_size() if len(out) else 0
        buffer = memoryview(out.numpy()).cast("B")
        with open(self.path, "rb", buffering=0) as f:
            for first, end, row in _runs(rows.tolist()):  # one read per run of consecutive rows
                f.seek(offset + row * row_bytes)
                if f.readinto(buffer[first * row_bytes:end * row_bytes]) != (end - first) * row_bytes:
                    raise ValueError(f"{self.path.name}: truncated in {name}; rerun train_hgr to resample it")
        return out


def _runs(rows: list[int]):
    """(first, end, row): stretches rows[first:end] == row, row + 1, ... of consecutive rows."""
    first = 0
    for k in range(1, len(rows) + 1):
        if k == len(rows) or rows[k] != rows[k - 1] + 1:
            yield first, k, rows[first]
            first = k


def _row_index(rows, count: int) -> torch.Tensor:
    """Global row indices from a slice, an integer sequence or tensor, or a boolean mask (as tensors allow)."""
    if isinstance(rows, slice):
        return torch.arange(count)[rows]
    rows = torch.as_tensor(rows)
    if rows.dtype == torch.bool:
        rows = torch.nonzero(rows).flatten()
    if rows.ndim != 1 or rows.is_floating_point():
        raise TypeError(f"index store rows with a slice or a 1-D tensor of row numbers, got {rows.dtype} {tuple(rows.shape)}")
    rows = rows.long()
    if len(rows) and (rows.min() < 0 or rows.max() >= count):
        raise IndexError(f"rows must lie in [0, {count}), got {rows.min().item()}..{rows.max().item()}")
    return rows


class RowField:
    """A per-pixel field of a store, indexed like a tensor: `field[rows]` reads those rows as float32."""

    def __init__(self, store: "TrajectoryStore", name: str):
        self.store, self.name = store, name
        self.shape = (store.rows, *store.shards[0].fields[name][1][1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> torch.Tensor:
        return self.store.gather(self.name, rows)


class TrajectoryStore(MutableMapping):
    """A complete cache opened for reading, used like the dict of row tensors it replaces.

    `store[name]` is a tensor for the per-row fields (sigma, job and any a caller sets, such as
    labels) and a `RowField` for the per-pixel ones; `store[name][rows]` returns float32 rows.
    """

    def __init__(self, folder: Path, shards: list[ShardFile], preload_bytes: int = PRELOAD_BYTES):
        if sys.byteorder != "little":
            raise RuntimeError("the trajectory store reads safetensors' little-endian bytes as they are")
        self.folder, self.shards = Path(folder), shards
        shapes = {name: {s.fields[name][1][1:] for s in shards} for name in HALF_FIELDS}
        if not shards or any(len(found) != 1 for found in shapes.values()):
            raise ValueError(f"{self.folder.name}: a store needs shards of one latent shape, got {shapes}")
        counts = torch.tensor([s.rows for s in shards], dtype=torch.int64)
        self.starts = torch.cumsum(counts, 0) - counts  # first global row of each shard
        self.rows = int(counts.sum())
        self._per_row = {name: torch.cat([s.read(name) for s in shards]) for name in ROW_DTYPES}
        self._in_memory = {}  # per-pixel fields read whole (float16) when the cache is small (PRELOAD_BYTES)
        if self.pixel_bytes() <= preload_bytes:
            self._in_memory = {name: torch.cat([s.read(name) for s in shards]) for name in HALF_FIELDS}

    @property
    def preloaded(self) -> bool:
        """Whether the per-pixel fields were read into memory when the store opened (`PRELOAD_BYTES`)."""
        return bool(self._in_memory)

    def pixel_bytes(self) -> int:
        """Bytes the per-pixel fields take on disk (what a preload holds in RAM)."""
        return sum(math.prod(s.fields[name][1]) * s.fields[name][0].itemsize for s in self.shards for name in HALF_FIELDS)

    def gather(self, name: str, rows) -> torch.Tensor:
        """Rows of a per-pixel field by global index, as float32, reading only those rows from disk."""
        rows = _row_index(rows, self.rows)
        if name in self._in_memory:
            return self._in_memory[name][rows].float()
        shard = torch.searchsorted(self.starts, rows, right=True) - 1
        out = torch.empty((len(rows), *self[name].shape[1:]), dtype=torch.float32)
        for s in shard.unique().tolist():
            where = torch.nonzero(shard == s).flatten()
            out[where] = self.shards[s].read_rows(name, rows[where] - self.starts[s]).float()
        return out

    def __getitem__(self, name: str):
        if name in self._per_row:
            return self._per_row[name]
        if name in HALF_FIELDS:
            return RowField(self, name)
        raise KeyError(name)

    def __setitem__(self, name: str, values: torch.Tensor) -> None:
        if name in FIELDS:
            raise KeyError(f"{name} is a stored field of the trajectory cache and cannot be replaced")
        if len(values) != self.rows:
            raise ValueError(f"{name}: a per-row field needs {self.rows} rows, got {len(values)}")
        self._per_row[name] = values

    def __delitem__(self, name: str) -> None:
        if name in FIELDS:
            raise KeyError(f"{name} is a stored field of the trajectory cache and cannot be removed")
        del self._per_row[name]

    def __iter__(self):
        return iter([*self._per_row, *HALF_FIELDS])

    def __len__(self) -> int:
        return len(self._per_row) + len(HALF_FIELDS)


def open_store(cache_dir: Path, preload_bytes: int = PRELOAD_BYTES) -> TrajectoryStore:
    """The complete cache at `cache_dir` (its manifest lists the shards), opened for batched reading
    (read into RAM once if its per-pixel fields take at most `preload_bytes`)."""
    cache_dir = Path(cache_dir)
    refuse_other_formats(cache_dir)
    manifest = _read_json(cache_dir / MANIFEST)
    if not isinstance(manifest, dict):
        raise FileNotFoundError(f"{cache_dir.name}: not a complete trajectory cache (needs {MANIFEST}; rerun "
                                "train_hgr with the same flags to finish it)")
    store = TrajectoryStore(cache_dir, [ShardFile(cache_dir / name) for name in manifest["shards"]], preload_bytes)
    log.info("trajectory store %s: %d recorded steps in %d shards (%s)", cache_dir.name, store.rows, len(store.shards),
             "read into memory" if store.preloaded else "read lazily")
    return store


def read_cache(cache_dir: Path, preload_bytes: int = PRELOAD_BYTES) -> tuple[TrajectoryStore, list[Job]]:
    """A complete, verified cache's store and its jobs (``jobs.json``, written with the manifest), for
    tools that train on the same trajectories as the HGR (e.g. `benchmarks.trivial_baselines`)."""
    cache_dir = Path(cache_dir)
    manifest, jobs_file = cache_dir / MANIFEST, cache_dir / JOBS_FILE
    if not manifest.is_file() or not jobs_file.is_file():
        raise FileNotFoundError(f"{cache_dir.name}: not a complete trajectory cache (needs {MANIFEST} and "
                                f"{JOBS_FILE}; rerun train_hgr with the same flags to finish or refresh it)")
    refuse_other_formats(cache_dir)
    count = len(json.loads(manifest.read_text())["shards"])
    bad = [i for i in range(count) if not shard_is_valid(cache_dir, i)]
    if bad:
        raise ValueError(f"{cache_dir.name}: shards {bad[:5]} are missing or corrupt; rerun train_hgr to resample them")
    jobs = [Job(**{**j, "categories": tuple(j["categories"])}) for j in json.loads(jobs_file.read_text())]
    return open_store(cache_dir, preload_bytes), jobs
