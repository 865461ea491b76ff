"""Trajectory generation and its shard cache (METHOD.md section 4).

Jobs (prompt, seed, guidance scale, negative prompt, target) are planned deterministically, split
into shards, and sampled with ComfyUI's samplers through `RecordingGuider`, which evaluates the
positive, negative and (for harmful prompts) target conditioning in one batched call per step and
records, in eps space:  sigma, x, D_u, g = eps_c - eps_u and target_change = g* - g.

Harmful prompts are sampled twice: under plain CFG (the states an HGR starts from) and steered by
the target guidance (the states it steers to). Each shard is written atomically with a sidecar
JSON (sha256, rows); a shard whose sidecar is missing or whose hash differs is regenerated, so an
interrupted or corrupted cache resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import comfy.sample
import comfy.samplers
import torch
from safetensors.torch import load_file, save_file

from hgr_core import eps_from_denoised

from .jobs import Job, SamplingSettings

log = logging.getLogger(__name__)

FIELDS = ("sigma", "x", "uncond_denoised", "g", "target_change", "job")


def shard_jobs(jobs: list[Job], batch_size: int) -> list[list[int]]:
    """Job indices per shard; a shard holds jobs of one kind (clean or harmful) so it batches."""
    shards = []
    for harmful in (True, False):
        indices = [i for i, j in enumerate(jobs) if bool(j.categories) == harmful]
        shards += [indices[k:k + batch_size] for k in range(0, len(indices), batch_size)]
    return shards


def plan_hash(jobs: list[Job], settings: SamplingSettings, model_id: str) -> str:
    payload = json.dumps([model_id, asdict(settings), [asdict(j) for j in jobs]], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class RecordingGuider(comfy.samplers.CFGGuider):
    """CFG (or target-steered CFG) that records what HGR training needs at every model call."""

    def setup(self, jobs: list[Job], device):
        self.scale = torch.tensor([j.cfg for j in jobs], device=device).view(-1, 1, 1, 1)
        self.steered = torch.tensor([j.steered for j in jobs], device=device).view(-1, 1, 1, 1)
        self.kind = jobs[0].target_kind
        self.records = []

    def set_conds(self, positive, negative, target=None):
        conds = {"positive": positive, "negative": negative}
        if target is not None:
            conds["target"] = target
        self.inner_set_conds(conds)

    def predict_noise(self, x, timestep, model_options={}, seed=None):
        conds = [self.conds["positive"], self.conds["negative"]]
        if "target" in self.conds:
            conds.append(self.conds["target"])
        out = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
        d_c, d_u = out[0], out[1]
        g = eps_from_denoised(x, d_c, timestep) - eps_from_denoised(x, d_u, timestep)
        if len(out) == 2:
            change, steered_cond = torch.zeros_like(g), d_c
        elif self.kind == "safe":  # g* = eps_t - eps_u  =>  g* - g = eps_t - eps_c
            change = eps_from_denoised(x, out[2], timestep) - eps_from_denoised(x, d_c, timestep)
            steered_cond = out[2]
        else:  # concept: g* = eps_c - eps_t  =>  g* - g = eps_u - eps_t
            change = eps_from_denoised(x, d_u, timestep) - eps_from_denoised(x, out[2], timestep)
            steered_cond = d_u + d_c - out[2]
        self.records.append((timestep.float().cpu(), x.float().cpu(), d_u.float().cpu(), g.cpu(), change.cpu()))
        cond = torch.where(self.steered, steered_cond, d_c)
        return d_u + self.scale.to(d_u.dtype) * (cond - d_u)


def _conditioning(backend, texts):
    return backend.conditioning(texts)


def sample_shard(backend, jobs: list[Job], job_ids: list[int], settings: SamplingSettings) -> dict[str, torch.Tensor]:
    """Sample one shard's jobs as one batch; returns stacked per-step rows."""
    model = backend.model
    guider = RecordingGuider(model)
    has_target = jobs[0].target_prompt is not None
    guider.set_conds(_conditioning(backend, [j.prompt for j in jobs]), _conditioning(backend, [j.negative for j in jobs]),
                     _conditioning(backend, [j.target_prompt for j in jobs]) if has_target else None)
    guider.setup(jobs, model.load_device)
    empty = torch.zeros(1, *backend.latent_shape)
    noise = torch.cat([comfy.sample.prepare_noise(empty, j.seed) for j in jobs])
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), settings.scheduler, settings.steps)
    sampler = comfy.samplers.sampler_object(settings.sampler)
    guider.sample(noise, torch.zeros_like(noise), sampler, sigmas, disable_pbar=True, seed=jobs[0].seed)
    columns = list(zip(*guider.records))
    n = len(jobs)
    rows = {name: torch.cat(col) for name, col in zip(FIELDS[:5], columns)}
    rows["job"] = torch.tensor(job_ids, dtype=torch.int64).repeat(len(guider.records))
    assert rows["x"].shape[0] == n * len(guider.records)
    return rows


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def shard_path(cache_dir: Path, index: int) -> Path:
    return cache_dir / f"shard_{index:05d}.safetensors"


def shard_is_valid(cache_dir: Path, index: int) -> bool:
    """A shard counts only with a sidecar whose hash matches the file (never trust a half-written one)."""
    path, sidecar = shard_path(cache_dir, index), shard_path(cache_dir, index).with_suffix(".json")
    if not (path.is_file() and sidecar.is_file()):
        return False
    try:
        return json.loads(sidecar.read_text())["sha256"] == _sha256(path)
    except (OSError, ValueError, KeyError):
        return False


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_shard(cache_dir: Path, index: int, rows: dict[str, torch.Tensor]) -> None:
    path = shard_path(cache_dir, index)
    _write_atomic(path, lambda tmp: save_file({k: v.contiguous() for k, v in rows.items()}, str(tmp)))
    sidecar = {"sha256": _sha256(path), "rows": int(rows["job"].shape[0]), "jobs": sorted(set(rows["job"].tolist()))}
    _write_atomic(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(sidecar)))


def read_shards(cache_dir: Path, count: int) -> dict[str, torch.Tensor]:
    shards = [load_file(str(shard_path(cache_dir, i))) for i in range(count)]
    return {name: torch.cat([s[name] for s in shards]) for name in FIELDS}


def write_manifest(cache_dir: Path, jobs: list[Job], shards: list[list[int]], digest: str) -> dict:
    sidecars = [json.loads(shard_path(cache_dir, i).with_suffix(".json").read_text()) for i in range(len(shards))]
    manifest = {"plan": digest, "jobs": len(jobs), "trajectories": sum(len(s) for s in shards),
                "rows": sum(s["rows"] for s in sidecars),
                "shards": {shard_path(cache_dir, i).name: s["sha256"] for i, s in enumerate(sidecars)}}
    _write_atomic(cache_dir / "manifest.json", lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))
    return manifest
