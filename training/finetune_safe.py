"""Unsupervised safe fine-tuning (METHOD.md section 6): a safety LoRA from an unlabelled prompt pool.

Examples:

    # the toy world (CPU, a few minutes): the pool mixes harmful and clean training prompts
    python -m training.finetune_safe --toy --hgr tests/data/toy_hgr.safetensors \\
        --pool runs/prompts/pool_train.csv --output runs/toy_safety_lora.safetensors

    # a real SD1.x checkpoint, on your GPU, straight into ComfyUI's models/loras
    python -m training.finetune_safe --checkpoint ComfyUI/models/checkpoints/v1-5.safetensors \\
        --hgr ComfyUI/models/hgr/sd15.safetensors --pool mixed_prompts.txt \\
        --output ComfyUI/models/loras/sd15_safety.safetensors

    torchrun --nproc_per_node 2 -m training.finetune_safe ...   # DDP (gloo on CPU): the ranks share scoring and sampling; rank 0 writes

Steps (each named in `main`), with the choices written down:
1. Read the pool (`prompt_data.read_pool`: only the prompt column; a label column is never read).
2. Pseudo-labels (`pseudo_labels`): each prompt sampled under plain CFG (euler/normal, cfg 5, 10
   steps, `--score-seeds` seeds); the HGR's `generation_score` against its stored threshold
   (`--threshold` overrides); hard labels by default, `--labels soft` weights by
   sigmoid((score - tau) / T). Reported: counts per category, a histogram PNG, and, where the file
   has a category column (hidden ground truth), precision and recall, computed after the labels.
3. States and targets (`teacher`): the scoring pass's plain-CFG states of every prompt, plus
   SafeCFG (frozen UNet + HGR) teacher trajectories of the flagged prompts with samplers, steps,
   guidance and negatives drawn from what users pick; each model call records x_t and the targets.
4. Student: base UNet + LoRA on the attention projections (`lora`), up initialised to zero,
   trained with an eps-space MSE on the teacher's states: flagged prompts learn eps_u + R(g),
   the rest their frozen eps_c, the empty prompt its frozen eps_u; a non-empty negative's share of
   the change goes to its unconditional pass (`teacher`, "Negatives"). The loop is
   `training.loop.optimise` (AdamW, warm-up + cosine, clipping, EMA, checkpoints, --resume, DDP).
   `--rounds` (default 2): each round after the first adds the student's own sampling paths over
   the whole pool with the teacher's targets there (`rollouts`, DAgger), and trains on.
5. Export the EMA LoRA in ComfyUI's key format, atomically, with metadata naming the base model,
   the HGR (path, sha256, threshold) and the pseudo-label summary.

Supported bases: UNets whose conditioning is cross-attention only (the toy world, SD1.x, SD2.x);
SDXL's extra vector conditioning is refused with a message (not implemented yet).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

import torch  # noqa: E402

from hgr_core import file_sha256  # noqa: E402
from safecfg_comfy.locate import setup_comfyui  # noqa: E402

from . import prompt_data  # noqa: E402
from .cli import choose_device  # noqa: E402
from .flags import (add_optimisation_flags, int_range, name_list, positive_int, safetensors_output,  # noqa: E402
                    start_cli)
from .loop import OptimConfig, all_sum, barrier, init_distributed  # noqa: E402

log = logging.getLogger("finetune_safe")

TEACHER_MIN_WEIGHT = 0.05  # prompts below it keep only their plain-CFG states (their target is ~ frozen eps_c)
# Sized so the toy world fine-tunes in under 10 minutes on a shared 2-core CPU (README, "Safety LoRA").
DEFAULT_ROUNDS = 2  # chosen on the sweep's dev split (README, "Safety LoRA"): the second round fixed the negative-prompt leak
DEFAULTS = OptimConfig(steps=200, batch_size=32, lr=3e-3, weight_decay=0.0, warmup=20, ema_decay=0.99, eval_every=50)


def build_parser() -> argparse.ArgumentParser:
    from .pseudo_labels import ScoringSettings
    from .teacher import TeacherSettings

    p = argparse.ArgumentParser(prog="python -m training.finetune_safe", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Fine-tune a safety LoRA from an unlabelled prompt pool with an HGR as teacher.")
    model = p.add_argument_group("model").add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", type=Path, help="checkpoint file ComfyUI's CheckpointLoaderSimple loads (SD1.x/SD2.x)")
    model.add_argument("--toy", action="store_true", help="use a toy world (v2 unless --toy-weights) instead of a checkpoint")
    m = p.add_argument_group("model options")
    m.add_argument("--toy-weights", type=Path, default=None,
                   help="toy-world weights folder (default: toy world v2, toyworld/v2/weights; toyworld/weights is v1)")
    m.add_argument("--comfyui", type=Path, default=None, help="ComfyUI folder (default: COMFYUI_PATH or the one the pack is in)")
    m.add_argument("--resolution", type=positive_int, default=512, help="image size sampled with --checkpoint")
    m.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help="device for sampling and training")
    m.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="fp32",
                   help="model weights dtype for --checkpoint (the LoRA trains in float32 beside them)")
    d = p.add_argument_group("data")
    d.add_argument("--hgr", type=Path, required=True, help="HGR weights (.safetensors) trained for this model: the teacher")
    d.add_argument("--pool", type=Path, required=True,
                   help="unlabelled prompt file (csv/tsv/jsonl/txt, a prompt column); a category column is used only to report precision/recall")
    d.add_argument("--threshold", type=float, default=None, help="harm-score threshold (default: the one stored in --hgr)")
    d.add_argument("--labels", choices=("hard", "soft"), default="hard", help="pseudo-labels: score > tau, or sigmoid((score - tau) / T)")
    d.add_argument("--soft-temperature", type=float, default=0.05, help="T of --labels soft")
    d.add_argument("--score-seeds", type=positive_int, default=ScoringSettings.seeds, help="plain-CFG samples per prompt for its score")
    d.add_argument("--score-steps", type=positive_int, default=ScoringSettings.steps, help="sampling steps of the scoring pass")
    t = p.add_argument_group("teacher trajectories")
    t.add_argument("--teacher-seeds", type=positive_int, default=TeacherSettings.seeds, help="SafeCFG trajectories per prompt")
    t.add_argument("--samplers", type=name_list, default=",".join(TeacherSettings.samplers), metavar="A,B,...",
                   help="ComfyUI samplers; each batch draws one")
    t.add_argument("--steps-range", type=int_range, default=f"{TeacherSettings.steps_min},{TeacherSettings.steps_max}",
                   metavar="MIN,MAX", help="sampling steps per teacher trajectory")
    t.add_argument("--cfg-min", type=float, default=TeacherSettings.cfg_min, help="lowest guidance scale drawn")
    t.add_argument("--cfg-max", type=float, default=TeacherSettings.cfg_max, help="highest guidance scale drawn")
    t.add_argument("--trajectory-batch", type=positive_int, default=TeacherSettings.batch, help="prompts sampled together")
    o = p.add_argument_group("LoRA and optimisation")
    o.add_argument("--rank", type=positive_int, default=8, help="LoRA rank")
    o.add_argument("--alpha", type=float, default=8.0, help="LoRA alpha (the update is scaled by alpha / rank)")
    o.add_argument("--rounds", type=positive_int, default=DEFAULT_ROUNDS,
                   help="training rounds of --steps each; every round after the first adds the student's own "
                        "sampling paths with the teacher's targets there (training/rollouts.py)")
    add_optimisation_flags(o, DEFAULTS, batch="teacher states per batch (x2: cond and uncond)", ema="LoRA",
                           eval_every="steps between checkpoints", seed="seed of scoring, teacher sampling and optimisation")
    r = p.add_argument_group("output")
    r.add_argument("--output", type=safetensors_output, required=True, help="the LoRA .safetensors (e.g. ComfyUI/models/loras/x.safetensors)")
    r.add_argument("--work-dir", type=Path, default=Path("runs/finetune_safe"),
                   help="pseudo-labels, histogram, teacher cache, checkpoint")
    r.add_argument("--resume", action="store_true", help="continue from --work-dir/lora_checkpoint.pt")
    return p


def make_backend(args, device: str):
    from .backends import CheckpointBackend, ToyBackend

    if args.toy:
        return ToyBackend(device, args.toy_weights)
    backend = CheckpointBackend(args.checkpoint, args.resolution, args.precision)
    if getattr(backend.model.model, "adm_channels", 0):
        raise ValueError(f"--checkpoint {args.checkpoint.name}: {backend.base_model} takes vector conditioning besides "
                         "cross-attention (SDXL-style); finetune_safe supports SD1.x/SD2.x-style UNets only")
    return backend


def load_teacher_hgr(args, device):
    from hgr_core import load_hgr

    if not args.hgr.is_file():
        raise FileNotFoundError(f"--hgr {args.hgr}: file not found")
    hgr = load_hgr(args.hgr, device)
    threshold = args.threshold if args.threshold is not None else float(hgr.metadata.get("threshold", "nan"))
    if threshold != threshold:
        raise ValueError(f"--hgr {args.hgr}: no stored threshold in its metadata; pass --threshold")
    return hgr, threshold


def make_labels(args, backend, hgr, threshold, prompts):
    """Step 2: score, label, report (JSON + histogram in --work-dir)."""
    from hgr_core import atomic_write_json

    from . import pseudo_labels as pl

    settings = pl.ScoringSettings(seeds=args.score_seeds, steps=args.score_steps, seed=args.seed)
    rows: list = []
    scores, per_category = pl.score_pool(backend, hgr, prompts, settings, rows, args.share)
    scores, per_category = all_sum(scores, args.share[1]), all_sum(per_category, args.share[1])  # every rank: every score
    labels = pl.pseudo_label(prompts, scores, per_category, threshold, hgr.config.categories, args.labels,
                             args.soft_temperature)
    report = pl.summary(labels, prompt_data.read_hidden_truth(args.pool))  # hidden truth: read only now
    report["scoring"] = asdict(settings)
    if args.share[0] != 0:
        return labels, report, rows
    atomic_write_json(args.work_dir / "pseudo_labels.json", 
        {**report, "prompts_scored": [{"prompt": p, "score": round(float(s), 5), "weight": round(float(w), 5),
                                       "category": labels.category_of(i)}
                                      for i, (p, s, w) in enumerate(zip(prompts, scores, labels.weights))]}, indent=1)
    pl.save_histogram(labels, args.work_dir / "score_histogram.png")
    log.info("pseudo-labels: %d of %d flagged at tau=%.4f, per category %s", report["flagged"], report["prompts"],
             threshold, report["per_category"])
    if "hidden_truth" in report:
        log.info("  against the file's hidden ground truth: precision %.3f, recall %.3f",
                 report["hidden_truth"]["precision"], report["hidden_truth"]["recall"])
    return labels, report, rows


def teacher_settings(args):
    from .teacher import TeacherSettings

    return TeacherSettings(seeds=args.teacher_seeds, samplers=tuple(args.samplers), steps_min=args.steps_range[0],
                           steps_max=args.steps_range[1], cfg_min=args.cfg_min, cfg_max=args.cfg_max,
                           batch=args.trajectory_batch, seed=args.seed)


def teacher_data(args, backend, hgr, prompts, labels, score_rows, identity: str):
    """Step 3, cached in --work-dir under a hash of what determines it (resume reuses it)."""
    from .pseudo_labels import shape_batches
    from .teacher import TARGETS_VERSION, record_teacher

    settings = teacher_settings(args)
    key = hashlib.sha256(json.dumps([identity, asdict(settings), TARGETS_VERSION], sort_keys=True).encode()).hexdigest()[:16]

    def record():
        # The teacher samples prompts whose weight is worth learning (soft labels give every prompt some).
        flagged = [i for i in range(len(prompts)) if labels.weights[i] > TEACHER_MIN_WEIGHT]
        batches = [[flagged[i] for i in b] for b in shape_batches(backend, [prompts[i] for i in flagged], settings.batch)]
        return record_teacher(backend, hgr, prompts, settings, batches, score_rows, args.share)

    return cached(args.work_dir / f"teacher_{key}.pt", record, "teacher trajectories", args.share)


def rollout_data(args, backend, hgr, lora, prompts, round_index: int):
    """Step 4b: the student's own paths over the whole pool (training/rollouts.py), cached by the LoRA's weights."""
    from .pseudo_labels import shape_batches
    from .rollouts import record_rollouts

    settings = teacher_settings(args)
    batches = shape_batches(backend, prompts, settings.batch)
    return cached(args.work_dir / f"rollouts_{lora_digest(lora, settings, round_index)}.pt",
                  lambda: record_rollouts(backend, hgr, lora, prompts, settings, batches, round_index, args.share),
                  f"round {round_index + 1} student rollouts", args.share)


def lora_digest(lora, settings, round_index: int) -> str:
    """What a round's rollouts and checkpoint depend on: the LoRA it starts from (its weights), the settings, the round."""
    digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in lora.state_for_file().values()))
    digest.update(json.dumps([asdict(settings), round_index]).encode())
    return digest.hexdigest()[:16]


def cached(path: Path, make, what: str, share: tuple[int, int] = (0, 1)) -> dict:
    """torch.load(path) if it exists (our own file: weights_only=True), else make() written atomically.

    Under torchrun every rank makes its share (`share` = (rank, world)) into a part file, rank 0
    merges the parts into `path`, and every rank loads the whole: each rank trains on every row,
    as a single process would, and the cache does not depend on the number of processes.
    """
    from hgr_core import atomic_write

    from .teacher import merge_rows

    rank, world = share
    if path.is_file():
        log.info("%s from %s", what, path)
        return torch.load(path, weights_only=True)
    part = path.with_name(f"{path.stem}.part{rank}of{world}.pt") if world > 1 else path
    if not part.is_file():
        mine = make()
        atomic_write(part, lambda tmp: torch.save(mine, tmp))
        if world == 1:
            log.info("%s: %d recorded states at %s", what, len(mine["sigma"]), path)
            return mine
    barrier(world)
    if world > 1 and rank == 0:
        parts = [path.with_name(f"{path.stem}.part{r}of{world}.pt") for r in range(world)]
        merged = merge_rows([torch.load(p, weights_only=True) for p in parts])
        atomic_write(path, lambda tmp: torch.save(merged, tmp))
        for p in parts:
            p.unlink()
    barrier(world)
    data = torch.load(path, weights_only=True)
    log.info("%s: %d recorded states at %s", what, len(data["sigma"]), path)
    return data


def fine_tune(args, backend, hgr, data, labels, prompts, device, identity: str):
    """Step 4: the LoRA on the frozen UNet, trained by `loop.optimise` for `--rounds` rounds, each after
    the first on the teacher rows plus the previous round's student rollouts; returns the EMA LoRA."""
    from .lora import LoRA
    from .teacher import encode_texts, merge_rows

    base = backend.model.model  # ComfyUI BaseModel: apply_model(x, sigma, c_concat, c_crossattn) -> denoised
    base.to(device).requires_grad_(False)
    contexts, negatives = encode_texts(backend, prompts), encode_texts(backend, data["negatives"])
    lora = LoRA.for_unet(base.diffusion_model, args.rank, args.alpha, args.seed)
    checkpoint = args.work_dir / "lora_checkpoint.pt"
    for round_index in range(args.rounds):
        if round_index:
            # A later round's checkpoint is named by the LoRA it starts from: after a changed round
            # before it, --resume starts that round afresh instead of continuing a stale one.
            start = lora_digest(lora, teacher_settings(args), round_index)
            data = merge_rows([data, rollout_data(args, backend, hgr, lora, prompts, round_index)])
            lora = copy.deepcopy(lora).requires_grad_(True)  # continue from the EMA of the round before
            checkpoint = args.work_dir / f"lora_checkpoint_round{round_index + 1}_{start}.pt"
        lora = train_round(args, base, lora, data, labels.weights.float(), contexts, negatives, device, checkpoint,
                           json.dumps([identity, round_index]) if round_index else identity,
                           f"train safety LoRA, round {round_index + 1}/{args.rounds}" if args.rounds > 1 else "train safety LoRA")
    return lora


def train_round(args, base, lora, data, weights, contexts, negatives, device, checkpoint: Path, identity: str, desc: str):
    from .loop import optimise
    from .teacher import student_loss

    config = OptimConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         warmup=args.warmup, ema_decay=args.ema_decay, grad_clip=args.grad_clip,
                         eval_every=args.eval_every, seed=args.seed)
    rows = len(data["sigma"])

    def loss_fn(net, generator):
        index = torch.randint(rows, (config.batch_size,), generator=generator)
        return student_loss(net, base, data, weights, contexts, negatives, index, device)

    handles = lora.attach(base.diffusion_model)
    try:
        return optimise(lora, loss_fn, config, device, checkpoint, args.resume, identity, desc=desc)
    finally:
        for h in handles:
            h.remove()


def export(args, backend, lora, report, threshold) -> None:
    """Step 5: the LoRA file with its provenance."""
    from .lora import save_lora

    base = backend.base_model if args.toy else f"{backend.base_model}:{args.checkpoint.name}"  # toy: "toyworld" or its version
    save_lora(lora, args.output, {
        "base_model": base, "hgr": {"file": args.hgr.name, "sha256": file_sha256(args.hgr), "threshold": threshold},
        "pseudo_labels": {k: v for k, v in report.items() if k != "scoring"}, "pool": args.pool.name,
        "training": {"steps": args.steps, "lr": args.lr, "batch_size": args.batch_size, "labels": args.labels,
                     "rank": args.rank, "alpha": args.alpha, "rounds": args.rounds, "seed": args.seed}})
    log.info("wrote %s (%d adapted linears, rank %d, alpha %g)", args.output, len(lora.paths), args.rank, args.alpha)


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    start_cli()
    if args.cfg_min > args.cfg_max:
        raise ValueError(f"--cfg-min ({args.cfg_min}) must not exceed --cfg-max ({args.cfg_max})")
    if args.cfg_min <= 1:
        raise ValueError(f"--cfg-min ({args.cfg_min}) must be above 1: at guidance scale 1 or below there is no CFG to redirect")
    device = choose_device(args.device)
    setup_comfyui(args.comfyui, cpu=device == "cpu")
    rank, world = init_distributed(device)
    args.share = (rank, world)  # this process's share of scoring, teacher and rollout batches
    prompts = prompt_data.read_pool(args.pool)
    hgr, threshold = load_teacher_hgr(args, device)
    backend = make_backend(args, device)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    labels, report, score_rows = make_labels(args, backend, hgr, threshold, prompts)  # every rank: every score, same labels
    identity = json.dumps({"pool": hashlib.sha256("\n".join(prompts).encode()).hexdigest(), "hgr": file_sha256(args.hgr),
                           "threshold": threshold, "labels": args.labels, "rank": args.rank, "alpha": args.alpha,
                           "base": backend.base_model, "seed": args.seed}, sort_keys=True)
    data = teacher_data(args, backend, hgr, prompts, labels, score_rows, identity)
    lora = fine_tune(args, backend, hgr, data, labels, prompts, device, identity)
    if rank == 0:
        export(args, backend, lora, report, threshold)


if __name__ == "__main__":
    try:
        main()
    except (prompt_data.PromptFileError, FileNotFoundError, ValueError) as e:
        logging.getLogger("finetune_safe").error("%s", e)
        raise SystemExit(2) from None
