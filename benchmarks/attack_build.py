"""The attack benchmark's build: the token search, made once and cached (`python -m benchmarks.attacks --build`).

The token search (`attack_search`) is the attacker's construction, not a measurement of any defence: it
runs under plain CFG on dev prompts and dev noise seeds. Like a published attack prompt set
(Ring-A-Bell's, P4D's), it is made once and every evaluation reads it. The cache (`token_search.json`)
is keyed by everything the search depends on: the world's UNet and text encoder (sha256 of their files),
the categories, the dev prompts (`--dev-per-category`), the sampling it searched with and its budget.
An evaluation whose key differs searches again and replaces the cache (logged), so a cached search is
never used for a world or a budget it was not made for.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from hgr_core.files import atomic_write_json, file_sha256, stale_cache_keys

log = logging.getLogger(__name__)

FORMAT = "safecfg-attack-build/1"
FILE = "token_search.json"


def build_key(world, categories: list[str], dev_per_category: int, settings, budget) -> dict:
    """What the cached search depends on (settings: `AttackSettings`; budget: `SearchBudget`)."""
    from toyworld.world import FILES

    if world.weights_dir is None:
        raise ValueError("the attack build needs a toy world loaded from a weights folder (--toy-weights)")
    return {"format": FORMAT, "world": world.version,
            "unet_sha256": file_sha256(Path(world.weights_dir) / FILES["unet"]),
            "text_encoder_sha256": file_sha256(Path(world.weights_dir) / FILES["text"]),
            "categories": list(categories), "dev_per_category": dev_per_category,
            "sampling": {"cfg": settings.cfg, "sampler": settings.sampler, "scheduler": settings.scheduler},
            "search_budget": dataclasses.asdict(budget)}


def read_cached(build_dir: Path, key: dict) -> dict | None:
    """The cached search's suffixes if the cache was made for `key`, else None."""
    path = Path(build_dir) / FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("%s is not valid JSON: searching again", FILE)
        return None
    changed = stale_cache_keys(record.get("key", {}), key)
    if changed:
        log.info("cached token search in %s was made for other inputs (%s): searching again",
                 Path(build_dir).name, ", ".join(changed))
        return None
    return record["token_search"]


def token_search(build_dir: Path, key: dict, search) -> tuple[dict, bool]:
    """The search's suffixes for `key`: from the cache, or from `search()` (then cached atomically).
    Returns (suffixes, whether they came from the cache)."""
    cached = read_cached(build_dir, key)
    if cached is not None:
        log.info("token search read from %s/%s", Path(build_dir).name, FILE)
        return cached, True
    started = time.monotonic()
    found = search()
    record = {"key": key, "token_search": found, "seconds": round(time.monotonic() - started, 1)}
    atomic_write_json(Path(build_dir) / FILE, record, indent=1)
    return found, False
