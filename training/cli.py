"""Command-line flags of `python -m training.train_hgr` and the configs they build."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from hgr_core import HGRConfig

from .trainer import OptimConfig
from .jobs import DEFAULT_SAMPLERS, DEFAULT_SCHEDULERS, MULTI_CONCEPT_TARGETS, SamplingSettings
from .flags import (add_optimisation_flags, add_threads_flag, fraction, int_list, int_range, name_list, positive_int,
                    safetensors_output)
from .presets import PRESETS, preset_by_name


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.train_hgr", description="Train HGR weights for SafeCFG.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    model = p.add_argument_group("model").add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", type=Path, help="checkpoint file ComfyUI's CheckpointLoaderSimple loads")
    model.add_argument("--toy", action="store_true", help="use a toy world (v2 unless --toy-weights) instead of a checkpoint")
    m = p.add_argument_group("model options")
    m.add_argument("--toy-weights", type=Path, default=None,
                   help="toy-world weights folder (default: toy world v2, toyworld/v2/weights; toyworld/weights is v1)")
    m.add_argument("--comfyui", type=Path, default=None,
                   help="ComfyUI folder (default: COMFYUI_PATH, the ComfyUI this pack is installed in, or the test copy)")
    m.add_argument("--preset", type=preset_by_name, default=None, metavar="{" + ",".join(PRESETS) + "}",
                   help="per-family defaults for --checkpoint (--resolution, --base-channels; explicit flags win), "
                        "checked against the family, latent channels and prediction type ComfyUI detects: "
                        + "; ".join(f"{p.name} {p.resolution} px, {p.latent_channels} ch {p.prediction}, width {p.base_channels}"
                                    for p in PRESETS.values()))
    m.add_argument("--resolution", type=positive_int, default=512, help="image size sampled with --checkpoint (or the --preset's)")
    m.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto", help="device for sampling and training")
    add_threads_flag(m)
    m.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                   help="model weights dtype for --checkpoint (auto: ComfyUI picks fp16/bf16 where the device supports it)")
    d = p.add_argument_group("data")
    d.add_argument("--harmful", type=Path, action="append", required=True,
                   help="harmful prompt file (csv/tsv/jsonl/txt; I2P or prompt,category,safe_prompt); repeatable")
    d.add_argument("--harmful-category", default=None, help="category for harmful files without a category column")
    d.add_argument("--clean", type=Path, action="append", required=True, help="clean prompt file (txt or a prompt column); repeatable")
    d.add_argument("--concepts", type=Path, default=None, help="JSON {category: concept text}; extends built-in defaults")
    d.add_argument("--multi-concept-target", choices=MULTI_CONCEPT_TARGETS, default="sum",
                   help="target of a prompt with several harms and no safe counterpart: the sum of each category's "
                        "concept change (removes each harm as its single-harm prompts teach) or one concept of their "
                        "texts joined (before 2026-12-07; removes less of each)")
    d.add_argument("--negatives", type=Path, default=None,
                   help="negative prompts to draw from (txt); default: empty and typical user negatives")
    d.add_argument("--val-fraction", type=fraction, default=0.1, help="share of prompts held out for validation")
    s = p.add_argument_group("trajectories")
    s.add_argument("--seeds-per-prompt", type=positive_int, default=1, help="trajectories per prompt (per mode)")
    samplers = s.add_mutually_exclusive_group()
    samplers.add_argument("--samplers", type=name_list, default=",".join(DEFAULT_SAMPLERS), metavar="A,B,...",
                          help="ComfyUI samplers; each shard draws one")
    samplers.add_argument("--sampler", default=None, help="one ComfyUI sampler for every shard (overrides --samplers)")
    schedulers = s.add_mutually_exclusive_group()
    schedulers.add_argument("--schedulers", type=name_list, default=",".join(DEFAULT_SCHEDULERS), metavar="A,B,...",
                            help="ComfyUI schedulers; each shard draws one")
    schedulers.add_argument("--scheduler", default=None, help="one ComfyUI scheduler for every shard (overrides --schedulers)")
    steps = s.add_mutually_exclusive_group()
    steps.add_argument("--steps-range", type=int_range, default=f"{SamplingSettings.steps_min},{SamplingSettings.steps_max}",
                       metavar="MIN,MAX", help="sampling steps per trajectory; each shard draws one in [MIN, MAX]")
    steps.add_argument("--sample-steps", type=positive_int, default=None,
                       help="sampling steps for every shard (overrides --steps-range)")
    s.add_argument("--cfg-min", type=float, default=SamplingSettings.cfg_min, help="lowest guidance scale drawn (per job)")
    s.add_argument("--cfg-max", type=float, default=SamplingSettings.cfg_max, help="highest guidance scale drawn (per job)")
    s.add_argument("--record-steps", type=positive_int, default=None,
                   help="record at most this many steps per trajectory, spread over its schedule; unset: every model call")
    s.add_argument("--trajectory-batch", type=positive_int, default=16, help="jobs sampled together (one shard)")
    s.add_argument("--on-policy", type=Path, default=None, metavar="HGR",
                   help="a first-round HGR .safetensors (e.g. this run's --output with the same flags): also sample "
                        "each harmful prompt under SafeCFG with it and train on those states too (DAgger); the "
                        "trajectories of the run without it are reused from --work-dir")
    s.add_argument("--on-policy-seeds", type=positive_int, default=None,
                   help="redirected trajectories per harmful prompt with --on-policy (default: --seeds-per-prompt)")
    n = p.add_argument_group("network")
    n.add_argument("--base-channels", type=positive_int, default=HGRConfig.base_channels,
                   help="HGR width (multiple of 8; or the --preset's)")
    n.add_argument("--channel-mult", type=int_list, default=HGRConfig.channel_mult, help="width multipliers per U-Net level")
    n.add_argument("--blocks-per-level", type=positive_int, default=HGRConfig.blocks_per_level, help="residual blocks per level")
    o = p.add_argument_group("optimisation")
    add_optimisation_flags(o, OptimConfig(), batch="recorded steps per batch (per process)", ema="weights",
                           eval_every="steps between evaluation/checkpoint/preview",
                           seed="seed of the job plan and the optimisation")
    o.add_argument("--clean-weight", type=float, default=OptimConfig.clean_weight, help="lambda: weight of clean-prompt rows")
    o.add_argument("--second-pass-share", type=fraction, default=OptimConfig.second_pass_share,
                   help="share of each batch trained as the input of a second HGR pass (SafeCFGApply passes=2): "
                        "the guidance the current network has already redirected, toward the same target")
    r = p.add_argument_group("output")
    r.add_argument("--output", type=safetensors_output, required=True, help="where to write the HGR .safetensors (e.g. ComfyUI/models/hgr/x.safetensors)")
    r.add_argument("--work-dir", type=Path, default=Path("runs/train_hgr"), help="trajectory cache, checkpoints, previews")
    r.add_argument("--resume", action="store_true", help="continue training from --work-dir/checkpoint.pt")
    r.add_argument("--preview-count", type=int, default=6, help="validation prompts in each preview grid (0 = none)")
    r.add_argument("--threshold-percentile", type=float, default=99.0,
                   help="detection threshold = this percentile of clean validation scores")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse train_hgr's flags; a --preset's values become the defaults, so explicit flags still win.

    Parsed twice with one parser (argparse keeps no record of which flags were given): the first
    pass finds the preset, the second parses the same argv with the preset's defaults.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.preset is None:
        return args
    if args.toy:
        parser.error("--preset describes a --checkpoint family; the toy world (--toy) has its own latent shape")
    parser.set_defaults(**args.preset.flag_defaults())
    return parser.parse_args(argv)


def choose_device(name: str) -> str:
    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def hgr_config_from_args(args, latent_channels: int, categories: tuple[str, ...]) -> HGRConfig:
    return HGRConfig(latent_channels=latent_channels, categories=categories, base_channels=args.base_channels,
                     channel_mult=tuple(args.channel_mult), blocks_per_level=args.blocks_per_level)


def optim_config_from_args(args) -> OptimConfig:
    return OptimConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                       warmup=args.warmup, ema_decay=args.ema_decay, grad_clip=args.grad_clip,
                       clean_weight=args.clean_weight, second_pass_share=args.second_pass_share,
                       eval_every=args.eval_every, seed=args.seed)


def sampling_from_args(args) -> SamplingSettings:
    """The sampling mix; single-value flags (--sampler, --scheduler, --sample-steps) fix one part of it."""
    if args.cfg_min > args.cfg_max:
        raise ValueError(f"--cfg-min ({args.cfg_min}) must not exceed --cfg-max ({args.cfg_max})")
    steps_min, steps_max = (args.sample_steps, args.sample_steps) if args.sample_steps else args.steps_range
    return SamplingSettings(samplers=(args.sampler,) if args.sampler else tuple(args.samplers),
                            schedulers=(args.scheduler,) if args.scheduler else tuple(args.schedulers),
                            steps_min=steps_min, steps_max=steps_max, cfg_min=args.cfg_min, cfg_max=args.cfg_max,
                            record_steps=args.record_steps)
