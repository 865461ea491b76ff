"""Safety benchmark: SafeCFG against plain CFG and baselines, same seeds, held-out prompts.

Measures what METHOD.md section 7 lists, in one run that writes a JSON report, a readable table
and two pictures, and prints the table with a one-line summary as the LAST stdout line:

    harmful_rate_cfg=… harmful_rate_safecfg=… unseen_rate_safecfg=… clean_fidelity=… clean_pixel_diff=… auroc=… concept_regime_harmful=… hard_negative_fidelity=… harmful_upper95=… matched_pair_auroc=…

Toy world (CPU, about 3 minutes on 2 cores with the defaults):

    python -m benchmarks.safety --hgr runs/demo/hgr/toy_hgr.safetensors
    python -m benchmarks.safety --hgr toy_hgr.safetensors --per-category 32 --out output/benchmarks/safety_big

Shift sweep (issue 12; `safety_sweep.py`): nine sampler/scheduler/scale/steps/negative conditions
on held-out prompts with one harm and with two, ending with the line
`worst_harmful_safecfg=… worst_two_harm_safecfg=… worst_clean_fidelity=… worst_auroc=…`:

    python -m benchmarks.safety --sweep --hgr toy_hgr.safetensors                 # test split, 32 per category
    python -m benchmarks.safety --sweep --thorough --hgr toy_hgr.safetensors      # 64 per category (128 harmful)
    python -m benchmarks.safety --sweep --split dev --hgr candidate.safetensors   # for choosing recipes

SLD tuned on dev (issue 13; `sld_grid.py`): a grid of SLD settings sampled on the dev split, its
non-dominated front measured on the test split beside SafeCFG's strength sweep, one plot of both
fronts (fronts.png), ending with the line
`sld_front_points=… sld_front_dominating=… safecfg_harmful=… safecfg_pixel_diff=… sld_safest_harmful=… sld_safest_pixel_diff=…`;
a toy run given that report (--sld-front) checks SLD's tuned front instead of the presets:

    python -m benchmarks.safety --sld-grid --hgr toy_hgr.safetensors --out output/benchmarks/sld_grid
    python -m benchmarks.safety --hgr toy_hgr.safetensors --sld-front output/benchmarks/sld_grid/report.json

Real checkpoint (a GPU; NudeNet judge is optional: `pip install nudenet==3.4.2`, else --judge none):

    python -m benchmarks.safety --checkpoint ComfyUI/models/checkpoints/v1-5.safetensors \\
        --hgr ComfyUI/models/hgr/sd15.safetensors --prompts i2p.csv --prompts nudity.csv \\
        --prompts Nudity_prompt.csv --clean-prompts coco_10k.csv --limit 200

Outputs in --out: report.json, report.txt (the table), safety_vs_fidelity.png (toy: the
strength sweep against the baselines), comparison.png (same seeds: rows = prompts, columns =
methods), and per_prompt.jsonl for checkpoints. The demo calls `run_toy_benchmark`,
`format_table` and `summary_line` directly. What each number means, and every choice made
(CFG images, safety concept, SLD warm-up, word filter, harm score), is in the docstrings of
`safety_toy.py` and `safety_real.py`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from .safety_metrics import BenchmarkSettings
from .report_pictures import fronts_plot, safety_fidelity_plot
from .safety_report import format_table, summary_line, summary_values, toy_targets, write_report
from .sweep_report import finish_sweep

__all__ = ["format_table", "main", "run_checkpoint_benchmark", "run_sld_grid_benchmark", "run_sweep_benchmark",
           "run_toy_benchmark", "summary_line"]

log = logging.getLogger("benchmarks.safety")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("output/benchmarks/safety")
DEFAULT_SWEEP_OUT = Path("output/benchmarks/safety_sweep")
DEFAULT_SLD_GRID_OUT = Path("output/benchmarks/sld_grid")
DEFAULT_LORA_OUT = Path("output/benchmarks/safety_lora")
DEFAULT_PER_CATEGORY = 6  # 12 prompts per set; measured: 8 took 270 s on 2 cores busy with other jobs (1 thread)
DEFAULT_TOY_CFG = 7.0
DEFAULT_REAL_CFG = 7.5  # SD's usual scale, used where a prompt file gives no guidance column (evaluation_guidance, sd_guidance_scale)


def _setup(comfyui=None) -> None:
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))
    from safecfg_comfy.locate import setup_comfyui

    setup_comfyui(comfyui)


def _load_hgr(hgr):
    """An HGR from a path (None stays None; an HGR object is used as it is)."""
    if hgr is None or not isinstance(hgr, (str, Path)):
        return hgr
    from hgr_core import load_hgr

    return load_hgr(hgr)


def _save_png(image, path: Path) -> str:
    from training.preview import save_png

    save_png(image, path)
    return str(path)


def run_toy_benchmark(hgr=None, out_dir=DEFAULT_OUT, per_category: int = DEFAULT_PER_CATEGORY, steps: int = 20,
                      cfg: float | None = None, seed: int = 0, skip_baselines: bool = False, world=None,
                      sampler: str = "euler", scheduler: str = "normal", strengths=(0.0, 0.25, 0.5, 0.75, 1.0),
                      batch: int = 64, grid_rows: int = 4, comfyui=None, pixel_gate=None, concept_hgr=None,
                      sld_front=None, passes: int = 1) -> dict:
    """Run the toy-world benchmark and write its files; returns the report dict.

    hgr: path to an HGR .safetensors (or a loaded HGR); None runs CFG and baselines only.
    pixel_gate: path to a per-pixel gate (`benchmarks.trivial_baselines`) or a loaded one; the
    palette rule runs with the baselines either way. concept_hgr: an HGR trained in the concept-only
    regime (harmful prompts without safe counterparts, the I2P case), reported as its own method.
    world: a loaded `toyworld.World` (default: the shipped one). cfg None: the world report's
    "recommended_cfg" if it has one, else 7. comfyui: ComfyUI folder (default: found as usual).
    sld_front: an SLD grid report.json (`run_sld_grid_benchmark`): the SLD target then asks that no
    point of SLD's front tuned on dev dominates SafeCFG on the test split, instead of the presets.
    passes: SafeCFG's HGR applications per step (every SafeCFG row, the strength sweep's included).
    """
    _setup(comfyui)
    from toyworld import load_world

    from .safety_sweep import Vocabulary
    from .safety_toy import comparison_grid, toy_report

    started = time.monotonic()
    world = world if world is not None else load_world()
    if cfg is None:  # a World built by hand (tests) has no weights folder, hence no report
        built = world.report() if getattr(world, "weights_dir", None) else {}
        cfg = float(built.get("recommended_cfg", DEFAULT_TOY_CFG))
    settings = BenchmarkSettings(cfg=cfg, steps=steps, seed=seed, sampler=sampler, scheduler=scheduler, batch=batch,
                                 passes=passes)
    if isinstance(pixel_gate, (str, Path)):
        from .trivial_baselines import load_pixel_gate

        pixel_gate = load_pixel_gate(pixel_gate)
    hgr, concept_hgr = _load_hgr(hgr), _load_hgr(concept_hgr)
    for redirector in (h for h in (hgr, concept_hgr) if h is not None):  # refuse an HGR made for another world
        Vocabulary.of(world).redirected_by(redirector)
    report, gens, harness = toy_report(world, hgr, settings, per_category, strengths, skip_baselines,
                                       pixel_gate, concept_hgr)
    if sld_front is not None:
        from .sld_grid_report import read_front

        report["sld_front"] = read_front(sld_front)
        if report["sld_front"]["hgr"] != report["settings"]["hgr"]:
            log.warning("the SLD grid report %s measured SafeCFG with %s, this run uses %s: its target "
                        "compares SLD with that HGR", sld_front, report["sld_front"]["hgr"], report["settings"]["hgr"])
    report["targets"] = toy_targets(report)
    report["summary"] = summary_values(report)
    out = Path(out_dir)
    report["files"] = {"grid": _save_png(comparison_grid(harness, gens, grid_rows), out / "comparison.png")}
    if "strength_sweep" in report:
        report["files"]["plot"] = _save_png(safety_fidelity_plot(report), out / "safety_vs_fidelity.png")
    return _finish(report, out, started)


def run_sweep_benchmark(hgr, out_dir=DEFAULT_SWEEP_OUT, per_category: int | None = None, split: str = "test",
                        conditions=None, steps: int | None = None, batch: int = 128, world=None, comfyui=None,
                        passes: int = 1) -> dict:
    """Run the shift sweep on the toy world and write its files; returns the report dict.

    per_category None: `sweep_design.DEFAULT_PER_CATEGORY`. conditions: names from
    `sweep_design.CONDITIONS` (None = all). steps: override every condition's step count (smoke runs).
    """
    _setup(comfyui)
    import dataclasses

    from toyworld import load_world

    from . import safety_sweep as sweep
    from . import sweep_design as design

    started, out = time.monotonic(), Path(out_dir)
    chosen = list(design.select_conditions(conditions))
    if steps is not None:
        chosen = [dataclasses.replace(c, steps=steps) for c in chosen]
    loaded = _load_hgr(hgr)
    if loaded is None:
        raise ValueError("--sweep needs --hgr (it measures SafeCFG against CFG)")

    def picture(condition, specs, images):
        return _save_png(sweep.condition_grid(specs, images), out / "conditions" / f"{condition.name}.png")

    report = sweep.sweep_report(world if world is not None else load_world(), loaded, split,
                                per_category or design.DEFAULT_PER_CATEGORY, chosen, batch, picture=picture,
                                passes=passes)
    report["files"] = {}
    return _finish(finish_sweep(report), out, started)


def run_lora_benchmark(hgr, lora, out_dir=DEFAULT_LORA_OUT, per_category: int = 16, split: str = "test",
                       conditions=None, batch: int = 128, world=None, comfyui=None) -> dict:
    """The safety LoRA rows (`safety_lora`): CFG, SafeCFG, LoRA without HGR, LoRA + SafeCFG per sweep condition."""
    _setup(comfyui)
    from toyworld import load_world

    from . import safety_lora
    from . import sweep_design as design

    started, out, loaded = time.monotonic(), Path(out_dir), _load_hgr(hgr)
    if loaded is None:
        raise ValueError("--lora needs --hgr (the SafeCFG rows and the LoRA's teacher)")
    chosen = list(design.select_conditions(conditions))
    report, pictures = safety_lora.lora_report(world if world is not None else load_world(), loaded, Path(lora), split,
                                               per_category, chosen, batch)
    report["files"] = {"grid": _save_png(safety_lora.comparison_picture(pictures["specs"], pictures["images"]),
                                         out / "comparison.png"),
                       "report": str(out / "report.json"), "table": str(out / "report.txt")}
    report["seconds"] = round(time.monotonic() - started, 1)
    write_report(report, out, safety_lora.format_lora_table(report), safety_lora.lora_summary_line(report))
    return report


def run_sld_grid_benchmark(hgr, out_dir=DEFAULT_SLD_GRID_OUT, per_category: int | None = None,
                           steps: int | None = None, batch: int = 128, world=None, comfyui=None,
                           cfg: float | None = None) -> dict:
    """Tune SLD on the dev split, measure its front and SafeCFG's strength sweep on test; write the files.

    per_category None: `sld_grid.DEFAULT_PER_CATEGORY`; steps, cfg: override the default condition's
    20 steps and scale 5 (the attack benchmark samples at cfg 7: tune its SLD there).
    """
    _setup(comfyui)
    from toyworld import load_world

    from . import sld_grid
    from .sld_grid_report import finish_grid

    started, out, loaded = time.monotonic(), Path(out_dir), _load_hgr(hgr)
    if loaded is None:
        raise ValueError("--sld-grid needs --hgr (SafeCFG's strength sweep is the other front)")
    report = sld_grid.grid_report(world if world is not None else load_world(), loaded,
                                  per_category or sld_grid.DEFAULT_PER_CATEGORY, sld_grid.default_condition(steps, cfg),
                                  batch)
    report = finish_grid(report)
    report["files"] = {"plot": _save_png(fronts_plot(report), out / "fronts.png")}
    return _finish(report, out, started)


def run_checkpoint_benchmark(checkpoint, hgr, prompt_files, clean_files, out_dir=DEFAULT_OUT, resolution: int = 512,
                             steps: int = 20, cfg: float = DEFAULT_REAL_CFG, seed: int = 0, judge: str = "nudenet",
                             limit: int | None = None, skip_baselines: bool = False, category: str | None = None,
                             precision: str = "auto", batch: int = 8, safety_concept: str | None = None,
                             sampler: str = "euler", scheduler: str = "normal", nudenet_threshold: float | None = None,
                             comfyui=None, passes: int = 1) -> dict:
    """Run the benchmark on a ComfyUI checkpoint with published prompt files; returns the report dict."""
    _setup(comfyui)
    from training.backends import CheckpointBackend

    from . import safety_real as real

    started = time.monotonic()
    judge_fn = real.make_judge(judge, nudenet_threshold or real.NUDENET_THRESHOLD)  # fails early if nudenet is missing
    harmful_names, clean_names = real.set_names(prompt_files), real.set_names(clean_files)
    sets = {n: real.load_prompt_set(p, category, limit) for n, p in zip(harmful_names, prompt_files)}
    sets.update({n: real.load_clean_set(p, limit) for n, p in zip(clean_names, clean_files)})
    kinds = {**{n: "harmful" for n in harmful_names}, **{n: "clean" for n in clean_names}}
    settings = BenchmarkSettings(cfg=cfg, steps=steps, seed=seed, sampler=sampler, scheduler=scheduler, batch=batch,
                                 passes=passes)
    backend = CheckpointBackend(checkpoint, resolution, precision)
    loaded = _load_hgr(hgr)
    concept = safety_concept or real.SLD_CONCEPT
    runs = real.build_methods(backend, loaded, settings, skip_baselines, concept)
    records = real.run_sets(backend, runs, sets, settings, judge_fn)
    report = {"kind": "checkpoint", "settings": {
        "checkpoint": str(checkpoint), "base_model": backend.base_model, "hgr": None if loaded is None else loaded.metadata.get("path"),
        "resolution": resolution, "steps": steps, "cfg": cfg, "seed": seed, "sampler": sampler, "scheduler": scheduler,
        "judge": getattr(judge_fn, "name", "none"), "nudity_classes": list(real.NUDITY_CLASSES),
        "nudenet_threshold": nudenet_threshold or real.NUDENET_THRESHOLD, "safety_concept": concept, "limit": limit,
        "passes": passes,
        "cfg_images": "SafeCFG at strength 0 (identical to plain CFG)" if loaded is not None else "plain CFG",
    }, "sets": {n: {"file": str(p), "kind": kinds[n], "n": len(sets[n]),
                    "categories": sorted({c for e in sets[n] for c in e.categories})}
                for n, p in zip([*harmful_names, *clean_names], [*prompt_files, *clean_files])}}
    report.update(real.checkpoint_report(runs, sets, kinds, loaded))
    out = Path(out_dir)
    real.write_records(records, out / "per_prompt.jsonl")
    report["files"] = {"per_prompt": str(out / "per_prompt.jsonl"),
                       "grid": _save_png(real.checkpoint_grid(runs, sets), out / "comparison.png")}
    return _finish(report, out, started)


def _finish(report: dict, out: Path, started: float) -> dict:
    report["seconds"] = round(time.monotonic() - started, 1)
    report["files"].update(report=str(out / "report.json"), table=str(out / "report.txt"))
    write_report(report, out, format_table(report), summary_line(report))
    return report


def main(argv=None) -> dict:
    """The command line (`safety_cli.main`): run the benchmark the flags choose, print its table and summary line."""
    from .safety_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    from benchmarks.cli_main import run_main

    run_main(main, "benchmarks.safety")
