"""Atomic file writes, and file hashes: the one implementation every writer and reader in the project uses.

A reader (ComfyUI's loader, a resumed training run, a user copying a file) never sees a
half-written file: the content goes to a temp file in the target's folder, is flushed to disk,
and is renamed over the target (`os.replace` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call `write(tmp_path)` to produce the file, then rename it onto `path`; returns `path`.

    The file gets the permissions a plain `open(path, "w")` would give it (0o666 minus the
    umask), also when `write` creates it owner-only (mkstemp, safetensors' `save_file`), so a
    ComfyUI running as another user can read it. The temp file is removed when `write` raises,
    so a failed write leaves the old file (or none).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    try:
        mode = os.stat(tmp).st_mode & 0o777  # what the umask made of 0o666
        write(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _create_temp(path: Path) -> str:
    """An empty, new temp file next to `path`, created with mode 0o666 so the umask applies."""
    for _ in range(100):
        tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp"))
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temp file next to {path}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, data, indent: int | None = 2) -> Path:
    """`data` as JSON plus a newline (nan written as NaN, which Python's json reads back)."""
    return atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


_HASH_CHUNK = 1 << 24


def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256 hex digest, read in chunks (a trajectory shard or a checkpoint never has to fit in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def stale_cache_keys(cached: dict, key: dict) -> list[str]:
    """The entries of a cache `key` whose JSON form differs from the `cached` record's (sorted; [] = fresh).
    Compared as JSON because records are read back from JSON (tuples come back as lists)."""
    return sorted(k for k in key if cached.get(k) != json.loads(json.dumps(key[k])))
