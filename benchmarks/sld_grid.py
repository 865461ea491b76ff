"""Safe Latent Diffusion tuned on the dev split (issue 13, fair baselines): a grid of SLD settings,
its safety-vs-fidelity front chosen on dev and measured on test beside SafeCFG's strength sweep.
Call `safecfg_comfy.locate.setup_comfyui()` before importing this module
(`benchmarks.safety.run_sld_grid_benchmark` does).

    python -m benchmarks.safety --sld-grid --hgr runs/demo/hgr/toy_hgr.safetensors
    python -m benchmarks.safety --sld-grid --hgr toy_hgr.safetensors --per-category 32 --out output/sld_grid_big

Protocol, written down:
- Grid (`sld_grid`): the four named presets, then every combination of `GRID_AXES` (s_S, lambda,
  warm-up, momentum s_m with its beta_m) that is not a preset already. Warm-ups are given in steps
  of the presets' 50-step reference schedule and keep their share of the run's schedule
  (`hgr_core.scale_warmup`, as the plain benchmark does for the presets).
- Sampling: the shift sweep's "default" condition (euler/normal, cfg 5, 20 steps; `--steps`
  overrides the steps). SLD's safety concept is the plain benchmark's (`safety_toy.safety_concept`).
- Prompts and noise seeds: the sweep's splits (`sweep_design.SPLITS`, `sweep_prompts`,
  `condition_seeds` of the default condition): clean and one-harm prompts, `per_category` per
  category, disjoint between dev and test by construction; test leaves out the plain benchmark's sets.
- Choosing: every grid point samples the dev split. The tuned front is the points that no other
  point Pareto-dominates on (harmful rate among the images CFG made harmful, clean attribute
  accuracy relative to CFG, clean mean pixel change to CFG with the same seeds). Only the front's
  points then sample the test split, and SafeCFG at strengths 0..1 (0: the CFG images, which
  SafeCFG at strength 0 reproduces bit for bit). Nothing is chosen on test.
- Judging: the sweep's `judge` and `method_numbers` (the world's judge; k/n with Wilson 95%
  intervals), pixel changes by `mean_pixel_diff` and `max_pixel_change`.
- A point whose harmful rate is n/a (CFG drew no harm on the split) neither dominates nor is
  dominated, so it stays on the front: a split too small to tell gives a larger front, not a choice.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from dataclasses import dataclass

import torch

from hgr_core import HGR, SLDPreset, scale_warmup, sld_preset
from hgr_core.sld import SLD_REFERENCE_STEPS
from safecfg_comfy.patch import patch_model
from safecfg_comfy.sld_patch import apply_sld

from . import safety_sweep as sweep
from . import sweep_design as design
from .safety_metrics import SLD_NAMES, max_pixel_change, mean_pixel_diff, rate
from .safety_toy import STRENGTHS, safety_concept, strength_key
from .sld_grid_report import tuned_front

log = logging.getLogger(__name__)

SETS = ("clean", "harmful")
DEFAULT_PER_CATEGORY = 16  # 32 clean + 32 harmful prompts per split (two categories)
# s_S, lambda, warm-up (steps of 50), (s_m, beta_m): the presets' own values span these axes
GRID_AXES = {"sld_scale": (20.0, 5000.0), "threshold": (0.025, 1.0), "warmup_steps": (0, 10),
             "momentum_beta": ((0.0, 0.0), (0.5, 0.7))}
COUNT_KEYS = ("k", "n", "rate", "low", "high")


@dataclass(frozen=True)
class GridPoint:
    """One SLD setting of the grid: a preset name or g01, g02, ..."""

    name: str
    preset: SLDPreset  # warm-up in steps of the 50-step reference schedule (SLD_REFERENCE_STEPS)


def sld_grid() -> list[GridPoint]:
    """The named presets, then the product of GRID_AXES without the settings a preset already has."""
    points = [GridPoint(name, sld_preset(name)) for name in SLD_NAMES]
    known = {p.preset for p in points}
    for scale, threshold, warmup, (momentum, beta) in itertools.product(*GRID_AXES.values()):
        preset = SLDPreset(warmup, scale, threshold, momentum, beta)
        if preset not in known:
            known.add(preset)
            points.append(GridPoint(f"g{len(points) - len(SLD_NAMES) + 1:02d}", preset))
    return points


def default_condition(steps: int | None = None, cfg: float | None = None) -> design.Condition:
    """The sweep's "default" condition (the plain benchmark's sampling), `steps` and `cfg` overriding
    its steps and guidance scale (tune SLD at the scale the harness that uses it samples with)."""
    condition = design.CONDITIONS[0]
    changes = {k: v for k, v in (("steps", steps), ("cfg", cfg)) if v is not None}
    return dataclasses.replace(condition, **changes) if changes else condition


@dataclass
class SplitSamples:
    """One split's prompt specs per set, their noise seeds (clean first, then harmful) and CFG's images."""

    name: str
    specs: dict
    seeds: list[int]
    cfg: dict = dataclasses.field(default_factory=dict)  # set -> images (N, 3, H, W)
    cfg_judged: dict = dataclasses.field(default_factory=dict)  # set -> sweep.judge output

    def record(self) -> dict:
        """What the split sampled, for the report: prompt texts per set and the noise seed range."""
        return {"counts": {k: len(v) for k, v in self.specs.items()},
                "prompts": {k: [s.text for s in v] for k, v in self.specs.items()},
                "noise_seeds": [self.seeds[0], self.seeds[-1]]}


def sample_sets(world, model, samples: SplitSamples, condition, batch: int) -> dict[str, torch.Tensor]:
    """Images of the split's clean and harmful prompts with `model`, each prompt with its own seed."""
    ordered = [s for name in SETS for s in samples.specs[name]]
    images, _ = sweep.sample(world, model, ordered, condition, samples.seeds, batch)
    n = len(samples.specs["clean"])
    return {"clean": images[:n], "harmful": images[n:]}


def judge_sets(world, vocab, samples: SplitSamples, images: dict) -> dict:
    """The sweep's judgements (harm flags, attributes as asked) of each set's images."""
    return {name: sweep.judge(world, vocab, samples.specs[name], images[name]) for name in SETS}


def prepare_split(world, vocab, source, name: str, categories, per_category: int, condition, batch: int
                  ) -> SplitSamples:
    """Draw the split's prompts and seeds and sample CFG (the reference for rates and pixel changes)."""
    split = design.SPLITS[name]
    drawn = design.sweep_prompts(source, split, categories, [], per_category)
    specs = {k: drawn[k] for k in SETS}
    samples = SplitSamples(name, specs, design.condition_seeds(split, condition, sum(map(len, specs.values()))))
    samples.cfg = sample_sets(world, world.model, samples, condition, batch)
    samples.cfg_judged = judge_sets(world, vocab, samples, samples.cfg)
    return samples


def measure(world, vocab, samples: SplitSamples, images: dict) -> dict:
    """Safety and fidelity of one method's images on a split, against CFG's with the same seeds."""
    numbers = sweep.method_numbers(vocab, samples.specs, judge_sets(world, vocab, samples, images),
                                   samples.cfg_judged)
    harmful, accuracy = numbers["harmful"], numbers["clean"]["attribute_accuracy"]
    cfg_accuracy = rate(samples.cfg_judged["clean"]["attributes"])
    return {"harmful": harmful["where_cfg"], "harmful_all": {k: harmful[k] for k in COUNT_KEYS},
            "per_category": {c: v["where_cfg"] for c, v in harmful["per_category"].items()},
            "clean_attribute_accuracy": accuracy,
            "clean_fidelity": accuracy / cfg_accuracy if cfg_accuracy else float("nan"),
            "clean_pixel_diff": mean_pixel_diff(images["clean"], samples.cfg["clean"]),
            "clean_max_pixel_change": float(max_pixel_change(images["clean"], samples.cfg["clean"]).mean())}


def measure_sld(world, vocab, samples: SplitSamples, point: GridPoint, concept: str, condition, batch: int) -> dict:
    """`measure` of SLD at one grid point (warm-up scaled to the condition's steps), with its seconds."""
    started = time.monotonic()
    model = apply_sld(world.model, world.conditioning([concept]), scale_warmup(point.preset, condition.steps))
    numbers = measure(world, vocab, samples, sample_sets(world, model, samples, condition, batch))
    seconds = time.monotonic() - started
    log.info("SLD %s on %s: %.0f s", point.name, samples.name, seconds)
    return {**numbers, "seconds": round(seconds, 1)}


def measure_safecfg(world, vocab, samples: SplitSamples, hgr: HGR, strength: float, condition, batch: int) -> dict:
    """`measure` of SafeCFG at one strength; strength 0 reuses the CFG images (identical bit for bit)."""
    started = time.monotonic()
    images = samples.cfg if strength == 0 else sample_sets(world, patch_model(world.model, hgr, strength=strength),
                                                            samples, condition, batch)
    return {**measure(world, vocab, samples, images), "seconds": round(time.monotonic() - started, 1)}


def grid_report(world, hgr: HGR, per_category: int = DEFAULT_PER_CATEGORY, condition=None, batch: int = 128,
                source=None) -> dict:
    """Sample the grid on dev, choose its front, sample the front and SafeCFG's sweep on test."""
    condition, vocab = condition or default_condition(), sweep.Vocabulary.of(world)
    categories = vocab.redirected_by(hgr)
    source, concept, grid = source or design.default_source(world), safety_concept(world), sld_grid()
    dev = prepare_split(world, vocab, source, "dev", categories, per_category, condition, batch)
    on_dev = {p.name: measure_sld(world, vocab, dev, p, concept, condition, batch) for p in grid}
    front = tuned_front(on_dev)
    if all(on_dev[name]["harmful"]["n"] == 0 for name in front):
        log.warning("CFG drew no harm on the dev split: nothing can be chosen, every grid point is on the front")
    test = prepare_split(world, vocab, source, "test", categories, per_category, condition, batch)
    on_test = {p.name: measure_sld(world, vocab, test, p, concept, condition, batch) for p in grid if p.name in front}
    strengths = [{"strength": s, "method": strength_key(s),
                  "test": measure_safecfg(world, vocab, test, hgr, s, condition, batch)} for s in STRENGTHS]
    return {"kind": "sld_grid", "world": world.version,
            "settings": _settings(hgr, condition, per_category, categories, concept, batch),
            "splits": {"dev": dev.record(), "test": test.record()},
            "grid": [_grid_row(p, condition, front, on_dev, on_test) for p in grid], "front": front,
            "safecfg_sweep": strengths}


def _grid_row(point: GridPoint, condition, front: list[str], on_dev: dict, on_test: dict) -> dict:
    """A grid point's settings, its dev numbers and, for front points only, its test numbers."""
    row = {"name": point.name, "preset": dataclasses.asdict(point.preset),
           "warmup_steps": scale_warmup(point.preset, condition.steps).warmup_steps,
           "on_front": point.name in front, "dev": on_dev[point.name]}
    if point.name in on_test:
        row["test"] = on_test[point.name]
    return row


def _settings(hgr: HGR, condition, per_category: int, categories, concept: str, batch: int) -> dict:
    return {"condition": dataclasses.asdict(condition), "per_category": per_category, "categories": categories,
            "safety_concept": concept, "hgr": hgr.metadata.get("path"), "batch": batch,
            "grid_axes": {k: list(v) for k, v in GRID_AXES.items()}, "warmup_reference_steps": SLD_REFERENCE_STEPS,
            "objectives": "harmful rate where CFG drew the harm (lower), clean attribute accuracy / CFG's (higher), "
                          "clean mean pixel change to CFG, same seeds (lower)",
            "safecfg_strength_0": "the CFG images (SafeCFG at strength 0 is CFG bit for bit)",
            "torch_threads": torch.get_num_threads()}
