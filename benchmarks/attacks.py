"""Prompt-trick attacks against every defence on the toy world: `python -m benchmarks.attacks`.

Built (issue 17): attack 1, the concept-vector attack in Ring-A-Bell's form (a harmful-minus-safe
embedding direction added to clean prompts) and in ComfyUI's core-node form (ConditioningAverage
with a harmful carrier prompt), `attack_concept.py`; attack 2, a discrete token search in
UnlearnDiffAtk / P4D's style (a filter-passing suffix per category, searched under plain CFG on dev
prompts and seeds), `attack_search.py`; attack 3, an adaptive white-box attack on the text
embedding, back-propagated through sampling with each defence (CFG, SafeCFG, SLD max),
`attack_adaptive.py`; attack 4, harm from the input image (img2img and inpainting of a harmful
render with a clean prompt) against the sampled defences and three gates, `attack_image.py`.

    python -m benchmarks.attacks --hgr H --build   # the token search on dev, cached in OUT/build (once)
    python -m benchmarks.attacks --hgr H           # the evaluation (makes the build first if it is missing)

Discipline: the attacks are built from dev-split harmful prompts; every defence's attack (kind and
strength, the same grid for all) is chosen by its ASR on the dev split's clean prompts and noise
seeds (successive halving, `attack_run.Halving`: every set on a third of the dev prompts, the three
best on all); the test split's clean prompts and fresh noise seeds only report. On test, CFG samples
every attacked set (which attacks work at all) and every other defence only what is reported: its
dev choice and the clean rows; `--every-set` samples every defence on every set for the
worst-test-ASR column. The token search, the one attack that depends on no defence, is the build
(`attack_build`: made once per world, dev prompts, sampling and search budget, and cached). Optional defences: `--lora` (a safety LoRA, alone and under SafeCFG) and
`--sld-front` (the SLD grid's dev-tuned point, `sld_tuned`); `--passes N` runs every SafeCFG defence
with N HGR passes per step (SafeCFGApply's `passes`; the token search does not depend on it, so the
build is shared). Rates come with Wilson 95% intervals.
The summary line is printed last (`asr_sld_tuned`, `asr_safety_lora`, `asr_safety_lora_safecfg`
appended when those run):

    asr_cfg=… asr_safecfg=… asr_safecfg_adaptive=… asr_sld_best=… asr_negative=… asr_filter=…

(`asr_safecfg_adaptive`: SafeCFG's ASR under the white-box attack at the smallest budget that
breaks plain CFG, the largest budget tried if none does.)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from toyworld.files import V2_WEIGHTS_DIR
from training.flags import start_cli, unit_interval_list

from .cli_main import add_passes_flag

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("output/benchmarks/attacks")
DEFAULT_PER_CATEGORY = 16  # test: 48 attacked clean prompts per attacked set (3 categories)
DEFAULT_DEV_PER_CATEGORY = 8

log = logging.getLogger("benchmarks.attacks")


@dataclass(frozen=True)
class AttackSettings:
    """How every defence samples (the same for all, so images compare seed for seed)."""

    cfg: float = 7.0
    steps: int = 20
    sampler: str = "euler"
    scheduler: str = "normal"
    batch: int = 128
    image_denoise: tuple[float, ...] = (0.3, 0.5, 0.7)  # the image attack's denoise levels
    every_set: bool = False  # test: every defence on every attacked set (else: CFG on all, the others on their
    # dev choice and the clean rows; `attack_run.sets_to_sample`)
    image_per_category: int = 6  # the image attack's test input images per category (its dev split: half)
    passes: int = 1  # SafeCFG's HGR applications per step in every SafeCFG defence (SafeCFGApply's "passes")


@dataclass(frozen=True)
class SearchBudget:
    """What one category's search may spend (the same for every category)."""

    words: int = 3  # suffix length; the attacked sets use its first 1..words words
    rounds: int = 2  # passes over the positions
    candidates: int = 32  # words tried per position per pass
    pool: int = 256  # the prior's top words the candidates are drawn from
    prompts: int = 8  # dev clean prompts (one dev noise seed each) the objective averages over
    steps: int = 10  # sampling steps while searching

    def evaluations(self) -> int:
        """UNet evaluations one category's search costs (CFG: 2 per step)."""
        images = (1 + self.rounds * self.words * self.candidates) * self.prompts
        return images * self.steps * 2

@dataclass(frozen=True)
class AdaptiveBudget:
    """The white-box attack's settings (`attack_adaptive`), fixed in advance, the same for every defence."""

    epsilons: tuple[float, ...] = (0.1, 0.2, 0.4, 0.8)  # per-token L2 budgets, relative to the token's norm
    iterations: int = 16  # gradient steps per prompt and budget
    steps: int = 8  # Euler steps the attacker back-propagates through (4 transferred worse to 20 on dev)
    seeds: int = 2  # noise seeds the attacker's loss averages over
    alpha: float = 0.25  # step size, in multiples of the budget
    per_category: int = 6  # test clean prompts attacked per category
    every_budget: bool = False  # every budget for every defence (else: bisection for the breaking budget)


def run_attack_benchmark(hgr, out_dir=DEFAULT_OUT, per_category: int = DEFAULT_PER_CATEGORY,
                         dev_per_category: int = DEFAULT_DEV_PER_CATEGORY, world=None, settings=None,
                         comfyui=None, budget: SearchBudget | None = None,
                         adaptive: AdaptiveBudget | None = None, extra=None, build_dir=None) -> dict:
    """Dev (choices), then test (report); writes report.json, report.txt and comparison.png in out_dir.
    `extra`: the defences added when their inputs exist (`attack_run.ExtraDefences`: a safety LoRA, a tuned
    SLD point). `build_dir` (default out_dir/build): the cached token search (`attack_build`), made first
    if it is missing or was made for other inputs."""
    from .safety import _load_hgr, _save_png, _setup

    _setup(comfyui)
    from toyworld import load_world

    from . import attack_report as reporting
    from .attack_adaptive import run_adaptive
    from .attack_run import ExtraDefences, Halving, run_split
    from .report_pictures import attack_plot
    from .safety_report import write_report
    from .sweep_design import SPLITS

    started, out, loaded = time.monotonic(), Path(out_dir), _load_hgr(hgr)
    if loaded is None:
        raise ValueError("--hgr: the attack benchmark needs an HGR .safetensors for the SafeCFG rows")
    world = world if world is not None else load_world(weights_dir=V2_WEIGHTS_DIR)
    settings = settings or AttackSettings()
    budget, extra = budget or SearchBudget(), extra or ExtraDefences()
    found, cached = build_attacks(world, loaded, dev_per_category, settings, budget,
                                  Path(build_dir) if build_dir is not None else out / "build")
    dev, _ = run_split(world, loaded, SPLITS["dev"], dev_per_category, settings, SPLITS["dev"], found, extra=extra,
                       halving=Halving())
    test, images = run_split(world, loaded, SPLITS["test"], per_category, settings, SPLITS["dev"], found,
                             keep_images=True, extra=extra, chosen=_dev_choices(dev, settings))
    report = {"world": world.version, "hgr": loaded.metadata.get("path"), "settings": dataclasses.asdict(settings),
              "search_budget": dataclasses.asdict(budget), "token_search": found, "token_search_cached": cached,
              **extra.record(),
              "dev": dev, "test": test, "defences": reporting.results(dev, test, settings.steps)}
    report["image_attack"], image_images = image_attack(world, loaded, settings, extra)
    adaptive = adaptive or AdaptiveBudget()
    report["adaptive_budget"] = dataclasses.asdict(adaptive)
    report["adaptive"] = run_adaptive(world, loaded, SPLITS["test"], adaptive.per_category, settings, adaptive)
    report["summary"] = reporting.summary(report["defences"], report["adaptive"])
    report["files"] = {"grid": _save_png(reporting.attack_grid(report, images), out / "comparison.png"),
                       "plot": _save_png(attack_plot(report["defences"]), out / "safety_fidelity.png"),
                       "image_grid": _save_png(reporting.image_attack_grid(report["image_attack"], image_images),
                                               out / "image_attack.png"),
                       "report": str(out / "report.json"), "table": str(out / "report.txt")}
    report["seconds"] = round(time.monotonic() - started, 1)
    write_report(report, out, reporting.format_table(report), reporting.summary_line(report))
    return report


def build_attacks(world, hgr, dev_per_category: int, settings, budget, build_dir: Path) -> tuple[dict, bool]:
    """The token search on dev (`attack_run.search_on_dev`), read from `build_dir` when cached for these inputs
    (`attack_build`). Returns (its suffixes, whether they were cached)."""
    from .attack_build import build_key, token_search
    from .attack_run import attacked_categories, search_on_dev
    from .sweep_design import SPLITS

    key = build_key(world, attacked_categories(world, hgr), dev_per_category, settings, budget)
    return token_search(build_dir, key, lambda: search_on_dev(world, hgr, SPLITS["dev"], dev_per_category, settings,
                                                               budget))


def image_attack(world, hgr, settings, extra) -> tuple[dict, dict]:
    """Attack 4 (`attack_image`): dev chooses each defence's mode and denoise, test reports
    (`settings.image_per_category` input images per category, dev half as many). Returns (its report, the
    test images)."""
    from . import attack_report as reporting
    from .attack_image import image_cost, image_defences, run_image_split
    from .attack_run import SAMPLED
    from .sweep_design import SPLITS

    sampled = image_defences((*SAMPLED, *extra.names()))
    per_category = settings.image_per_category
    dev, _ = run_image_split(world, hgr, SPLITS["dev"], max(1, per_category // 2), settings, extra=extra,
                             clean_rows=False)
    test, images = run_image_split(world, hgr, SPLITS["test"], per_category, settings, keep_images=True, extra=extra,
                                   chosen=_dev_choices(dev, settings, sampled))
    return {"dev": dev, "test": test, "defences": reporting.results(dev, test, settings.steps, sampled, image_cost)}, images


def _dev_choices(dev: dict, settings, defences=None) -> dict | None:
    """What limits the test split's sampling: each defence's dev-chosen set (None with --every-set)."""
    from .attack_report import choose

    return None if settings.every_set else choose(dev, defences)


def build_parser() -> argparse.ArgumentParser:
    d = AttackSettings()
    p = argparse.ArgumentParser(prog="python -m benchmarks.attacks", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--hgr", type=Path, required=True, help="HGR .safetensors trained for the world")
    p.add_argument("--toy-weights", type=Path, default=V2_WEIGHTS_DIR, help="toy-world weights folder")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for report.json, report.txt, comparison.png")
    p.add_argument("--per-category", type=int, default=DEFAULT_PER_CATEGORY,
                   help="test split: attacked clean prompts per harm category")
    p.add_argument("--dev-per-category", type=int, default=DEFAULT_DEV_PER_CATEGORY,
                   help="dev split: attacked clean prompts per category (the attacker's choices) and harmful "
                        "prompts per category the attacks are built from")
    p.add_argument("--cfg", type=float, default=d.cfg, help="guidance scale")
    p.add_argument("--steps", type=int, default=d.steps, help="sampling steps")
    p.add_argument("--sampler", default=d.sampler, help="ComfyUI sampler name")
    p.add_argument("--scheduler", default=d.scheduler, help="ComfyUI scheduler name")
    p.add_argument("--batch-size", type=int, default=d.batch, help="prompts per sampling call")
    p.add_argument("--image-denoise", type=unit_interval_list, default=d.image_denoise, metavar="D,D,...",
                   help="image attack: denoise levels of img2img and inpainting, each in (0, 1]")
    p.add_argument("--image-per-category", type=int, default=d.image_per_category,
                   help="image attack: test input images per harm category (its dev split: half as many)")
    add_passes_flag(p, "every SafeCFG defence (safecfg, the image attack's and the white-box attack's, "
                       "safety_lora_safecfg)", d.passes)
    p.add_argument("--every-set", action="store_true",
                   help="test split: sample every defence on every attacked set, for the worst-test-ASR column (about "
                        "three times the test split's sampling); by default CFG samples every set and each other "
                        "defence its dev-chosen one and the clean rows")
    b = SearchBudget()
    p.add_argument("--search-words", type=int, default=b.words, help="token search: words in each category's suffix")
    p.add_argument("--search-rounds", type=int, default=b.rounds, help="token search: passes over the suffix")
    p.add_argument("--search-candidates", type=int, default=b.candidates,
                   help="token search: words tried per position per pass")
    p.add_argument("--search-prompts", type=int, default=b.prompts,
                   help="token search: dev clean prompts the objective averages over")
    p.add_argument("--search-steps", type=int, default=b.steps, help="token search: sampling steps while searching")
    a = AdaptiveBudget()
    p.add_argument("--adaptive-per-category", type=int, default=a.per_category,
                   help="white-box attack: test clean prompts attacked per category")
    p.add_argument("--adaptive-iterations", type=int, default=a.iterations, help="white-box attack: gradient steps")
    p.add_argument("--adaptive-steps", type=int, default=a.steps,
                   help="white-box attack: Euler steps back-propagated through")
    p.add_argument("--adaptive-every-budget", action="store_true",
                   help="white-box attack: every budget for every defence (about twice the cost); by default a bisection "
                        "over the budgets finds each defence's breaking budget")
    p.add_argument("--lora", type=Path, default=None,
                   help="a safety LoRA for this world (python -m training.finetune_safe): adds it alone and under "
                        "SafeCFG as defences")
    p.add_argument("--sld-front", type=Path, default=None,
                   help="an SLD grid report.json for this world and HGR (python -m benchmarks.safety --sld-grid): adds "
                        "its dev-tuned point as the defence sld_tuned")
    p.add_argument("--build", action="store_true",
                   help="only make the attacks' build (the token search on dev, cached in --build-dir) and stop; "
                        "an evaluation makes it first where it is missing or was made for other inputs")
    p.add_argument("--build-dir", type=Path, default=None, help="the cached token search (default: OUT/build)")
    p.add_argument("--comfyui", type=Path, default=None, help="ComfyUI folder (default: COMFYUI_PATH or the test copy)")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    start_cli()
    for flag, value in (("--per-category", args.per_category), ("--dev-per-category", args.dev_per_category),
                        ("--steps", args.steps), ("--batch-size", args.batch_size),
                        ("--image-per-category", args.image_per_category),
                        ("--search-words", args.search_words), ("--search-rounds", args.search_rounds),
                        ("--search-candidates", args.search_candidates), ("--search-prompts", args.search_prompts),
                        ("--search-steps", args.search_steps), ("--adaptive-per-category", args.adaptive_per_category),
                        ("--adaptive-iterations", args.adaptive_iterations), ("--adaptive-steps", args.adaptive_steps)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    from .safety import _setup

    _setup(args.comfyui)
    from toyworld import load_world

    from .attack_report import format_table, summary_line
    from .attack_run import ExtraDefences
    from .sld_grid_report import read_tuned_point

    if args.lora is not None and not args.lora.is_file():
        raise ValueError(f"--lora: no file {args.lora.name}")
    world = load_world(weights_dir=args.toy_weights)
    extra = ExtraDefences(args.lora, None if args.sld_front is None else read_tuned_point(args.sld_front, world.version,
                                                                                               args.cfg))

    settings = AttackSettings(args.cfg, args.steps, args.sampler, args.scheduler, args.batch_size, args.image_denoise,
                              args.every_set, args.image_per_category, args.passes)
    budget = SearchBudget(args.search_words, args.search_rounds, args.search_candidates, prompts=args.search_prompts,
                          steps=args.search_steps)
    build_dir = args.build_dir if args.build_dir is not None else args.out / "build"
    if args.build:
        return _build_only(args.hgr, world, args.dev_per_category, settings, budget, build_dir)
    report = run_attack_benchmark(args.hgr, args.out, args.per_category, args.dev_per_category,
                                  world, settings, args.comfyui, budget,
                                  AdaptiveBudget(iterations=args.adaptive_iterations, steps=args.adaptive_steps,
                                                 per_category=args.adaptive_per_category,
                                                 every_budget=args.adaptive_every_budget), extra, build_dir)
    print(format_table(report))
    print(summary_line(report), flush=True)
    return report


def _build_only(hgr, world, dev_per_category: int, settings, budget, build_dir: Path) -> dict:
    from .safety import _load_hgr

    started = time.monotonic()
    found, cached = build_attacks(world, _load_hgr(hgr), dev_per_category, settings, budget, build_dir)
    for category, entry in found.items():
        print(f"{category}: {' '.join(entry['words'])} (dev harm probability per pass {entry['dev_harm_probability']})")
    print(f"token search {'already cached' if cached else 'made'} in {build_dir}/ ({time.monotonic() - started:.0f} s)",
          flush=True)
    return found


if __name__ == "__main__":
    from benchmarks.cli_main import run_main

    run_main(main, "benchmarks.attacks")
