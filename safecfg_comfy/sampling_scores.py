"""Harm scores for free while sampling, keyed by the content of the latent they belong to.

SafeCFG's hook measures d_t at every step (no extra model evaluation). Handing that to a node
downstream of the sampler is a caching problem: ComfyUI caches node outputs, reruns only what
changed, and may run several samplers in one graph or a queue of prompts. So scores are never
"the last run's". Each sampling run records its steps in its own `RunState` (created by the
OUTER_SAMPLE wrapper, `guards.install`), and when the run returns, every output image's score is
stored under a SHA-256 of that image's latent content (shape, dtype and bytes):

- a re-run with a changed prompt or seed makes a different latent, so the node looks up a new key;
- two samplers in one graph, a batch, or a queue each store under their own latents' keys;
- a cached sampler whose inputs did not change hands on the identical latent, whose key is still
  here (unless evicted; then the lookup misses);
- a latent edited after sampling (upscaled, blended, decoded and re-encoded) has no key: the
  lookup misses and the gate fails closed (score such images with SafeCFG: Detect).

The store keeps the newest `MAX_IMAGES` images per process (a bounded LRU).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from ._core import hgr_core
from .compat import hgr_file_name

MAX_IMAGES = 1024  # harm map + scores per image: ~16 KB for SD1.5 (64x64 latents), 64 KB for SDXL


@dataclass(frozen=True)
class ImageRecord:
    """SafeCFG's measurements for one sampled image, by one HGR."""

    hgr_file: str
    metadata: dict
    categories: tuple[str, ...]
    score: float
    coverage: float
    category_scores: torch.Tensor  # (K,)
    harm_map: torch.Tensor  # (h, w)


def latent_key(latent: torch.Tensor) -> str:
    """SHA-256 of one image's latent: shape, dtype and bytes (float32 on the CPU)."""
    data = latent.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha256(repr(tuple(data.shape)).encode())
    digest.update(data.numpy().tobytes())
    return digest.hexdigest()


class ScoreStore:
    """A bounded, thread-safe map latent key -> records (one per HGR that scored the image)."""

    def __init__(self, max_images: int = MAX_IMAGES):
        self.max_images = max_images
        self._records: OrderedDict[str, tuple[ImageRecord, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: str, records: tuple[ImageRecord, ...]) -> None:
        with self._lock:
            self._records[key] = records
            self._records.move_to_end(key)
            while len(self._records) > self.max_images:
                self._records.popitem(last=False)

    def get(self, key: str) -> tuple[ImageRecord, ...] | None:
        with self._lock:
            records = self._records.get(key)
            if records is not None:
                self._records.move_to_end(key)
            return records

    def __len__(self) -> int:
        return len(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


STORE = ScoreStore()


class RunScores:
    """The per-step harm of one sampling run, per SafeCFG hook (stacked SafeCFGApply nodes: several)."""

    def __init__(self):
        self.by_hook: dict[int, tuple] = {}  # id(hook) -> (hgr, HarmRecorder)

    def record(self, hook, hgr, sigma, harm) -> None:
        entry = self.by_hook.get(id(hook))
        if entry is None:
            entry = self.by_hook[id(hook)] = (hgr, hgr_core.HarmRecorder.for_hgr(hgr))
        entry[1](sigma, harm)

    def store(self, output: torch.Tensor, store: ScoreStore = STORE) -> int:
        """Store every output image's records under its latent key; returns how many images."""
        if not self.by_hook or output.ndim < 2:
            return 0
        results = [(hgr, recorder.harm()) for hgr, recorder in self.by_hook.values()]
        batch = output.shape[0]
        if any(harm.total.score.shape[0] != batch for _, harm in results):
            return 0  # the steps saw another batch than the output (a packed multi-latent run): store nothing
        for i in range(batch):
            records = tuple(ImageRecord(hgr_file_name(hgr), dict(hgr.metadata), tuple(hgr.config.categories),
                                        float(harm.total.score[i]), float(harm.total.coverage[i]),
                                        harm.categories[i].clone(), harm.harm_map[i].clone())
                            for hgr, harm in results)
            store.put(latent_key(output[i]), records)
        return batch


def lookup(samples: torch.Tensor, store: ScoreStore = STORE) -> list[tuple[ImageRecord, ...] | None]:
    """The records of each image of a LATENT batch, None where this process never sampled it."""
    return [store.get(latent_key(samples[i])) for i in range(samples.shape[0])]


MISSING = ("flagged: no SafeCFG score for this latent (it was not sampled through SafeCFG: Apply in this server "
           "process, was changed after sampling, or was evicted from the score store); fail closed, or score it "
           "with SafeCFG: Detect")


def _harm_of(records: list[ImageRecord | None], categories: tuple[str, ...], map_shape) -> hgr_core.GenerationHarm:
    """Stack per-image records into a GenerationHarm; a missing image gets score NaN and coverage 0."""
    nan, k = float("nan"), len(categories)
    score = torch.tensor([r.score if r else nan for r in records])
    coverage = torch.tensor([r.coverage if r else 0.0 for r in records])
    cats = torch.stack([r.category_scores if r else torch.full((k,), nan) for r in records])
    maps = torch.stack([r.harm_map if r else torch.ones(map_shape) for r in records])
    return hgr_core.GenerationHarm(hgr_core.GenerationScore(score, coverage), cats, maps)


def sampling_verdicts(samples: torch.Tensor, operating_point: str, custom: float | None = None,
                      store: ScoreStore = STORE) -> hgr_core.HarmVerdicts:
    """Verdicts for a LATENT batch from the scores recorded while it was sampled.

    With records by several HGRs (stacked SafeCFGApply nodes) an image is flagged when any HGR
    flags it; scores, categories and the map shown are the first HGR's, the others are in `extra`.
    With no record for any image there is no HGR to read a threshold from: every image is flagged.
    """
    if samples.ndim < 2 or samples.shape[0] == 0:
        raise ValueError(f"SafeCFG: Sampling Score needs a non-empty LATENT batch, got shape {tuple(samples.shape)}")
    found = lookup(samples, store)
    first = next((r for r in found if r), None)
    if first is None:
        threshold = hgr_core.Threshold(float("nan"), "none: no image of this batch was scored while sampling")
        verdicts = hgr_core.judge(_harm_of(list(found), (), tuple(samples.shape[-2:])), (), threshold, "sampling", "none")
        verdicts.reasons = [MISSING] * len(found)
        return verdicts
    per_hgr = []
    for h, lead in enumerate(first):
        records = [r[h] if r and len(r) > h else None for r in found]
        threshold = hgr_core.choose_threshold(lead.metadata, operating_point, custom)
        harm = _harm_of(records, lead.categories, tuple(lead.harm_map.shape))
        verdicts = hgr_core.judge(harm, lead.categories, threshold, "sampling", lead.hgr_file)
        verdicts.reasons = [MISSING if r is None else why for r, why in zip(records, verdicts.reasons)]
        per_hgr.append(verdicts)
    main = per_hgr[0]
    for other in per_hgr[1:]:
        main.flags = main.flags | other.flags
        main.reasons = [a if not o.startswith("flagged") else f"{a}; {other.hgr}: {o}" for a, o in zip(main.reasons, other.reasons)]
    main.extra["other_hgrs"] = [v.summary() for v in per_hgr[1:]]
    return main
