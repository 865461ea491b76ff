"""The shift sweep (issue 12): SafeCFG against plain CFG where users sample, not only where the HGR
was trained. Call `safecfg_comfy.locate.setup_comfyui()` before importing this module
(`benchmarks.safety.run_sweep_benchmark` does).

    python -m benchmarks.safety --sweep --hgr runs/demo/hgr/toy_hgr.safetensors             # test split
    python -m benchmarks.safety --sweep --thorough --hgr toy_hgr.safetensors                 # >= 128 prompts
    python -m benchmarks.safety --sweep --split dev --hgr candidate.safetensors              # choose recipes here

Every condition (`CONDITIONS`: sampler, scheduler, guidance scale, steps, negative prompt) samples
its own held-out prompts (`condition_prompts`) three ways: plain CFG, SafeCFG, and SafeCFG
redirecting only the first category of each two-harm pair (on the two-harm prompts only). Sets:
``clean`` and ``harmful`` (one harm, seen phrasings) with `per_category` prompts per category each, and ``two_harm`` with
`per_category` prompts per pair of categories (all pairs of the world's categories that the HGR
redirects). Unseen phrasings stay with the plain benchmark, which measures them at its settings.

What is sampled (conditions, splits, prompts, noise seeds) and its dev/test discipline live in
`benchmarks/sweep_design.py`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from hgr_core import HGR, HarmRecorder
from safecfg_comfy.compat import hgr_file_name
from safecfg_comfy.patch import patch_model
from toyworld import render
from toyworld.facts import HeldOutPrompts

from .safety_metrics import counted_rate, detection, mean_pixel_diff, rate
from .sweep_design import (CONDITIONS, DEFAULT_PER_CATEGORY, SEED_STRIDE, SETS, SPLITS, TRAINING_SEEDS, Condition,
                           Split, condition_prompts, condition_seeds, count_by_scene, default_source,
                           harm_pairs, spec_categories)

log = logging.getLogger(__name__)

# --- sampling and judging -------------------------------------------------------------------------

@dataclass(frozen=True)
class Vocabulary:
    """The world's category and attribute names, in its judge's output order."""

    categories: tuple[str, ...]
    shapes: tuple[str, ...]
    colours: tuple[str, ...]
    patterns: tuple[str, ...] = ()  # world v2: the object's pattern is an attribute too
    world: object = field(default=None, compare=False, repr=False)  # the toyworld.World named (None: names only)

    @classmethod
    def of(cls, world) -> "Vocabulary":
        """Names a world declares (`world.categories`, `world.attributes`), else the shipped world's (toyworld.render)."""
        attributes = getattr(world, "attributes", {})
        return cls(tuple(getattr(world, "categories", render.CATEGORIES)),
                   tuple(attributes.get("shape", render.SHAPES)), tuple(attributes.get("colour", render.COLOURS)),
                   tuple(attributes.get("pattern", ())), world)

    def redirected_by(self, hgr) -> list[str]:
        """The world's categories `hgr` was trained for, in the judge's order; refuses an HGR for none of
        them or one trained on another toy world."""
        if hasattr(self.world, "check_hgr_trained_here"):
            self.world.check_hgr_trained_here(hgr.metadata.get("base_model"), hgr_file_name(hgr))
        categories = [c for c in self.categories if c in hgr.config.categories]
        if not categories:
            raise ValueError(f"the HGR redirects {list(hgr.config.categories)}, "
                             f"none of the world's {list(self.categories)}")
        return categories


def sample(world, model, specs: list, condition: Condition, seeds: list[int], batch: int,
           recorder: HarmRecorder | None = None) -> tuple[torch.Tensor, tuple | None]:
    """Images (N, 3, H, W) and, with a recorder, (harm scores (N,), window coverage (N,)) of `specs`."""
    images, scores = [], []
    for first in range(0, len(specs), batch):
        if recorder is not None:
            recorder.reset()
        # no_grad: ComfyUI's executor samples under inference mode; uni_pc would otherwise build a graph.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Should have tb<=t1")  # torchsde at sigma_max: float rounding
            latents = world.sample(model, [s.text for s in specs[first:first + batch]], condition.negative,
                                   seeds[first:first + batch], condition.cfg, condition.steps, condition.sampler,
                                   condition.scheduler)
        images.append(world.decode(latents))
        if recorder is not None:
            result = recorder.generation_result()
            scores.append((result.score, result.coverage))
    return torch.cat(images), (tuple(torch.cat(parts) for parts in zip(*scores)) if scores else None)


def judge(world, vocab: Vocabulary, specs: list, images: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: harm flags (N, K) in vocab.categories order; shape and colour (and, in world v2, the
    pattern) as the prompt asks."""
    result = world.judge(images)
    shape_ok = result.shape.cpu().numpy() == np.array([vocab.shapes.index(s.shape) for s in specs])
    colour_ok = result.colour.cpu().numpy() == np.array([vocab.colours.index(s.colour) for s in specs])
    if vocab.patterns:
        colour_ok &= result.pattern.cpu().numpy() == np.array([vocab.patterns.index(s.pattern) for s in specs])
    return {"harm": result.harmful.cpu().numpy().astype(bool), "attributes": shape_ok & colour_ok}


def count(flags) -> dict:
    """k of n flags with the rate and its Wilson 95% interval."""
    flags = np.asarray(flags, dtype=bool)
    return counted_rate(int(flags.sum()), int(flags.size))


def harm_counts(vocab: Vocabulary, specs: list, harm: np.ndarray, cfg_harm: np.ndarray | None = None) -> dict:
    """Per category of the prompts: the share of images showing it; with `cfg_harm`, also among the
    prompts whose CFG image (same seed) showed it ("where CFG draws the harm")."""
    out = {}
    for c in sorted({c for s in specs for c in spec_categories(s)}, key=vocab.categories.index):
        mine, k = np.array([c in spec_categories(s) for s in specs]), vocab.categories.index(c)
        out[c] = count(harm[mine, k])
        if cfg_harm is not None:
            out[c]["where_cfg"] = count(harm[mine & cfg_harm[:, k], k])
    return out


def own_harm(vocab: Vocabulary, specs: list, harm: np.ndarray) -> np.ndarray:
    """(N,) each single-harm prompt's image shows the prompt's own category."""
    return np.array([harm[i, vocab.categories.index(spec_categories(s)[0])] for i, s in enumerate(specs)])


def method_numbers(vocab, specs, judged, cfg_judged) -> dict:
    """One method's rates on the sets it sampled (judged[set]); CFG's judgements give 'where CFG draws'."""
    out = {}
    if "harmful" in judged:
        mine, cfg = own_harm(vocab, specs["harmful"], judged["harmful"]["harm"]), \
            own_harm(vocab, specs["harmful"], cfg_judged["harmful"]["harm"])
        out["harmful"] = {**count(mine), "where_cfg": count(mine[cfg]),
                          "per_category": harm_counts(vocab, specs["harmful"], judged["harmful"]["harm"],
                                                      cfg_judged["harmful"]["harm"])}
    if "two_harm" in judged:
        two = specs["two_harm"]
        out["two_harm"] = {}
        for pair in dict.fromkeys(spec_categories(s) for s in two):
            rows = np.array([spec_categories(s) == pair for s in two])
            chosen = [s for s, r in zip(two, rows) if r]
            per = harm_counts(vocab, chosen, judged["two_harm"]["harm"][rows], cfg_judged["two_harm"]["harm"][rows])
            idx = [vocab.categories.index(c) for c in pair]
            out["two_harm"]["+".join(pair)] = {**per, "any": count(judged["two_harm"]["harm"][rows][:, idx].any(1))}
    if "clean" in judged:
        out["clean"] = {"attribute_accuracy": rate(judged["clean"]["attributes"]),
                        "any_harm": count(judged["clean"]["harm"].any(1))}
    return out


def set_spans(specs: dict, names: tuple[str, ...] = SETS) -> dict[str, slice]:
    """Where each named set sits in the list of `names`' specs concatenated in order."""
    bounds = np.cumsum([0, *(len(specs[name]) for name in names)])
    return {name: slice(int(a), int(b)) for name, a, b in zip(names, bounds[:-1], bounds[1:])}


def sample_methods(world, hgr: HGR, specs: dict, condition: Condition, seeds: list[int], batch: int,
                   passes: int = 1) -> tuple:
    """CFG and SafeCFG (`passes` HGR applications per step) on every set, "only first category" on the
    two-harm set, same seeds.

    Returns (images[method][set], SafeCFG (scores, coverage)[set], seconds[method group]).
    """
    ordered = [s for name in SETS for s in specs[name]]
    spans = set_spans(specs)
    recorder = HarmRecorder.for_hgr(hgr)
    base, seconds, t = world.model, {}, time.monotonic()
    cfg, _ = sample(world, base, ordered, condition, seeds, batch)  # plain CFG == SafeCFG at strength 0
    seconds["cfg"], t = time.monotonic() - t, time.monotonic()
    safecfg = patch_model(base, hgr, on_score=recorder, passes=passes)
    safe, scores = sample(world, safecfg, ordered, condition, seeds, batch, recorder)
    seconds["safecfg"], t = time.monotonic() - t, time.monotonic()
    images = {"cfg": {n: cfg[spans[n]] for n in SETS}, "safecfg": {n: safe[spans[n]] for n in SETS}}
    for first in dict.fromkeys(spec_categories(s)[0] for s in specs["two_harm"]):
        only, _ = sample(world, patch_model(base, hgr, categories=first, passes=passes), specs["two_harm"], condition,
                         seeds[spans["two_harm"]], batch)
        images[f"only_{first}"] = {"two_harm": only}
    seconds["only"] = time.monotonic() - t
    return images, {n: tuple(part[spans[n]] for part in scores) for n in SETS}, seconds


def run_condition(world, hgr: HGR, vocab: Vocabulary, specs: dict, split: Split, condition: Condition,
                  batch: int, passes: int = 1) -> tuple[dict, dict]:
    """Sample and measure one condition. Returns (its report entry, images[method][set])."""
    seeds = condition_seeds(split, condition, sum(len(specs[name]) for name in SETS))
    images, scores, seconds = sample_methods(world, hgr, specs, condition, seeds, batch, passes)
    judged = {m: {name: judge(world, vocab, specs[name], imgs) for name, imgs in sets.items()}
              for m, sets in images.items()}
    methods = {m: method_numbers(vocab, specs, judged[m], judged["cfg"]) for m in judged}
    cfg_accuracy = methods["cfg"]["clean"]["attribute_accuracy"]
    harmful = torch.cat([scores["harmful"][0], scores["two_harm"][0]]).numpy()
    detected = detection(harmful, scores["clean"][0].numpy(), float(hgr.metadata.get("threshold", float("nan"))))
    coverage = torch.cat([c for _, c in scores.values()])
    entry = {"condition": dataclasses.asdict(condition), "seeds": [seeds[0], seeds[-1]], "methods": methods,
             "clean_fidelity": (methods["safecfg"]["clean"]["attribute_accuracy"] / cfg_accuracy if cfg_accuracy
                                else float("nan")),
             "clean_pixel_diff": mean_pixel_diff(images["safecfg"]["clean"], images["cfg"]["clean"]),
             "detection": {**detected, "min_window_coverage": float(coverage.min())},
             "harmful_by_scene": count_by_scene(specs["harmful"],
                                                own_harm(vocab, specs["harmful"], judged["safecfg"]["harmful"]["harm"]),
                                                own_harm(vocab, specs["harmful"], judged["cfg"]["harmful"]["harm"])),
             "seconds": {k: round(v, 1) for k, v in seconds.items()}}
    log.info("%s: %.0f s", condition.name, sum(seconds.values()))
    return entry, images


def condition_grid(specs: dict, images: dict, rows_per_set: int = 2, scale: int = 3):
    """Picture of one condition: rows = the first prompts of each set, columns = CFG, SafeCFG, only-first."""
    from training.preview import image_grid

    from .report_pictures import label_rows

    picks = [(name, i) for name in SETS for i in range(min(rows_per_set, len(specs[name])))]
    extra = [k for k in images if k.startswith("only_")]
    columns = []
    for key in ("cfg", "safecfg", *extra):
        blank = torch.ones_like(images["cfg"]["clean"][:1])[0]  # white where a method did not sample a set
        columns.append(torch.stack([images[key][name][i] if name in images[key] else blank for name, i in picks]))
    titles = [f"{name}: {specs[name][i].text}" for name, i in picks]
    grid = image_grid(columns, ["CFG", "SafeCFG", *(k.replace("_", " ") for k in extra)], [""] * len(titles), scale)
    return label_rows(grid, titles, columns[0].shape[-2] * scale)


def sweep_report(world, hgr: HGR, split_name: str = "test", per_category: int = DEFAULT_PER_CATEGORY,
                 conditions=CONDITIONS, batch: int = 128, source: HeldOutPrompts | None = None,
                 picture=None, passes: int = 1) -> dict:
    """Run every condition and build the report dict; `picture(condition, specs, images)` may save a grid;
    `passes`: SafeCFG's HGR applications per step."""
    if split_name not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split_name!r}")
    split, vocab = SPLITS[split_name], Vocabulary.of(world)
    categories = vocab.redirected_by(hgr)
    pairs = harm_pairs(vocab.categories, hgr.config.categories)
    prompts = condition_prompts(source or default_source(world), split, categories, pairs, per_category, conditions)
    entries = []
    for condition in conditions:
        specs = prompts[condition.name]
        entry, images = run_condition(world, hgr, vocab, specs, split, condition, batch, passes)
        if picture is not None:
            entry["picture"] = picture(condition, specs, images)
        entries.append(entry)
    return {"kind": "sweep", "settings": {
        "split": split.name, "per_category": per_category, "categories": categories,
        "pairs": ["+".join(p) for p in pairs],
        "prompts": {name: len(v) for name, v in prompts[conditions[0].name].items()},
        "prompts_per_condition": "distinct", "hgr": hgr.metadata.get("path"),
        "threshold": float(hgr.metadata.get("threshold", float("nan"))), "batch": batch, "passes": passes,
        "noise_seeds": f"{split.noise_base} + slot * {SEED_STRIDE} + i (torch keeps the low 32 bits; training draws "
                       f"below {TRAINING_SEEDS})",
        "prompt_seeds": split.prompt_seeds, "prompt_bucket": f"sha256(text)[0] % 2 == {split.bucket}",
        "cfg_images": "plain CFG (the base model; identical to SafeCFG at strength 0)",
        "torch_threads": torch.get_num_threads(),
    }, "conditions": entries}
