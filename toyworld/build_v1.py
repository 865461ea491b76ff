"""Build every toy world v1 weight from scratch (seeded) and measure the result.

    python -m toyworld.build --world v1           # full build into toyworld/weights
    python -m toyworld.build --world v1 --out /tmp/tw --diffusion-steps 300   # quick smoke build
    python -m toyworld.build --world v1 --eval-only   # re-measure the shipped v1 weights

Steps: render a pool of scenes -> fit the latent PCA -> train the judge on ground-truth renders
(raw and latent round trip) -> train UNet + text encoder jointly -> save (atomic) -> reload the
saved files and measure them under plain CFG with ComfyUI's sampler (``evaluate.quality_report``)
-> write ``report.json`` next to the weights.

Measured time (report.json "build_seconds", "eval_seconds"): the shipped weights took 3131 s of
training plus 90 s of evaluation with one torch thread on 2 CPU cores that other jobs were using
at the same time (diffusion ~0.9-1.2 s/step there). With a core to itself a diffusion step takes
0.47 s, so about 25-30 minutes in all. Shorter does not reach the bar: a 1500-step build (21 min on the
shared cores) gave 85% clean shape accuracy and drew the nudity mark for only ~30% of nudity
prompts; in the 3000-step run both cross 90% between steps 1000 and 1500 and reach 100% by 2500.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from hgr_core import atomic_write_json

from .files import V1_WEIGHTS_DIR, start_build

log = logging.getLogger("toyworld.build_v1")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=V1_WEIGHTS_DIR, help="folder for the weights and report.json")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice in the build")
    p.add_argument("--pool", type=int, default=20000, help="number of rendered training scenes")
    p.add_argument("--judge-steps", type=int, default=1500, help="judge optimiser steps (batch 128)")
    p.add_argument("--diffusion-steps", type=int, default=3000, help="UNet + text encoder steps (batch 32)")
    p.add_argument("--monitor-every", type=int, default=1000, help="quick quality check every N steps; 0 = never")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (0 = torch's default). One thread is nearly as fast for this tiny "
                        "UNet (0.47 s/step) and when other jobs share the cores 2 threads ran 4x slower")
    p.add_argument("--eval-only", action="store_true", help="skip training; measure the weights in --out")
    return p.parse_args(argv)


def make_data(n: int, seed: int):
    """Rendered scenes, their images (N, 3, 32, 32) and labels as tensors."""
    from .render import labels, render_batch, scene_pool

    scenes = scene_pool(n, seed)
    images = torch.from_numpy(render_batch(scenes))
    return scenes, images, {k: torch.from_numpy(v) for k, v in labels(scenes).items()}


def build_judge(images, latents, labels, codec, args, out: Path):
    from .judge import judge_accuracy, save_judge, train_judge

    net = train_judge(images, latents, labels, codec, steps=args.judge_steps, seed=args.seed)
    _, val_images, val_labels = make_data(3000, args.seed + 1)
    acc = {"raw": judge_accuracy(net, val_images, val_labels),
           "latent_round_trip": judge_accuracy(net, codec.round_trip(val_images), val_labels)}
    log.info("judge accuracy on 3000 held-out renders: %s", json.dumps(acc))
    save_judge(net, out / "judge.safetensors", {"validation_accuracy": acc, "steps": args.judge_steps})
    return net, acc


def make_monitor(codec, judge_net):
    """Log a quick judge-measured quality check of the EMA weights during training."""
    from .evaluate import quick_check
    from .unet import build_model, patcher
    from .world import World

    def monitor(step, ema_unet, ema_text):
        model = build_model()
        model.diffusion_model = ema_unet
        q = quick_check(World(patcher(model), ema_text, codec, judge_net))
        c, h = q["clean"], q["harmful"]
        log.info("step %d quick check: clean shape %.3f colour %.3f background %.3f harm %.3f; harmful concept %.3f",
                 step, c["shape"], c["colour"], c["background"], c["any_harm"], h["concept"])

    return monitor


def build_diffusion(scenes, latents, args, out: Path, monitor) -> dict:
    from .captions import vocabulary
    from .text import TextConfig, TextEncoder, save_text_encoder
    from .train import DiffusionTrainConfig, train_diffusion
    from .unet import new_model, save_unet

    cfg = DiffusionTrainConfig(steps=args.diffusion_steps, seed=args.seed)
    torch.manual_seed(args.seed)
    model = new_model(args.seed)
    text_encoder = TextEncoder(TextConfig(vocab=tuple(vocabulary())))
    ema_unet, ema_text = train_diffusion(model, text_encoder, latents, scenes, cfg, monitor, args.monitor_every)
    summary = {"train": asdict(cfg), "unet_params": sum(p.numel() for p in ema_unet.parameters()),
               "text_params": sum(p.numel() for p in ema_text.parameters())}
    save_unet(ema_unet, out / "unet.safetensors", summary)
    save_text_encoder(ema_text, out / "text_encoder.safetensors")
    return summary


def train_all(args, out: Path) -> dict:
    from .latent import PatchPCA

    scenes, images, labels = make_data(args.pool, args.seed)
    codec = PatchPCA.fit(images[:5000])
    codec.save(out / "latent.safetensors")
    latents = codec.encode(images)
    variance = codec.explained_variance(images[:5000])
    log.info("rendered %d scenes; latent PCA keeps %.1f%% of patch variance", len(scenes), 100 * variance)
    judge_net, judge = build_judge(images, latents, labels, codec, args, out)
    diffusion = build_diffusion(scenes, latents, args, out, make_monitor(codec, judge_net))
    return {"latent_explained_variance": variance, "judge_accuracy": judge, "diffusion": diffusion}


def main(argv=None) -> None:
    args = parse_args(argv)
    out = start_build(args)
    from .evaluate import quality_report
    from .world import load_world

    start = time.time()
    old = json.loads((out / "report.json").read_text()) if args.eval_only and (out / "report.json").is_file() else {}
    built = {k: old[k] for k in ("build", "build_seconds") if k in old}
    if not args.eval_only:
        built = {"build": {**train_all(args, out), "args": {k: str(v) for k, v in vars(args).items()}}}
        built["build_seconds"] = round(time.time() - start, 1)
    eval_start = time.time()
    quality = quality_report(load_world("cpu", out))
    eval_seconds = round(time.time() - eval_start, 1)
    # The settings the quality bar was measured with are the ones to use with this world.
    report = {**built, "quality": quality, "recommended_cfg": quality["settings"]["cfg"],
              "recommended": quality["settings"], "eval_seconds": eval_seconds, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "machine": platform.machine()}
    atomic_write_json(out / "report.json", report)
    log.info("done in %.0f s; report in %s", time.time() - start, out / "report.json")


if __name__ == "__main__":
    main()
