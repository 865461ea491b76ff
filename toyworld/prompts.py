"""Deterministic prompt sets for HGR training and evaluation, and the prompt files they go to.

Scenes (shape, colour, background) are split once: 16 of the 64 combinations are test scenes
(``background index == (shape index + colour index) mod 4``, so every shape, colour and background
occurs on both sides) and never appear in a training file. Harmful training/test prompts use
seen phrasings only; ``harmful_unseen`` uses reserved phrasings on test scenes.

Example::

    from toyworld import prompts
    paths = prompts.write_prompt_files("runs/prompts")
    specs = prompts.harmful_unseen()          # list[PromptSpec] with ground-truth attributes
"""

from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .captions import BACKGROUND_PHRASES, COLOUR_WORDS, CONCEPTS, SHAPE_WORDS, TEMPLATES, compose, phrasings
from .captions import attributes_for  # noqa: F401  (re-exported: prompt text -> ground-truth attributes)
from .render import BACKGROUNDS, CATEGORIES, COLOURS, SHAPES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptSpec:
    """A prompt with its ground truth; ``safe_text`` is the same caption without the harmful phrase."""

    text: str
    category: str | None  # one of CATEGORIES, None for clean prompts
    safe_text: str | None  # None for clean prompts
    shape: str
    colour: str
    background: str
    reserved: bool = False  # uses a reserved (never-in-HGR-training) phrasing


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


def _make_prompts(split: str, n: int, seed: int, category_cycle, reserved: bool) -> list[PromptSpec]:
    """n distinct prompts; ``category_cycle`` gives the category of prompt i (None = clean)."""
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
        category = category_cycle(len(specs))
        harm = [_pick(rng, phrasings(category, reserved))] if category else []
        text = compose(*words, harm, template)
        if text in seen:
            continue
        seen.add(text)
        safe = compose(*words, (), template) if category else None
        specs.append(PromptSpec(text, category, safe, shape, colour, background, reserved))
    if len(specs) < n:
        raise ValueError(f"only {len(specs)} distinct prompts exist for split={split!r}, asked for {n}")
    return specs


def _alternate(i: int) -> str:
    return CATEGORIES[i % len(CATEGORIES)]


def clean_train(n: int = 400, seed: int = 10) -> list[PromptSpec]:
    return _make_prompts("train", n, seed, lambda i: None, False)


def clean_test(n: int = 128, seed: int = 11) -> list[PromptSpec]:
    return _make_prompts("test", n, seed, lambda i: None, False)


def harmful_train(n: int = 400, seed: int = 12) -> list[PromptSpec]:
    """Seen phrasings on train scenes, categories alternating."""
    return _make_prompts("train", n, seed, _alternate, False)


def harmful_test(n: int = 128, seed: int = 13) -> list[PromptSpec]:
    """Seen phrasings on test scenes."""
    return _make_prompts("test", n, seed, _alternate, False)


def harmful_unseen(n: int = 128, seed: int = 14) -> list[PromptSpec]:
    """Reserved phrasings on test scenes: neither the words nor the scenes are in HGR training."""
    return _make_prompts("test", n, seed, _alternate, True)


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        write(f)
    os.replace(tmp, path)


def _write_csv(path: Path, specs: list[PromptSpec]) -> None:
    def write(f):
        out = csv.writer(f)
        out.writerow(["prompt", "category", "safe_prompt"])
        out.writerows([s.text, s.category, s.safe_text] for s in specs)

    _atomic_write(path, write)


def _write_lines(path: Path, specs: list[PromptSpec]) -> None:
    _atomic_write(path, lambda f: f.writelines(s.text + "\n" for s in specs))


def write_prompt_files(out_dir: str | os.PathLike, harmful_train_count: int = 400,
                       clean_train_count: int = 400) -> dict[str, Path]:
    """Write the five prompt files and concepts.json into ``out_dir``; returns name -> path.

    The counts size the training files only; the test sets keep their size.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = ("harmful_train.csv", "harmful_test.csv", "harmful_unseen.csv", "clean_train.txt", "clean_test.txt")
    paths = {name: out / name for name in (*names, "concepts.json")}
    _write_csv(paths["harmful_train.csv"], harmful_train(harmful_train_count))
    _write_csv(paths["harmful_test.csv"], harmful_test())
    _write_csv(paths["harmful_unseen.csv"], harmful_unseen())
    _write_lines(paths["clean_train.txt"], clean_train(clean_train_count))
    _write_lines(paths["clean_test.txt"], clean_test())
    _atomic_write(paths["concepts.json"], lambda f: json.dump(CONCEPTS, f, indent=2))
    log.info("wrote prompt files to %s", out)
    return paths
