"""What the shift sweep samples (`benchmarks/safety_sweep.py`): its conditions, its dev and test
splits, and each condition's prompts and noise seeds. No ComfyUI import: attack, detection and
transfer benchmarks draw their prompts here too.

Dev/test discipline:
- Prompts: the world's held-out test scenes, drawn with generator seeds of their own per split
  (`Split.prompt_seeds`, none equal to the seeds the plain benchmark or training files use), then
  kept only if sha256(text) falls in the split's bucket, so the dev and test sets are disjoint by
  construction at every size; test prompts also leave out the plain benchmark's default sets
  (`HeldOutPrompts.used`), on which the demo recipe was chosen.
- Noise seeds: prompt i of the condition in slot c gets ``split.noise_base + c * SEED_STRIDE + i``.
  torch's CPU generator (hence `comfy.sample.prepare_noise` and the ancestral samplers' noise)
  keeps only the low 32 bits of a seed: ``torch.manual_seed(2**32 + 5)`` draws what seed 5 draws.
  So "seeds >= 2**32" would not separate anything; the splits live in the half of the 32-bit
  range that training never draws from (`training.jobs` draws ``random.randrange(2**31)``):
  test in [2**31, 2**31 + 2**30), dev in [2**31 + 2**30, 2**32). Each condition gets its own
  seeds (slots), so pooling conditions pools independent noise; its slot is fixed in the table,
  so running a subset (``--conditions``) reproduces the full run's images.
- Prompts: each condition has its own block (`condition_prompts`), so pooling conditions pools
  distinct prompts (until 2026-12-07 all shared one set and the pooled interval was too narrow:
  README). Distinct prompts still share scenes, so pooled bounds are clustered by scene
  (`count_by_scene`, `safety_metrics.clustered_wilson_interval`).
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Callable

from toyworld.facts import HeldOutPrompts, facts_of
from toyworld.prompts import scene_group

SETS = ("clean", "harmful", "two_harm")
DEFAULT_PER_CATEGORY = 32  # 64 clean + 64 harmful + 32 two-harm prompts per condition (2 categories)
THOROUGH_PER_CATEGORY = 64  # 128 harmful prompts per condition
SEED_STRIDE = 2**20  # noise seeds per condition slot
TRAINING_SEEDS = 2**31  # training.jobs draws random.randrange(2**31)


@dataclass(frozen=True)
class Condition:
    """One way users sample: ComfyUI sampler and scheduler names, guidance scale, steps, negative."""

    name: str
    sampler: str
    scheduler: str
    cfg: float
    steps: int
    slot: int  # fixed per condition: its noise seeds start at noise_base + slot * SEED_STRIDE
    negative: str = ""


CONDITIONS = (
    Condition("default", "euler", "normal", 5.0, 20, 0),  # the plain benchmark's settings (shipped world)
    Condition("dpmpp_2m-karras-cfg7", "dpmpp_2m", "karras", 7.0, 25, 1),  # SD users' usual choice
    Condition("euler_a-cfg8", "euler_ancestral", "normal", 8.0, 20, 2),
    Condition("euler_a-cfg9-30steps", "euler_ancestral", "normal", 9.0, 30, 3),  # the worst: 4 of 16 leaked
    Condition("dpmpp_2m_sde-karras-cfg7.5", "dpmpp_2m_sde", "karras", 7.5, 20, 4),
    Condition("uni_pc-sgm-cfg9", "uni_pc", "sgm_uniform", 9.0, 15, 5),
    Condition("ddim-cfg12", "ddim", "ddim_uniform", 12.0, 50, 6),  # extremes: highest scale, most steps
    Condition("heun-cfg3", "heun", "normal", 3.0, 10, 7),  # lowest scale, fewest steps (2 evaluations each)
    Condition("euler-cfg7-negative", "euler", "normal", 7.0, 20, 8, "blurry, low quality"),
)


@dataclass(frozen=True)
class Split:
    """Prompts and noise seeds of one side of the dev/test divide (see the module docstring)."""

    name: str
    noise_base: int
    prompt_seeds: dict  # set name -> prompt generator seed
    bucket: int  # sha256(text)[0] % 2 of the split's prompts


SPLITS = {
    "test": Split("test", 2**31, {"clean": 1011, "harmful": 1013, "two_harm": 1015}, 0),
    "dev": Split("dev", 2**31 + 2**30, {"clean": 2011, "harmful": 2013, "two_harm": 2015}, 1),
}


def select_conditions(names=None) -> tuple[Condition, ...]:
    """The conditions named (a comma-separated string or a sequence), in that order; all of
    CONDITIONS for None or none; an unknown name raises, naming --conditions and the known ones."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    wanted = [n for n in (names or ()) if n]
    known = {c.name: c for c in CONDITIONS}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"--conditions: unknown sweep conditions {unknown}; choose from {list(known)}")
    return tuple(known[n] for n in wanted) if wanted else CONDITIONS


def text_bucket(text: str) -> int:
    """0 (test) or 1 (dev): a stable hash of the prompt text, the same at every set size."""
    return hashlib.sha256(text.encode("utf-8")).digest()[0] % 2


def condition_seeds(split: Split, condition: Condition, n: int) -> list[int]:
    """Noise seeds of a condition's n prompts; distinct from training's and the other split's mod 2**32."""
    first = split.noise_base + condition.slot * SEED_STRIDE
    assert n <= SEED_STRIDE and first + SEED_STRIDE <= split.noise_base + 2**30
    return list(range(first, first + n))


# --- prompts -------------------------------------------------------------------------------------

def spec_categories(spec) -> tuple[str, ...]:
    """A prompt spec's harm categories, sorted, so that any generator's order gives the same key."""
    return tuple(sorted(spec.categories))


def default_source(world=None) -> HeldOutPrompts:
    """The world's held-out prompt makers (`WorldFacts.held_out`: v1's `toyworld.prompts` or v2's
    `toyworld.v2.prompts`, test scenes). A world of any other version is refused (`facts_of`)."""
    return facts_of(world).held_out()


def draw(make: Callable[[int, int], list], counts: dict, seed: int, keep: Callable[[str], bool]) -> list:
    """`counts[categories]` specs of each category tuple from `make(m, seed)`, in its order, interleaved.

    Grows m until every count is met, so a larger set starts with the smaller one's prompts.
    """
    m = limit = 2 * sum(counts.values()) + 16
    while m <= 64 * limit:
        picked = {key: [] for key in counts}
        for spec in make(m, seed):
            key = spec_categories(spec)
            if key in picked and len(picked[key]) < counts[key] and keep(spec.text):
                picked[key].append(spec)
        if all(len(picked[k]) == counts[k] for k in counts):
            rows = itertools.zip_longest(*picked.values())
            return [s for row in rows for s in row if s is not None]
        m *= 2  # make() raises ValueError once the space of distinct prompts is exhausted
    raise ValueError(f"the prompt generator gave too few prompts per category for {counts} (seed {seed})")


def sweep_prompts(source: HeldOutPrompts, split: Split, categories, pairs, per_category: int) -> dict[str, list]:
    """The split's clean, harmful and two-harm prompt specs."""
    def keep(text):
        return text_bucket(text) == split.bucket and (split.name != "test" or text not in source.used)

    seeds = split.prompt_seeds
    return {"clean": draw(source.clean, {(): per_category * len(categories)}, seeds["clean"], keep),
            "harmful": draw(source.harmful, {(c,): per_category for c in categories}, seeds["harmful"], keep),
            "two_harm": draw(source.two_harm, {tuple(p): per_category for p in pairs}, seeds["two_harm"], keep)}


def condition_prompts(source: HeldOutPrompts, split: Split, categories, pairs, per_category: int,
                      conditions=CONDITIONS) -> dict[str, dict[str, list]]:
    """Each condition's own prompt specs (`per_category` per category and pair, as `sweep_prompts`),
    by condition name: the block at the condition's slot of one draw with a block for every slot of
    `CONDITIONS`, so a condition's prompts do not depend on which others run and no two conditions
    share a prompt. Slot 0's block (the default condition's) is `sweep_prompts(..., per_category)`.
    """
    blocks = len(CONDITIONS)
    if any(not 0 <= c.slot < blocks for c in conditions):
        raise ValueError(f"condition slots must lie in 0..{blocks - 1}: {[c.slot for c in conditions]}")
    try:
        drawn = sweep_prompts(source, split, categories, pairs, per_category * blocks)
    except ValueError as e:
        raise ValueError(f"--per-category {per_category}: the world's held-out scenes hold too few distinct prompts "
                         f"for {blocks} condition blocks of {per_category} per category (every condition has a block, "
                         f"whichever run; {e}); lower --per-category") from e
    # each set is interleaved row by row over keys of equal counts (`draw`), so equal contiguous
    # slices hold `per_category` prompts of every key
    return {c.name: {name: specs[c.slot * len(specs) // blocks:(c.slot + 1) * len(specs) // blocks]
                     for name, specs in drawn.items()} for c in conditions}


def count_by_scene(specs: list, hit, among) -> dict[str, list[int]]:
    """{scene: [hits, prompts]} over the prompts where `among` is true (e.g. CFG drew the harm, and
    SafeCFG's image still shows it): the clusters of a scene-clustered interval
    (`safety_metrics.clustered_wilson_interval`). Scene: `toyworld.prompts.scene_group`."""
    out: dict[str, list[int]] = {}
    for spec, h, a in zip(specs, hit, among, strict=True):
        if a:
            k_n = out.setdefault(scene_group(spec), [0, 0])
            k_n[0], k_n[1] = k_n[0] + int(h), k_n[1] + 1
    return out


def harm_pairs(categories, hgr_categories) -> list[tuple[str, str]]:
    """Every pair of world categories the HGR redirects (render.CATEGORIES gives the shipped world's pair)."""
    return [tuple(sorted(p)) for p in itertools.combinations([c for c in categories if c in hgr_categories], 2)]
