"""How much harm the concept targets themselves leave: the teacher an HGR trained without safe
counterparts imitates (`train_hgr`'s concept-only regime, the I2P case).

    python -m benchmarks.concept_targets --split dev               # toy world v2, the shift sweep's nine conditions

Samples the shift sweep's harmful and two-harm prompts (`benchmarks.safety_sweep`: prompts, noise
seeds, conditions) under plain CFG and under CFG steered by the concept target, whose conditional
prediction is `training.trajectories.concept_steered_cond`: eps_c + sum_k (eps_u - eps(concept_k)).
A two-harm prompt is steered both ways `train_hgr --multi-concept-target` offers: "joined" (one
concept of the categories' texts joined) and "sum" (one term per category; for one category the two
are the same). Counted as everywhere in the sweep: each prompt's harms in the steered image, among
the harms CFG drew with the same seed, Wilson 95%; pooled over conditions also Wilson on the scene
clusters' effective size (every condition samples the same prompts, so one scene's harms recur in
each; `safety_metrics.pooled_rate`). No HGR is involved: an HGR can only learn the
redirection its target shows it, so a harm the target leaves is one the HGR is not taught to remove.
The last stdout line is `teacher_single=… teacher_two_harm_joined=… teacher_two_harm_sum=…`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from training.flags import add_threads_flag, start_cli

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("output/benchmarks/concept_targets")
FORMS = ("joined", "sum")

log = logging.getLogger("benchmarks.concept_targets")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.concept_targets", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--split", choices=("test", "dev"), default="dev", help="the sweep's prompts and noise seeds")
    p.add_argument("--per-category", type=int, default=8, help="harmful prompts per category (and per pair)")
    p.add_argument("--conditions", default=None, help="comma-separated sweep condition names (default: all)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for report.json and report.txt")
    p.add_argument("--toy-weights", type=Path, default=None, help="toy-world weights folder (default: toy world v2)")
    add_threads_flag(p)
    return p


def steered_model(world, specs: list, concepts: dict, form: str):
    """The world's model patched so that each prompt's conditional prediction is the concept target's
    (`concept_steered_cond`) for its categories, in `form`."""
    from training.trajectories import concept_steered_cond

    from .sweep_design import spec_categories

    categories = [spec_categories(s) for s in specs]
    if form == "joined":
        parts = [world.encode_text([", ".join(concepts[c] for c in cats) for cats in categories])]
    else:  # one embedding per category slot; a prompt with fewer categories gets "" there, masked out below
        width = max(len(cats) for cats in categories)
        parts = [world.encode_text([concepts[cats[k]] if k < len(cats) else "" for cats in categories])
                 for k in range(width)]
    used = [torch.tensor([float(form == "joined" or k < len(cats)) for cats in categories]).view(-1, 1, 1, 1)
            for k in range(len(parts))]

    def steer(args):
        d_c, d_u = args["conds_out"][0], args["conds_out"][1]
        x, sigma, model = args["input"], args["sigma"], args["model"]
        d_targets = []
        for embedding, mask in zip(parts, used):
            d_t = model.apply_model(x, sigma, c_crossattn=embedding.to(x.dtype))
            d_targets.append(mask * d_t + (1 - mask) * d_u)  # an unused slot adds d_u - d_u = 0
        return [concept_steered_cond(d_c, d_u, d_targets), *args["conds_out"][1:]]

    patched = world.model.clone()
    patched.set_model_sampler_pre_cfg_function(steer, disable_cfg1_optimization=True)
    return patched


def harms_left(vocab, specs: list, cfg_harm, steered_harm) -> dict:
    """Harms the steered images show among those CFG drew (same prompt, same seed), as `count` gives,
    with "by_scene" ({scene: [left, drawn]}, `count_by_scene`) for the scene-clustered bound."""
    from .safety_sweep import count
    from .sweep_design import count_by_scene, spec_categories

    harms = [(s, bool(steered_harm[i, k]), bool(cfg_harm[i, k]))  # one row per harm of each prompt
             for i, s in enumerate(specs) for k in (vocab.categories.index(c) for c in spec_categories(s))]
    left = count(np.array([hit for _, hit, drawn in harms if drawn], dtype=bool))
    return {**left, "by_scene": count_by_scene(*zip(*harms)) if harms else {}}


def run(world, split_name: str, per_category: int, conditions, batch: int) -> dict:
    """Per condition and pooled: harms left by the concept target, single-harm (one form) and two-harm (both)."""
    from toyworld.facts import facts_of

    from .safety_metrics import pooled_rate
    from .safety_sweep import Vocabulary, judge, sample, set_spans
    from .sweep_design import SETS, SPLITS, condition_seeds, default_source, harm_pairs, sweep_prompts

    split, vocab, facts = SPLITS[split_name], Vocabulary.of(world), facts_of(world)
    specs = sweep_prompts(default_source(world), split, vocab.categories, harm_pairs(vocab.categories, vocab.categories),
                          per_category)
    rows = []
    for condition in conditions:
        seeds, spans = condition_seeds(split, condition, sum(len(specs[n]) for n in SETS)), set_spans(specs)
        entry = {"condition": condition.name}
        for name in ("harmful", "two_harm"):
            chosen, chosen_seeds = specs[name], seeds[spans[name]]
            with torch.no_grad():
                cfg_harm = judge(world, vocab, chosen, sample(world, world.model, chosen, condition, chosen_seeds,
                                                               batch)[0])["harm"]
            for form in (("joined",) if name == "harmful" else FORMS):
                model = steered_model(world, chosen, facts.concepts, form)
                with torch.no_grad():
                    images, _ = sample(world, model, chosen, condition, chosen_seeds, batch)
                left = harms_left(vocab, chosen, cfg_harm, judge(world, vocab, chosen, images)["harm"])
                key = "single" if name == "harmful" else f"two_harm_{form}"
                entry[key] = left
        log.info("%s: single %d/%d, two-harm joined %d/%d, sum %d/%d", condition.name, entry["single"]["k"],
                 entry["single"]["n"], entry["two_harm_joined"]["k"], entry["two_harm_joined"]["n"],
                 entry["two_harm_sum"]["k"], entry["two_harm_sum"]["n"])
        rows.append(entry)
    # every condition samples the same prompts: the clustered bound counts a scene once across them
    pooled = {key: pooled_rate([r[key] for r in rows], [r[key]["by_scene"] for r in rows])
              for key in ("single", "two_harm_joined", "two_harm_sum")}
    return {"kind": "concept_targets", "split": split.name, "per_category": per_category,
            "prompts": {name: len(specs[name]) for name in ("harmful", "two_harm")},
            "concepts": dict(facts.concepts), "conditions": rows, "pooled": pooled}


def report_text(report: dict) -> str:
    from .report_text import clustered_text

    def cell(c):
        return f"{c['k']}/{c['n']} = {c['rate']:.3f} [{c['low']:.3f}, {c['high']:.3f}]"

    lines = [f"harms the concept target leaves where CFG drew them ({report['split']} split; "
             f"{report['prompts']['harmful']} harmful + {report['prompts']['two_harm']} two-harm prompts per condition)",
             "condition | single harm | two harms, joined concept | two harms, summed per category"]
    lines += [f"{r['condition']} | {cell(r['single'])} | {cell(r['two_harm_joined'])} | {cell(r['two_harm_sum'])}"
              for r in report["conditions"]]
    p = report["pooled"]
    lines.append(f"pooled | {cell(p['single'])} | {cell(p['two_harm_joined'])} | {cell(p['two_harm_sum'])}")
    lines += [f"pooled {key}: {clustered_text(p[key], '')}" for key in p if clustered_text(p[key])]
    return "\n".join(lines)


def summary_line(report: dict) -> str:
    p = report["pooled"]
    return (f"teacher_single={p['single']['rate']:.4f} teacher_two_harm_joined={p['two_harm_joined']['rate']:.4f} "
            f"teacher_two_harm_sum={p['two_harm_sum']['rate']:.4f}")


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    start_cli(args.threads)
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))
    from safecfg_comfy.locate import setup_comfyui

    setup_comfyui()
    from toyworld import load_world

    from .safety_report import write_report
    from .sweep_design import select_conditions

    world, started = load_world(weights_dir=args.toy_weights), time.monotonic()
    report = run(world, args.split, args.per_category, select_conditions(args.conditions), args.batch_size)
    report["seconds"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    text = report_text(report)
    write_report(report, args.out, text, summary_line(report))
    print(text)
    print(summary_line(report), flush=True)
    return report


if __name__ == "__main__":
    from benchmarks.cli_main import run_main

    run_main(main, "benchmarks.concept_targets")
