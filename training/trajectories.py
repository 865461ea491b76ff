"""Trajectory generation for the shard cache (METHOD.md section 4; the cache itself: `training.store`).

Jobs (prompt, seed, guidance scale, negative prompt, target) are planned deterministically, split
into shards (`jobs.plan_shards`: each with its own sampler, scheduler and step count), and sampled
with ComfyUI's samplers through `RecordingGuider`, which evaluates the positive, negative and (for
harmful prompts) target conditioning (one per category of a summed concept target) in one batched call per step and records, in eps space:
sigma, x, D_u, g = eps_c - eps_u and target_change = g* - g.

Harmful prompts are sampled twice: under plain CFG (the states an HGR starts from) and steered by
the target guidance (the states it steers to). With an --on-policy HGR they are also sampled under
SafeCFG with that HGR (`Job.redirected`): the states a trained HGR's own, imperfect redirection
reaches, which neither of the other two visits (DAgger; the targets are the same). Every job's noise, the initial noise and the extra
noise of ancestral and SDE samplers, comes from its own seed, so a trajectory is the one a user
gets sampling that prompt alone with that seed. Each shard is written atomically with a sidecar
JSON (`store.write_shard`); a shard whose sidecar is missing or whose hash differs is regenerated,
so an interrupted or corrupted cache resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import warnings
from dataclasses import asdict

import comfy.sample
import comfy.samplers
import torch
from comfy.k_diffusion.sampling import BrownianTreeNoiseSampler

from hgr_core import eps_from_denoised, safecfg_step

from .jobs import Job, SamplingSettings, Shard, recorded_steps
from .store import FIELDS

log = logging.getLogger(__name__)

# Samplers whose extra noise is a Brownian tree (k-diffusion's SDE solvers; "_gpu" variants keep it on the GPU).
BROWNIAN_SAMPLERS = ("dpmpp_sde", "dpmpp_2m_sde", "dpmpp_2m_sde_heun", "dpmpp_3m_sde")


def check_sampling(settings: SamplingSettings) -> None:
    """Refuse sampler or scheduler names this ComfyUI does not have, naming the ones it does."""
    for kind, names, known in (("sampler", settings.samplers, comfy.samplers.SAMPLER_NAMES),
                               ("scheduler", settings.schedulers, comfy.samplers.SCHEDULER_NAMES)):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"unknown {kind} {unknown} (--{kind}s); this ComfyUI has: {', '.join(known)}")


def conditioning_shapes(backend, jobs: list[Job]) -> list[tuple]:
    """Per job, the conditioning shapes (`backend.conditioning_shape`) of its prompt, negative and
    target (None without a target) and of its target parts (`Job.target_parts`), for `jobs.plan_shards`
    to group by (a shard's jobs then also share the number of target parts).

    Prompts batch only when their encodings have one shape: a checkpoint's CLIP encodes in
    77-token chunks, so a prompt over 75 tokens is longer; the toy world pads every prompt to one length.
    """
    shapes: dict[str, tuple] = {}  # one entry per distinct text: small tuples, however many jobs

    def shape(text):
        if text is None:
            return None
        if text not in shapes:
            shapes[text] = backend.conditioning_shape(text)
        return shapes[text]

    return [(shape(j.prompt), shape(j.negative), shape(j.target_prompt), tuple(shape(t) for t in j.target_parts))
            for j in jobs]


def _job_record(job: Job) -> dict:
    record = asdict(job)
    if not job.redirected:  # plans without redirected jobs keep the hashes (and caches) they had
        del record["redirected"]
    if not job.target_parts:  # likewise plans without summed concept targets
        del record["target_parts"]
    return record


def plan_hash(jobs: list[Job], shards: list[Shard], settings: SamplingSettings, model_id: str,
              on_policy: str | None = None) -> str:
    """The cache's name: everything that decides its rows (`on_policy`: the redirecting HGR's sha256)."""
    parts = [model_id, asdict(settings), [_job_record(j) for j in jobs], [asdict(s) for s in shards]]
    if on_policy is not None:
        parts.append(on_policy)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def schedule(model, shard: Shard) -> torch.Tensor:
    """The sigmas ComfyUI's KSampler uses for this sampler, scheduler and step count (steps + 1 values)."""
    return comfy.samplers.KSampler(model, shard.steps, model.load_device, shard.sampler, shard.scheduler).sigmas


def _gaussian_per_job(x: torch.Tensor, seeds: list[int]):
    """k-diffusion's `default_noise_sampler` for each job alone: one generator per seed."""
    generators = [torch.Generator(device=x.device).manual_seed(s) for s in seeds]
    one = (1, *x.shape[1:])
    return lambda sigma, sigma_next: torch.cat(
        [torch.randn(one, dtype=x.dtype, layout=x.layout, device=x.device, generator=g) for g in generators])


def job_sampler(name: str, x: torch.Tensor, sigmas: torch.Tensor, seeds: list[int]):
    """ComfyUI's sampler `name`, its extra noise (ancestral, SDE) drawn per job from the job's seed as
    ComfyUI draws it for a batch of one, so batching changes no trajectory. x: the batch (its shape,
    dtype and device)."""
    sampler = comfy.samplers.sampler_object(name)
    function = getattr(sampler, "sampler_function", None)
    if function is None or "noise_sampler" not in inspect.signature(function).parameters:
        return sampler  # draws no extra noise
    if name.removesuffix("_gpu") in BROWNIAN_SAMPLERS:
        noise_sampler = BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=list(seeds),
                                                 cpu=not name.endswith("_gpu"))
    else:
        noise_sampler = _gaussian_per_job(x, seeds)
    sampler.extra_options = {**sampler.extra_options, "noise_sampler": noise_sampler}
    return sampler


def record_mask(jobs: list[Job], steps: int, limit: int | None) -> torch.Tensor | None:
    """(steps, B) bool: which jobs record each step (`jobs.recorded_steps`); None records every model call."""
    if limit is None:
        return None
    wanted = torch.zeros(steps, len(jobs), dtype=torch.bool)
    for b, job in enumerate(jobs):
        wanted[list(recorded_steps(steps, limit, job.seed)), b] = True
    return wanted


def concept_steered_cond(d_c: torch.Tensor, d_u: torch.Tensor, d_targets) -> torch.Tensor:
    """The conditional prediction (denoised) that concept targets steer to: d_c + sum_k (d_u - d_k),
    i.e. eps_c + sum_k (eps_u - eps_k): each concept used as a negative on top of the prompt's own
    guidance, one term per category of a summed target (`Job.target_parts`)."""
    return d_c + sum(d_u - d_t for d_t in d_targets)


class RecordingGuider(comfy.samplers.CFGGuider):
    """CFG (or target-steered CFG) that records what HGR training needs at model calls.

    Without a record mask every model call is recorded (second-order samplers such as heun call the
    model twice per step). With one, only step i's own state (x_i at sigma_i) is, for the jobs the
    mask picks: that is the model call just before the sampler's callback for step i (heun, dpm_2
    and the singlestep DPM-Solvers evaluate their second point after the callback).
    """

    def setup(self, jobs: list[Job], job_ids, device, wanted: torch.Tensor | None = None, hgr=None):
        self.scale = torch.tensor([j.cfg for j in jobs], device=device).view(-1, 1, 1, 1)
        self.steered = torch.tensor([j.steered for j in jobs], device=device).view(-1, 1, 1, 1)
        self.redirected = torch.tensor([j.redirected for j in jobs], device=device).view(-1, 1, 1, 1)
        self.any_redirected = any(j.redirected for j in jobs)  # a Python bool: no device sync per model call
        if self.any_redirected and hgr is None:
            raise ValueError("redirected jobs need the --on-policy HGR that redirects them")
        self.hgr = hgr
        self.kind = jobs[0].target_kind
        self.job_ids = torch.tensor(list(job_ids), dtype=torch.int64)
        self.wanted = wanted
        self.last_call = None
        self.records = []

    def on_step(self, i, denoised, x, total_steps):
        """ComfyUI's sampler callback after step i."""
        if self.wanted is not None and self.last_call is not None and i < len(self.wanted):
            self._record(self.last_call, self.wanted[i].nonzero().flatten())
        self.last_call = None

    def set_conds(self, positive, negative, targets=()):
        """targets: the target conditioning, or one per part of a summed concept target (`Job.target_parts`)."""
        conds = {"positive": positive, "negative": negative}
        conds.update({f"target_{k}": target for k, target in enumerate(targets)})
        self.targets = len(targets)
        self.inner_set_conds(conds)

    def _record(self, call, rows: torch.Tensor) -> None:
        if len(rows):
            timestep, x = call[0], call[1]
            on_device = rows.to(x.device)
            sigma = timestep.float().expand(len(x))  # (B,): every job of a shard is at the same sigma
            self.records.append((*(t[on_device].float().cpu() for t in (sigma, *call[1:])), self.job_ids[rows]))

    def predict_noise(self, x, timestep, model_options=None, seed=None):
        model_options = {} if model_options is None else model_options
        conds = [self.conds["positive"], self.conds["negative"]]
        conds += [self.conds[f"target_{k}"] for k in range(self.targets)]
        out = comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, model_options)
        d_c, d_u = out[0], out[1]
        g = eps_from_denoised(x, d_c, timestep) - eps_from_denoised(x, d_u, timestep)
        if len(out) == 2:
            change, steered_cond = torch.zeros_like(g), d_c
        elif self.kind == "safe":  # g* = eps_t - eps_u  =>  g* - g = eps_t - eps_c
            change = eps_from_denoised(x, out[2], timestep) - eps_from_denoised(x, d_c, timestep)
            steered_cond = out[2]
        else:  # concept: g* = eps_c - eps_t  =>  g* - g = eps_u - eps_t, summed over a summed target's parts
            change = sum(eps_from_denoised(x, d_u, timestep) - eps_from_denoised(x, d_t, timestep) for d_t in out[2:])
            steered_cond = concept_steered_cond(d_c, d_u, out[2:])
        call = (timestep, x, d_u, g, change)
        if self.wanted is None:
            self._record(call, torch.arange(len(self.job_ids)))
        else:
            self.last_call = call
        cond = torch.where(self.steered, steered_cond, d_c)
        if self.any_redirected:  # SafeCFG's conditional, as the ComfyUI node computes it
            sigma = timestep.float().expand(len(x))
            cond = torch.where(self.redirected, safecfg_step(self.hgr, x, sigma, d_c, d_u)[0], cond)
        return d_u + self.scale.to(d_u.dtype) * (cond - d_u)


def target_conditionings(backend, jobs: list[Job]) -> list:
    """A shard's target conditionings: none for clean jobs, one per part for summed concept targets
    (the shard's jobs share their number, `conditioning_shapes`), else the target prompt's."""
    first = jobs[0]
    if first.target_prompt is None:
        return []
    if first.target_parts:
        return [backend.conditioning([j.target_parts[k] for j in jobs]) for k in range(len(first.target_parts))]
    return [backend.conditioning([j.target_prompt for j in jobs])]


@torch.no_grad()  # frozen model; some samplers (uni_pc) build tensors that would otherwise track gradients
def sample_shard(backend, jobs: list[Job], shard: Shard, record_steps: int | None = None,
                 hgr=None) -> dict[str, torch.Tensor]:
    """Sample one shard's jobs (`shard.jobs` index `jobs`) as one batch; returns the recorded rows (FIELDS).

    hgr: the --on-policy HGR, needed for a shard of redirected jobs (on the model's device)."""
    model = backend.model
    mine = [jobs[i] for i in shard.jobs]
    guider = RecordingGuider(model)
    guider.set_conds(backend.conditioning([j.prompt for j in mine]), backend.conditioning([j.negative for j in mine]),
                     target_conditionings(backend, mine))
    sigmas = schedule(model, shard)
    guider.setup(mine, shard.jobs, model.load_device, record_mask(mine, len(sigmas) - 1, record_steps), hgr)
    empty = torch.zeros(1, *backend.latent_shape)
    noise = torch.cat([comfy.sample.prepare_noise(empty, j.seed) for j in mine])
    sampler = job_sampler(shard.sampler, noise.to(model.load_device), sigmas, [j.seed for j in mine])
    with warnings.catch_warnings():
        # torchsde warns when a float32 sigma misses its Brownian tree's bound by rounding ("Should
        # have tb<=t1 but got tb=14.614643096923828 and t1=14.614643"): harmless, and once per step.
        warnings.filterwarnings("ignore", message="Should have t", module="torchsde")
        guider.sample(noise, torch.zeros_like(noise), sampler, sigmas, callback=guider.on_step, disable_pbar=True,
                      seed=mine[0].seed)
    rows = {name: torch.cat(column) for name, column in zip(FIELDS, zip(*guider.records))}
    assert set(rows["job"].tolist()) == set(shard.jobs), f"{shard.sampler}: a job recorded no step"
    return rows
