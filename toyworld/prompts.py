"""Deterministic prompt sets for HGR training and evaluation, and the prompt files they go to.

Scenes (shape, colour, background) are split once: 16 of the 64 combinations are test scenes
(``background index == (shape index + colour index) mod 4``, so every shape, colour and background
occurs on both sides) and never appear in a training file. Harmful training/test prompts use
seen phrasings only; ``harmful_unseen`` uses reserved phrasings on test scenes. ``harmful_two_harm``
gives prompts with two harms ("a naked bloody green triangle under a clear sky") whose safe
counterpart leaves out both; ``write_prompt_files`` puts a share of them (train scenes, seen
phrasings) into the harmful training file, with categories "nudity,violence".

Example::

    from toyworld import prompts
    paths = prompts.write_prompt_files("runs/prompts")
    specs = prompts.harmful_unseen()          # list[PromptSpec] with ground-truth attributes
    two = prompts.harmful_two_harm(64)        # test scenes; two.categories == ("nudity", "violence")
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hgr_core import atomic_write

from .captions import BACKGROUND_PHRASES, COLOUR_WORDS, CONCEPTS, SHAPE_WORDS, TEMPLATES, compose, phrasings
from .captions import attributes_for  # noqa: F401  (re-exported: prompt text -> ground-truth attributes)
from .render import BACKGROUNDS, CATEGORIES, COLOURS, SHAPES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptSpec:
    """A prompt with its ground truth; ``safe_text`` is the same caption without its harmful phrases."""

    text: str
    category: str | None  # one of CATEGORIES (a multi-harm prompt's first), None for clean prompts
    safe_text: str | None  # None for clean prompts
    shape: str
    colour: str
    background: str
    reserved: bool = False  # uses a reserved (never-in-HGR-training) phrasing
    more_categories: tuple[str, ...] = ()  # the further harms of a multi-harm prompt
    pattern: str = "plain"  # world v2's object pattern (v1 objects are always plain)

    @property
    def categories(self) -> tuple[str, ...]:
        """Every harm the prompt asks for, sorted by name (v1: CATEGORIES order); () for clean prompts."""
        return tuple(sorted({self.category, *self.more_categories} - {None}))


def scene_split(split: str) -> list[tuple[str, str, str]]:
    """The (shape, colour, background) combinations of the "train" or "test" split."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    combos = []
    for i, shape in enumerate(SHAPES):
        for j, colour in enumerate(COLOURS):
            for k, background in enumerate(BACKGROUNDS):
                if (k == (i + j) % len(BACKGROUNDS)) == (split == "test"):
                    combos.append((shape, colour, background))
    return combos


def _pick(rng, options):
    return options[rng.integers(len(options))]


def _make_prompts(split: str, n: int, seed: int, categories_of, reserved: bool) -> list[PromptSpec]:
    """n distinct prompts; ``categories_of(i)`` gives the harms of prompt i (() = clean)."""
    rng = np.random.default_rng(seed)
    scenes = scene_split(split)
    specs, seen = [], set()
    for _ in range(50 * n):
        if len(specs) == n:
            break
        shape, colour, background = _pick(rng, scenes)
        words = (
            _pick(rng, COLOUR_WORDS[colour]),
            _pick(rng, SHAPE_WORDS[shape]),
            _pick(rng, BACKGROUND_PHRASES[background]),
        )
        template = _pick(rng, TEMPLATES)
        harms = categories_of(len(specs))
        harm = [_pick(rng, phrasings(c, reserved)) for c in harms]
        if len(harm) > 1:
            harm = [harm[i] for i in rng.permutation(len(harm))]  # either harm may come first
        text = compose(*words, harm, template)
        if text in seen:
            continue
        seen.add(text)
        safe = compose(*words, (), template) if harms else None
        specs.append(PromptSpec(text, harms[0] if harms else None, safe, shape, colour, background, reserved,
                                tuple(harms[1:])))
    if len(specs) < n:
        raise ValueError(f"only {len(specs)} distinct prompts exist for split={split!r}, asked for {n}")
    return specs


def _alternate(i: int) -> tuple[str]:
    return (CATEGORIES[i % len(CATEGORIES)],)


def _clean(i: int) -> tuple:
    return ()


# Every pair of categories, cycled through by two-harm prompts (the toy world has one pair).
PAIRS = tuple(itertools.combinations(CATEGORIES, 2))


def _pairs(i: int) -> tuple[str, str]:
    return PAIRS[i % len(PAIRS)]


def clean_train(n: int = 400, seed: int = 10) -> list[PromptSpec]:
    return _make_prompts("train", n, seed, _clean, False)


def clean_test(n: int = 128, seed: int = 11) -> list[PromptSpec]:
    return _make_prompts("test", n, seed, _clean, False)


def harmful_train(n: int = 400, seed: int = 12) -> list[PromptSpec]:
    """Seen phrasings on train scenes, categories alternating."""
    return _make_prompts("train", n, seed, _alternate, False)


def harmful_test(n: int = 128, seed: int = 13) -> list[PromptSpec]:
    """Seen phrasings on test scenes."""
    return _make_prompts("test", n, seed, _alternate, False)


def harmful_unseen(n: int = 128, seed: int = 14) -> list[PromptSpec]:
    """Reserved phrasings on test scenes: neither the words nor the scenes are in HGR training."""
    return _make_prompts("test", n, seed, _alternate, True)


def harmful_two_harm(n: int = 128, seed: int = 15, split: str = "test", reserved: bool = False) -> list[PromptSpec]:
    """Prompts with two harms (one phrasing per category, either first) whose ``safe_text`` has neither.

    split "test": test scenes, for benchmarks; "train": train scenes (``write_prompt_files`` uses
    them with another seed). reserved: reserved phrasings (test only: they never reach training).
    """
    if reserved and split != "test":
        raise ValueError("reserved phrasings are for test prompts only; they never appear in training files")
    return _make_prompts(split, n, seed, _pairs, reserved)


def write_text_file(path: Path, write) -> None:
    """`write(f)` to a text file opened as the csv module wants it (utf-8, no newline translation)."""

    def to_file(tmp: str) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            write(f)

    atomic_write(path, to_file)


def scene_group(spec: PromptSpec) -> str:
    """The scene a prompt shows, "shape|colour|background[|pattern]": train_hgr's validation group.

    World v2's pattern is appended when it is not "plain" (v1's groups stay what they were)."""
    pattern = () if spec.pattern == "plain" else (spec.pattern,)
    return "|".join((spec.shape, spec.colour, spec.background, *pattern))


def write_csv(path: Path, specs: list[PromptSpec]) -> None:
    """Rows name their scene in a `group` column, so train_hgr splits validation by scene."""

    def write(f):
        out = csv.writer(f)
        out.writerow(["prompt", "category", "safe_prompt", "group"])
        out.writerows([s.text, ",".join(s.categories), s.safe_text, scene_group(s)] for s in specs)

    write_text_file(path, write)


def write_lines(path: Path, specs: list[PromptSpec]) -> None:
    write_text_file(path, lambda f: f.writelines(s.text + "\n" for s in specs))


def write_clean_table(path: Path, specs: list[PromptSpec]) -> None:
    def write(f):
        out = csv.writer(f)
        out.writerow(["prompt", "group"])
        out.writerows([s.text, scene_group(s)] for s in specs)

    write_text_file(path, write)


PROMPT_FILES = ("harmful_train.csv", "harmful_test.csv", "harmful_unseen.csv", "clean_train.csv", "clean_test.txt",
                "concepts.json")


def prompt_file_paths(out_dir: str | os.PathLike) -> dict[str, Path]:
    """name -> path of every file `write_prompt_files` writes (v1 and v2 alike); creates ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {name: out / name for name in PROMPT_FILES}


def check_share(name: str, share: float) -> None:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {share}")


def write_prompt_files(out_dir: str | os.PathLike, harmful_train_count: int = 400,
                       clean_train_count: int = 400, two_harm_share: float = 0.2) -> dict[str, Path]:
    """Write the five prompt files and concepts.json into ``out_dir``; returns name -> path.

    The counts size the training files only; the test sets keep their size. ``two_harm_share`` of
    the harmful training prompts carry two harms (train scenes, seen phrasings, category column
    "nudity,violence"); the rest alternate between single categories.
    """
    check_share("two_harm_share", two_harm_share)
    paths = prompt_file_paths(out_dir)
    two_harm = round(two_harm_share * harmful_train_count)
    train = harmful_train(harmful_train_count - two_harm)
    train += harmful_two_harm(two_harm, seed=16, split="train") if two_harm else []
    write_csv(paths["harmful_train.csv"], train)
    write_csv(paths["harmful_test.csv"], harmful_test())
    write_csv(paths["harmful_unseen.csv"], harmful_unseen())
    write_clean_table(paths["clean_train.csv"], clean_train(clean_train_count))
    write_lines(paths["clean_test.txt"], clean_test())
    write_text_file(paths["concepts.json"], lambda f: json.dump(CONCEPTS, f, indent=2))
    log.info("wrote prompt files to %s (%d of %d harmful training prompts with two harms)", out_dir, two_harm,
             harmful_train_count)
    return paths


def write_pool_file(path: str | os.PathLike, harmful_count: int = 200, clean_count: int = 200,
                    two_harm_share: float = 0.2, seed: int = 0) -> Path:
    """An unlabelled pool for `training.finetune_safe` of train-scene harmful and clean prompts (`write_pool`)."""
    two_harm = round(two_harm_share * harmful_count)
    specs = harmful_train(harmful_count - two_harm) + (harmful_two_harm(two_harm, seed=16, split="train") if two_harm else [])
    return write_pool(path, specs + clean_train(clean_count), seed)


def write_pool(path: str | os.PathLike, specs: list[PromptSpec], seed: int = 0) -> Path:
    """`specs` shuffled into an unlabelled pool file, columns `prompt, category`: the category column is
    the hidden ground truth (empty = clean), which finetune_safe never reads for its labels, only to
    report their precision and recall."""
    order = np.random.default_rng(seed).permutation(len(specs))

    def write(f):
        out = csv.writer(f)
        out.writerow(["prompt", "category"])
        out.writerows([specs[i].text, ",".join(specs[i].categories)] for i in order)

    path = Path(path)
    write_text_file(path, write)
    return path
