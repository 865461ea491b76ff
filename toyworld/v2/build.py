"""Build toy world v2 from scratch (seeded): latent codec, judge, design gate, then the diffusion model.

    python -m toyworld.build --design --out runs/world_v2   # codec + judge + design gate only (minutes)
    python -m toyworld.build --out runs/world_v2            # full build (diffusion model included)
    python -m toyworld.build                                # full build into toyworld/v2/weights, the shipped world

Stages: render a full-strength pool (the diffusion model's data) and a judge pool whose harms have
random opacity 0.05-1 (labelled harmful from 0.25) -> fit the latent PCA on both -> train the judge
on round-tripped and raw renders -> the design gate (``gate.py``) -> [full build] learn the BPE
merges on the captions' words, train UNet + text encoder -> save every file atomically ->
``report.json``. The world's files have the same names and formats as v1's, so
``toyworld.world.load_world(weights_dir=...)`` loads a v2 build.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch

from hgr_core import atomic_write_json

from ..files import V2_WEIGHTS_DIR, start_build

log = logging.getLogger("toyworld.v2.build")
TEXT_MAX_TOKENS = 48  # sub-word pieces: 99.9% of training captions take <= 39 tokens (v1: 24 whole words)
BPE_MERGES = 150  # about half the caption words whole, rare ones (most harm words) in pieces, as in CLIP


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=V2_WEIGHTS_DIR,
                   help="folder for the weights and report.json (the default overwrites the shipped world)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice in the build")
    p.add_argument("--pool", type=int, default=20000, help="full-strength scenes for the diffusion model")
    p.add_argument("--judge-pool", type=int, default=20000, help="scenes with partial-opacity harms for the judge")
    p.add_argument("--judge-steps", type=int, default=6000,
                   help="judge optimiser steps (batch 128); 2500 left violence at the design gate's bar (0.9898-0.9927)")
    p.add_argument("--diffusion-steps", type=int, default=4000, help="UNet + text encoder steps (batch 32)")
    p.add_argument("--gate-scenes", type=int, default=2000, help="design-gate scenes per side and category")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--design", action="store_true", help="stop after the design gate (no diffusion model)")
    p.add_argument("--judge-only", action="store_true",
                   help="retrain only the judge on the codec in --out (the diffusion model does not depend on it), "
                        "then re-measure as --measure-only does")
    p.add_argument("--measure-only", action="store_true",
                   help="train nothing: re-measure the design gate, the per-pixel rule and plain-CFG quality of the "
                        "files in --out and rewrite report.json (the build's own fields are kept)")
    return p.parse_args(argv)


def _data(scenes):
    from .scenes import labels, render_batch

    images = torch.from_numpy(render_batch(scenes))
    return images, {k: torch.from_numpy(v) for k, v in labels(scenes).items()}


def judge_attributes() -> dict[str, tuple[str, ...]]:
    """The judge's attribute heads and their values, in the label order of ``scenes.labels``."""
    from ..render import BACKGROUNDS, SHAPES
    from .scenes import COLOURS, PATTERNS

    return {"shape": SHAPES, "colour": tuple(COLOURS), "pattern": PATTERNS, "background": tuple(BACKGROUNDS)}


def judge_heads() -> dict[str, int]:
    from .scenes import CATEGORIES

    return {"harm": len(CATEGORIES), **{k: len(v) for k, v in judge_attributes().items()}}


def build_codec_and_judge(args, out: Path):
    """Fit and save the latent codec and the judge; returns (codec, judge, diffusion scenes, their latents, report)."""
    from ..latent import PatchPCA
    from .scenes import scene_pool

    scenes = scene_pool(args.pool, args.seed)
    images, _ = _data(scenes)
    judge_data = _data(scene_pool(args.judge_pool, args.seed + 1, opacity_range=(0.05, 1.0)))
    codec = PatchPCA.fit(torch.cat([images[:2500], judge_data[0][:2500]]))
    codec.save(out / "latent.safetensors")
    variance = codec.explained_variance(images[:5000])
    log.info("rendered %d + %d scenes; latent PCA keeps %.1f%% of patch variance", len(scenes), args.judge_pool,
             100 * variance)
    judge, accuracy = build_judge(codec, args, out, judge_data)
    return codec, judge, scenes, codec.encode(images), {"latent_explained_variance": round(variance, 4),
                                                        "judge_accuracy": accuracy}


def build_judge(codec, args, out: Path, judge_data=None):
    """Train, measure and save the judge on ``codec``'s round trip; returns (judge, held-out accuracy)."""
    from ..judge import judge_accuracy, save_judge, train_judge
    from .scenes import CATEGORIES, scene_pool

    if judge_data is None:
        judge_data = _data(scene_pool(args.judge_pool, args.seed + 1, opacity_range=(0.05, 1.0)))
    judge_images, judge_labels = judge_data
    judge = train_judge(judge_images, codec.encode(judge_images), judge_labels, codec, steps=args.judge_steps,
                        seed=args.seed, heads=judge_heads())
    val_images, val_labels = _data(scene_pool(3000, args.seed + 2, opacity_range=(0.05, 1.0)))
    accuracy = {"raw": judge_accuracy(judge, val_images, val_labels),
                "latent_round_trip": judge_accuracy(judge, codec.round_trip(val_images), val_labels)}
    log.info("judge accuracy on 3000 held-out renders (opacity 0.05-1): %s", json.dumps(accuracy))
    save_judge(judge, out / "judge.safetensors", {"validation_accuracy": accuracy, "steps": args.judge_steps},
               CATEGORIES, judge_attributes())
    return judge, accuracy


def build_diffusion(scenes, latents, args, out: Path) -> dict:
    from ..text import TextConfig, TextEncoder, save_text_encoder
    from ..train import DiffusionTrainConfig, train_diffusion
    from ..unet import new_model, save_unet
    from ..bpe import learn_merges
    from .captions import training_caption, word_counts

    merges = learn_merges(word_counts(seed=args.seed), BPE_MERGES)
    cfg = DiffusionTrainConfig(steps=args.diffusion_steps, seed=args.seed)
    torch.manual_seed(args.seed)
    model = new_model(args.seed)
    text_encoder = TextEncoder(TextConfig.with_merges(merges, max_tokens=TEXT_MAX_TOKENS))
    ema_unet, ema_text = train_diffusion(model, text_encoder, latents, scenes, cfg, caption=training_caption)
    summary = {"train": asdict(cfg), "bpe_merges": len(merges), "text_vocab": text_encoder.cfg.vocab_size,
               "unet_params": sum(p.numel() for p in ema_unet.parameters())}
    save_unet(ema_unet, out / "unet.safetensors", summary)
    save_text_encoder(ema_text, out / "text_encoder.safetensors")
    return summary


def measure_design(judge, codec, args) -> dict:
    """The design gate and the per-pixel colour classifier (``gate.py``), logged."""
    from .gate import design_gate, per_pixel_rule

    gate = design_gate(judge, codec, args.gate_scenes, seed=args.seed + 3)
    log.info("design gate (balanced accuracy, harm vs look-alike, round trip): %s; on its look-alike: %s; passed=%s",
             {c: g["balanced_accuracy"] for c, g in gate["gate"].items()},
             {c: g["balanced_accuracy"] for c, g in gate["on_its_look_alike"].items()}, gate["passed"])
    pixel = per_pixel_rule(codec, seed=args.seed + 4)
    log.info("per-pixel colour classifier, harm vs look-alike (balanced accuracy): %s", pixel)
    return {"design_gate": gate, "per_pixel_rule": pixel}


def remeasure(out: Path, args, changes: dict | None = None) -> dict:
    """report.json of a finished build, updated with ``changes`` and its measurements redone on the saved files."""
    from ..judge import load_judge
    from ..latent import PatchPCA

    path = out / "report.json"
    report = {**(json.loads(path.read_text()) if path.is_file() else {}), **(changes or {})}
    report.update(measure_design(load_judge(out / "judge.safetensors"), PatchPCA.load(out / "latent.safetensors"), args))
    if (out / "unet.safetensors").is_file():
        report["quality"] = measure_quality(out)
    return report


def measure_quality(out: Path) -> dict:
    """Reload the saved files and sample the quality sets under plain CFG (euler, normal, 20 steps, cfg 5)."""
    from ..evaluate import quality_report
    from ..world import load_world
    from .prompts import quality_sets

    return quality_report(load_world("cpu", out), sets=quality_sets())


def main(argv=None) -> None:
    args = parse_args(argv)
    out = start_build(args)
    start = time.time()
    if args.judge_only:
        from ..latent import PatchPCA

        judge, accuracy = build_judge(PatchPCA.load(out / "latent.safetensors"), args, out)
        report = remeasure(out, args, {"judge_accuracy": accuracy, "judge_steps": args.judge_steps,
                                       "judge_seconds": round(time.time() - start, 1)})
    elif args.measure_only:
        report = remeasure(out, args)
    else:
        codec, judge, scenes, latents, report = build_codec_and_judge(args, out)
        report.update(measure_design(judge, codec, args))
        if not args.design:
            report["diffusion"] = build_diffusion(scenes, latents, args, out)
            report["quality"] = measure_quality(out)
        report.update(world="toyworld-v2", args={k: str(v) for k, v in vars(args).items()},
                      build_seconds=round(time.time() - start, 1), torch=torch.__version__)
    atomic_write_json(out / "report.json", report)
    log.info("done in %.0f s; report in %s", time.time() - start, out / "report.json")


if __name__ == "__main__":
    main()
