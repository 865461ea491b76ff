"""The command line of `python -m benchmarks.safety` (its flags and which benchmark they choose);
the benchmarks themselves are `benchmarks.safety`'s `run_*` functions."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.flags import add_threads_flag, start_cli, unit_interval_list

from . import safety
from .cli_main import add_passes_flag
from .safety import (DEFAULT_LORA_OUT, DEFAULT_OUT, DEFAULT_PER_CATEGORY, DEFAULT_REAL_CFG, DEFAULT_SLD_GRID_OUT,
                     DEFAULT_SWEEP_OUT, DEFAULT_TOY_CFG, _setup, run_checkpoint_benchmark, run_lora_benchmark,
                     run_sld_grid_benchmark, run_sweep_benchmark, run_toy_benchmark)
from .safety_report import format_table, reformat_report, summary_line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.safety", description=safety.__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--hgr", type=Path, default=None, help="HGR .safetensors; required for the SafeCFG rows")
    p.add_argument("--out", type=Path, default=None,
                   help=f"folder for report.json, report.txt and the PNGs (default {DEFAULT_OUT}, "
                        f"with --sweep {DEFAULT_SWEEP_OUT}, with --sld-grid {DEFAULT_SLD_GRID_OUT})")
    p.add_argument("--reformat", type=Path, default=None, metavar="REPORT_JSON",
                   help="measure nothing: rewrite the report.txt beside this report.json (toy, checkpoint, sweep or "
                        "SLD grid run) with this checkout's table and summary line, and print them")
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps (default 20; with --sweep each condition's own, this overrides them all)")
    p.add_argument("--cfg", type=float, default=None,
                   help=f"guidance scale (default: toy {DEFAULT_TOY_CFG:g} or the world report's recommended_cfg; "
                        "with --sld-grid the scale SLD is tuned at, default 5; refused with --sweep and --lora; "
                        f"checkpoints {DEFAULT_REAL_CFG:g} where a file gives no evaluation_guidance or sd_guidance_scale)")
    p.add_argument("--seed", type=int, default=0,
                   help="prompt i samples with seed + i (unless its file gives evaluation_seed or sd_seed)")
    p.add_argument("--sampler", default="euler", help="ComfyUI sampler name")
    p.add_argument("--scheduler", default="normal", help="ComfyUI scheduler name")
    p.add_argument("--skip-baselines", action="store_true",
                   help="only CFG and SafeCFG (no negative prompt, SLD, word filter)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="prompts per sampling call (default: toy 64, --sweep and --sld-grid 128, checkpoint 8)")
    add_passes_flag(p, "every SafeCFG row of the toy benchmark, the sweep and --checkpoint")
    add_threads_flag(p)
    p.add_argument("--comfyui", type=Path, default=None, help="ComfyUI folder (default: COMFYUI_PATH or the test copy)")
    t = p.add_argument_group("toy world (default mode)")
    t.add_argument("--pixel-gate", type=Path, default=None,
                   help="per-pixel gate baseline trained on the HGR's trajectory cache "
                        "(`python -m benchmarks.trivial_baselines`); the palette rule always runs with the baselines")
    t.add_argument("--concept-hgr", type=Path, default=None,
                   help="an HGR trained without safe counterparts (concept-only regime, the I2P case), "
                        "benchmarked as its own method for the concept_regime_harmful number")
    t.add_argument("--strengths", type=unit_interval_list, default=(0.25, 0.5, 0.75, 1.0), metavar="S,S,...",
                   help="SafeCFG strengths of the strength sweep (CFG, 0, and 1 always run); '1' for large runs")
    t.add_argument("--per-category", type=int, default=None,
                   help=f"prompts per harmful category in each set (clean set: as many as a harmful set; default "
                        f"{DEFAULT_PER_CATEGORY}, with --sweep 32 and per pair of categories for two-harm prompts, "
                        "with --sld-grid 16 in each split)")
    t.add_argument("--sld-front", type=Path, default=None,
                   help="an SLD grid report.json (--sld-grid): the SLD target checks its front tuned on dev, "
                        "measured on test, instead of the four presets")
    w = p.add_argument_group("shift sweep (--sweep, toy world)")
    w.add_argument("--sweep", action="store_true",
                   help="sample the held-out sets under the samplers, scales and negatives users pick (needs --hgr)")
    w.add_argument("--thorough", action="store_true", help="64 prompts per category (128 harmful per condition)")
    w.add_argument("--toy-weights", type=Path, default=None,
                   help="toy-world weights folder for every toy benchmark (default: toy world v2, toyworld/v2/weights; "
                        "toyworld/weights is v1); each world is measured on its own prompt sets")
    w.add_argument("--split", choices=("test", "dev"), default="test",
                   help="prompts and noise seeds: dev for choosing recipes, test for reported numbers")
    w.add_argument("--conditions", default=None,
                   help="comma-separated condition names to run (default: all of sweep_design.CONDITIONS)")
    lo = p.add_argument_group("safety LoRA rows (--lora, toy world; --split, --conditions, --per-category apply)")
    lo.add_argument("--lora", type=Path, default=None,
                    help="a safety LoRA from training.finetune_safe: adds 'safety LoRA (no HGR)' and 'safety LoRA + SafeCFG' "
                         "rows next to CFG and SafeCFG under the sweep's conditions (needs --hgr)")
    g = p.add_argument_group("SLD tuned on dev (--sld-grid, toy world)")
    g.add_argument("--sld-grid", action="store_true",
                   help="sample a grid of SLD settings on the dev split, measure its non-dominated front and "
                        "SafeCFG's strength sweep on the test split (needs --hgr; euler/normal cfg 5, --steps)")
    c = p.add_argument_group("real checkpoint (--checkpoint)")
    c.add_argument("--checkpoint", type=Path, default=None, help="checkpoint ComfyUI's CheckpointLoaderSimple loads")
    c.add_argument("--prompts", type=Path, action="append", default=[],
                   help="harmful prompt file as published (I2P, Ring-A-Bell, MMA-Diffusion, UnlearnDiffAtk); repeatable")
    c.add_argument("--clean-prompts", type=Path, action="append", default=[], help="clean captions (e.g. COCO); repeatable")
    c.add_argument("--category", default=None,
                   help="category of --prompts files without a category column (default: from the file name)")
    c.add_argument("--limit", type=int, default=None, help="use the first N prompts of each file")
    c.add_argument("--resolution", type=int, default=512, help="image size in pixels")
    c.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto", help="model weights dtype")
    c.add_argument("--judge", choices=("nudenet", "none"), default="nudenet",
                   help="nudity judge: NudeNet 320n (pip install nudenet) or none (distances and detection only)")
    c.add_argument("--nudenet-threshold", type=float, default=None,
                   help="NudeNet detection score that counts as nudity (default 0.6)")
    c.add_argument("--safety-concept", default=None,
                   help="concept text of the negative-prompt and SLD baselines (default: SLD's own)")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    start_cli(args.threads)
    if args.reformat is not None:
        report, text = reformat_report(args.reformat)
        print(text, end="", flush=True)
        return report
    if args.checkpoint is None and (args.prompts or args.clean_prompts):
        raise ValueError("--prompts/--clean-prompts need --checkpoint (the toy world has its own prompt sets)")
    if args.passes != 1 and (args.sld_grid or args.lora is not None):
        raise ValueError("--passes applies to the toy benchmark, --sweep and --checkpoint; --sld-grid and --lora "
                         "measure one HGR pass")
    if args.sweep and args.sld_grid:
        raise ValueError("--sweep and --sld-grid are separate runs; choose one")
    if (args.sweep or args.lora is not None) and args.cfg is not None:
        raise ValueError("--cfg does not apply to --sweep or --lora: each condition has its own scale (pick them "
                         "with --conditions)")
    if args.toy_weights is not None and args.checkpoint is not None:
        raise ValueError("--toy-weights names a toy world; drop it with --checkpoint")
    if args.lora is not None:
        if args.checkpoint is not None or args.sweep or args.sld_grid:
            raise ValueError("--lora runs on the toy world on its own; drop --checkpoint/--sweep/--sld-grid")
        report = run_lora_benchmark(args.hgr, args.lora, args.out or DEFAULT_LORA_OUT, args.per_category or 16, args.split,
                                    args.conditions.split(",") if args.conditions else None, args.batch_size or 128,
                                    world=_toy_world(args), comfyui=args.comfyui)
        from . import safety_lora  # imports ComfyUI: after run_lora_benchmark's setup

        print(safety_lora.format_lora_table(report))
        print(safety_lora.lora_summary_line(report), flush=True)
        return report
    if args.sld_grid:
        if args.checkpoint is not None:
            raise ValueError("--sld-grid runs on the toy world; drop --checkpoint")
        report = run_sld_grid_benchmark(args.hgr, args.out or DEFAULT_SLD_GRID_OUT, args.per_category, args.steps,
                                        args.batch_size or 128, world=_toy_world(args), comfyui=args.comfyui,
                                        cfg=args.cfg)
    elif args.sweep:
        if args.checkpoint is not None:
            raise ValueError("--sweep runs on the toy world; drop --checkpoint")
        _setup(args.comfyui)  # safety_sweep imports ComfyUI
        from .sweep_design import THOROUGH_PER_CATEGORY

        per_category = args.per_category or (THOROUGH_PER_CATEGORY if args.thorough else None)
        conditions = args.conditions.split(",") if args.conditions else None
        report = run_sweep_benchmark(args.hgr, args.out or DEFAULT_SWEEP_OUT, per_category, args.split, conditions,
                                     args.steps, args.batch_size or 128, world=_toy_world(args), comfyui=args.comfyui,
                                     passes=args.passes)
    elif args.checkpoint is not None:
        if not args.prompts and not args.clean_prompts:
            raise ValueError("--checkpoint needs at least one --prompts or --clean-prompts file")
        report = run_checkpoint_benchmark(
            args.checkpoint, args.hgr, args.prompts, args.clean_prompts, args.out or DEFAULT_OUT, args.resolution,
            args.steps or 20, args.cfg if args.cfg is not None else DEFAULT_REAL_CFG, args.seed, args.judge, args.limit,
            args.skip_baselines,
            args.category, args.precision, args.batch_size or 8, args.safety_concept, args.sampler, args.scheduler,
            args.nudenet_threshold, args.comfyui, args.passes)
    else:
        report = run_toy_benchmark(args.hgr, args.out or DEFAULT_OUT, args.per_category or DEFAULT_PER_CATEGORY,
                                   args.steps or 20, args.cfg, args.seed, args.skip_baselines,
                                   sampler=args.sampler, scheduler=args.scheduler,
                                   batch=args.batch_size or 64, comfyui=args.comfyui, pixel_gate=args.pixel_gate,
                                   concept_hgr=args.concept_hgr, sld_front=args.sld_front, world=_toy_world(args),
                                   strengths=(0.0, *args.strengths), passes=args.passes)
    print(format_table(report))
    print(summary_line(report), flush=True)
    return report


def _toy_world(args):
    """The world --toy-weights names (None: the default world, v2, loaded by the benchmark)."""
    if args.toy_weights is None:
        return None
    _setup(args.comfyui)
    from toyworld import load_world

    return load_world(weights_dir=args.toy_weights)
