"""The teacher of the safety LoRA (METHOD.md section 6.3): the frozen model sampled with SafeCFG,
and the student's loss against it.

States: (a) the scoring pass's plain-CFG trajectories of every pool prompt (`pseudo_labels`,
recorded on the way: the states a harmful prompt starts from), and (b) SafeCFG teacher
trajectories (the frozen UNet + HGR at strength 1) of the prompts with a pseudo-label weight above
zero, with a sampler, step count, guidance scale and negative drawn per batch from what users
pick, so the states x_t are where the student will be sampled once it has learnt to steer there
itself. Unflagged prompts get no teacher pass: for them SafeCFG is CFG up to the HGR's clean
preservation error, and their targets are the frozen eps_c anyway. At every model call a
pre-CFG hook records, in eps space:

    x, sigma, eps_c (frozen), eps_c' = eps_u + R(g) (SafeCFG's conditional), eps_u (frozen, on the negative)

and returns SafeCFG's prediction so sampling continues on the teacher's path. The student's
targets at those states, with w the prompt's pseudo-label weight:

    conditional:   eps_c + w * (eps_c' - eps_c)      (w = 1: eps_u + R(g); w = 0: frozen eps_c)
    unconditional: eps_u                            (the empty prompt keeps its prediction; negatives: below)

so that the student's plain CFG eps_u + s * (eps_c* - eps_u) = eps_u + s * R(g) for every scale s.
Loss: mean squared error in eps space over both passes (unit scale at every sigma).

Negatives. The student's conditional pass never sees the negative, but SafeCFG's change
R(g) - g does depend on it: measured on the toy world along the LoRA's own path with the negative
"blurry, low quality" at cfg 7, the change with that negative is up to 35% longer than with the
empty one (cosine 0.94-0.99; the anti-blur direction, amplified by the scale, sharpens a mark
already forming, and SafeCFG removes that too). Averaging both targets in the conditional pass
taught the LoRA the empty negative's change, and half of the images under that negative kept their
harm. So the negative's share is moved to the pass that sees the negative: for a trajectory
sampled with negative n != "" at scale s, with c0 = the change against the frozen empty prompt
and cn = the change against n at the same state,

    conditional:   eps_c + w * c0                         (the same for every negative)
    unconditional: eps_n - w * s / (s - 1) * (cn - c0)    (n's own prediction where cn == c0)

which makes the student's CFG at scale s equal SafeCFG's with that negative exactly
(s * (eps_c + c0) - (s - 1) * eps_n* = eps_n + s * (g_n + cn)); at another scale s' the
unconditional share is off by a factor (s/(s-1)) / (s'/(s'-1)). The empty negative's rows are
unchanged (cn == c0).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from hgr_core import HGR, eps_from_denoised, safecfg_step

FIELDS = ("x", "sigma", "eps_c", "eps_teacher", "eps_u", "eps_u_shift", "prompt", "negative")
TARGETS_VERSION = 2  # 2: a non-empty negative's share of the change moves to the unconditional pass


@dataclass(frozen=True)
class TeacherSettings:
    seeds: int = 1  # trajectories per prompt
    samplers: tuple[str, ...] = ("euler", "euler_ancestral", "dpmpp_2m", "ddim", "heun")
    scheduler: str = "normal"
    steps_min: int = 10
    steps_max: int = 20
    cfg_min: float = 3.0
    cfg_max: float = 12.0
    negatives: tuple[str, ...] = ("", "", "blurry, low quality")  # drawn per trajectory; "" twice as often
    batch: int = 64
    seed: int = 0


def recording_model(model, hgr: HGR, rows: list | None, prompt_ids: torch.Tensor, negative_ids: torch.Tensor,
                    redirect: bool, on_score=None):
    """A clone of `model` whose pre-CFG hook evaluates SafeCFG at every model call, appends one row
    block to `rows` (None: records nothing) and passes the step's `StepHarm` to on_score(sigma, harm).

    redirect=True samples the teacher's path (SafeCFG); False leaves the prediction as it was, so
    sampling is plain CFG bit for bit while the HGR watches (the scoring pass).
    """

    def record(args):
        conds_out, x, sigma = args["conds_out"], args["input"], args["sigma"]
        with torch.no_grad():
            teacher_cond, harm = safecfg_step(hgr, x, sigma, conds_out[0], conds_out[1], 1.0)
        if on_score is not None:
            on_score(sigma, harm)
        if rows is not None:
            rows.append({"x": x.float().cpu(), "sigma": sigma.float().reshape(-1).expand(x.shape[0]).cpu(),
                         "eps_c": eps_from_denoised(x, conds_out[0], sigma).cpu(),
                         "eps_teacher": eps_from_denoised(x, teacher_cond, sigma).cpu(),
                         "eps_u": eps_from_denoised(x, conds_out[1], sigma).cpu(),
                         "eps_u_shift": torch.zeros(x.shape, dtype=torch.float32),
                         "prompt": prompt_ids.clone(), "negative": negative_ids.clone()})
        return [teacher_cond, *conds_out[1:]] if redirect else conds_out

    patched = model.clone()
    patched.set_model_sampler_pre_cfg_function(record, disable_cfg1_optimization=True)
    return patched


def negative_texts(settings: "TeacherSettings") -> list[str]:
    """The negatives the rows' ids index; "" (the scoring pass's negative) is id 0."""
    return list(dict.fromkeys(["", *settings.negatives]))


def stack_rows(rows: list[dict]) -> dict:
    """FIELDS concatenated over row blocks ({} for none: a rank whose share had no batch)."""
    return {k: torch.cat([r[k] for r in rows]) for k in FIELDS} if rows else {}


def merge_rows(parts: list[dict]) -> dict:
    """Row dicts (FIELDS + "negatives") concatenated in order; empty parts ({} or only "negatives") add nothing."""
    negatives = {tuple(p["negatives"]) for p in parts if "negatives" in p}
    if len(negatives) > 1:
        raise ValueError("row parts index different negatives")
    full = [p for p in parts if "sigma" in p]
    return {**{k: torch.cat([p[k] for p in full]) for k in FIELDS}, "negatives": list(negatives.pop())}


@torch.no_grad()
def record_teacher(backend, hgr: HGR, prompts: list[str], settings: TeacherSettings, batches: list[list[int]],
                   rows: list[dict] | None = None, share: tuple[int, int] = (0, 1)) -> dict:
    """Rows (FIELDS) of every SafeCFG teacher step of `batches` (prompt indices) appended to `rows`
    (e.g. the scoring pass's plain-CFG rows), plus "negatives": the negative texts the ids index.
    share (rank, world): sample only batch i with i % world == rank (the draws are the same for every rank)."""
    from safecfg_comfy.sampling import sample_latents  # ComfyUI's runtime: imported once setup_comfyui has run

    negatives = negative_texts(settings)
    rows = list(rows or [])
    draw = random.Random(settings.seed)
    for b, batch in enumerate(batches):
        for s in range(settings.seeds):
            sampler = draw.choice(settings.samplers)
            steps = draw.randint(settings.steps_min, settings.steps_max)
            cfg = draw.uniform(settings.cfg_min, settings.cfg_max)
            negative = draw.choice(settings.negatives)  # one per batch: the batch shares one conditioning shape
            if b % share[1] != share[0]:
                continue
            seeds = [2**30 + settings.seed * 100_003 + i * settings.seeds + s for i in batch]  # not the scoring seeds
            model = recording_model(backend.model, hgr, rows, torch.tensor(batch),
                                    torch.full((len(batch),), negatives.index(negative)), redirect=True)
            first_row = len(rows)
            sample_latents(backend, model, [prompts[i] for i in batch], [negative] * len(batch), seeds, cfg, steps,
                           sampler, settings.scheduler)
            if negative:
                empty = backend.conditioning([""])[0][0]
                for row in rows[first_row:]:
                    move_negative_share(backend, hgr, row, cfg, empty)
    return {**stack_rows(rows), "negatives": negatives}


def frozen_denoised(backend, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """The frozen UNet's denoised prediction (float32, on x's device) at states x (B, C, H, W), sigma (B,)
    for a cross-attention context (B or 1, tokens, dim)."""
    base = backend.model.model
    device = next(base.parameters()).device
    out = base.apply_model(x.to(device), sigma.to(device), c_crossattn=context.to(device).expand(x.shape[0], -1, -1))
    return out.float().to(x.device)


def redirected_eps(hgr: HGR, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
    """SafeCFG's conditional eps_u + R(g) (strength 1) from denoised predictions, on x's device."""
    device = next(hgr.parameters()).device
    new_cond, _ = safecfg_step(hgr, *(t.to(device) for t in (x, sigma, cond, uncond)), 1.0)
    return eps_from_denoised(x, new_cond.to(x.device), sigma)


@torch.no_grad()
def move_negative_share(backend, hgr: HGR, row: dict, cfg: float, empty_context: torch.Tensor) -> None:
    """Rewrite a row recorded with a non-empty negative at scale `cfg` (module docstring, "Negatives"):
    eps_teacher becomes eps_c + c0 (the change against the frozen empty prompt, whose context is
    `empty_context`), eps_u becomes eps_n - cfg / (cfg - 1) * (cn - c0). The pseudo-label weight w is
    applied later, in `student_loss`, which scales both the conditional change and this share by w.
    """
    if cfg <= 1:
        raise ValueError(f"a teacher trajectory at guidance scale {cfg:g} has no CFG to redirect; use --cfg-min above 1")
    x, sigma, eps_c = row["x"], row["sigma"], row["eps_c"]
    cond = x - sigma.view(-1, 1, 1, 1) * eps_c
    eps_empty_teacher = redirected_eps(hgr, x, sigma, cond, frozen_denoised(backend, x, sigma, empty_context))
    change_empty, change_negative = eps_empty_teacher - eps_c, row["eps_teacher"] - eps_c
    row["eps_teacher"] = eps_empty_teacher
    row["eps_u_shift"] = -cfg / (cfg - 1) * (change_negative - change_empty)


def encode_texts(backend, texts: list[str]) -> torch.Tensor:
    """(N, tokens, dim) cross-attention context of each text (one conditioning shape for all)."""
    return torch.cat([backend.conditioning([t])[0][0].float().cpu() for t in texts])


def student_loss(net, base_model, data: dict, weights: torch.Tensor, contexts: torch.Tensor,
                 negative_contexts: torch.Tensor, index: torch.Tensor, device) -> torch.Tensor:
    """MSE in eps space of the student (base UNet + LoRA, called through `net`) against the targets at rows `index`.

    net(run, *args) runs `run(*args)` (`LoRA.forward`), so under DDP the forward goes through the
    wrapper and the LoRA's gradients are synchronised.
    """
    x, sigma = data["x"][index].to(device), data["sigma"][index].to(device)
    w = weights[data["prompt"][index]].to(device).view(-1, 1, 1, 1)
    eps_c, eps_t, eps_u, shift = (data[k][index].to(device) for k in ("eps_c", "eps_teacher", "eps_u", "eps_u_shift"))
    target = torch.cat([eps_c + w * (eps_t - eps_c), eps_u + w * shift])
    context = torch.cat([contexts[data["prompt"][index]], negative_contexts[data["negative"][index]]]).to(device)
    x2, sigma2 = torch.cat([x, x]), torch.cat([sigma, sigma])
    denoised = net(base_model.apply_model, x2, sigma2, None, context)
    eps = (x2 - denoised.float()) / sigma2.view(-1, 1, 1, 1)
    return (eps - target).pow(2).mean()
