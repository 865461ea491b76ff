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
    unconditional: eps_u                            (the empty prompt and the negatives keep their prediction)

so that the student's plain CFG eps_u + s * (eps_c* - eps_u) = eps_u + s * R(g) for every scale s.
Loss: mean squared error in eps space over both passes (unit scale at every sigma).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from hgr_core import HGR, eps_from_denoised, safecfg_step

FIELDS = ("x", "sigma", "eps_c", "eps_teacher", "eps_u", "prompt", "negative")


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
                         "prompt": prompt_ids.clone(), "negative": negative_ids.clone()})
        return [teacher_cond, *conds_out[1:]] if redirect else conds_out

    patched = model.clone()
    patched.set_model_sampler_pre_cfg_function(record, disable_cfg1_optimization=True)
    return patched


def negative_texts(settings: "TeacherSettings") -> list[str]:
    """The negatives the rows' ids index; "" (the scoring pass's negative) is id 0."""
    return list(dict.fromkeys(["", *settings.negatives]))


def stack_rows(rows: list[dict]) -> dict:
    return {k: torch.cat([r[k] for r in rows]) for k in FIELDS}


@torch.no_grad()
def record_teacher(backend, hgr: HGR, prompts: list[str], settings: TeacherSettings, batches: list[list[int]],
                   rows: list[dict] | None = None) -> dict:
    """Rows (FIELDS) of every SafeCFG teacher step of `batches` (prompt indices) appended to `rows`
    (e.g. the scoring pass's plain-CFG rows), plus "negatives": the negative texts the ids index."""
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
            seeds = [2**30 + settings.seed * 100_003 + i * settings.seeds + s for i in batch]  # not the scoring seeds
            model = recording_model(backend.model, hgr, rows, torch.tensor(batch),
                                    torch.full((len(batch),), negatives.index(negative)), redirect=True)
            sample_latents(backend, model, [prompts[i] for i in batch], [negative] * len(batch), seeds, cfg, steps,
                           sampler, settings.scheduler)
    data = stack_rows(rows)
    data["negatives"] = negatives
    return data


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
    eps_c, eps_t, eps_u = (data[k][index].to(device) for k in ("eps_c", "eps_teacher", "eps_u"))
    target = torch.cat([eps_c + w * (eps_t - eps_c), eps_u])
    context = torch.cat([contexts[data["prompt"][index]], negative_contexts[data["negative"][index]]]).to(device)
    x2, sigma2 = torch.cat([x, x]), torch.cat([sigma, sigma])
    denoised = net(base_model.apply_model, x2, sigma2, None, context)
    eps = (x2 - denoised.float()) / sigma2.view(-1, 1, 1, 1)
    return (eps - target).pow(2).mean()
