"""World v2's prompt sets, with ground truth, split by scene into train and test.

A scene is (shape, colour, pattern, background): 240 combinations, of which the 60 with
``background index == (shape + colour + pattern index) mod 4`` are test scenes, so every value of
every attribute occurs on both sides. Evaluation prompts always name the pattern ("plain" too),
so the ground truth is in the prompt. Sets:

- ``clean``: any scene; ``hard_negative``: clean scenes with a look-alike (pink, dots, stripes),
  cycling through the three.
- ``harmful``: one harm, categories cycling; ``reserved=True`` uses reserved phrasings (synonym
  transfer: their words are in no training file).
- ``two_harm``: two harms, cycling through the three pairs; safe counterpart drops both.
- ``harm_with_look_alike``: a harm on a scene with its own look-alike ("a bloody dotted red disc"):
  the safe counterpart keeps the look-alike, which redirection must not remove.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..prompts import PromptSpec
from ..render import BACKGROUNDS, SHAPES
from .captions import BACKGROUND_PHRASES, COLOUR_WORDS, PATTERN_WORDS, SHAPE_WORDS, TEMPLATES, compose, phrasings
from .scenes import CATEGORIES, COLOURS, LOOK_ALIKE, PATTERNS

PAIRS = tuple(itertools.combinations(CATEGORIES, 2))
SPLITS = ("train", "test")


def scene_split(split: str) -> list[tuple[str, str, str, str]]:
    """The (shape, colour, pattern, background) combinations of the "train" or "test" split."""
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    combos = []
    for (i, shape), (j, colour), (k, pattern), (m, background) in itertools.product(
            enumerate(SHAPES), enumerate(COLOURS), enumerate(PATTERNS), enumerate(BACKGROUNDS)):
        if (m == (i + j + k) % len(BACKGROUNDS)) == (split == "test"):
            combos.append((shape, colour, pattern, background))
    return combos


def _pick(rng, options):
    return options[rng.integers(len(options))]


def make_prompts(split: str, n: int, seed: int, harms_of, reserved: bool = False, scene_filter=None) -> list[PromptSpec]:
    """n distinct prompts; ``harms_of(i)`` gives prompt i's harms (() = clean), ``scene_filter(i, scene)``
    restricts prompt i's scene."""
    rng = np.random.default_rng(seed)
    scenes = scene_split(split)
    specs, seen = [], set()
    for _ in range(100 * n):
        if len(specs) == n:
            break
        i = len(specs)
        shape, colour, pattern, background = scene = _pick(rng, scenes)
        if scene_filter is not None and not scene_filter(i, scene):
            continue
        words = (_pick(rng, COLOUR_WORDS[colour]), _pick(rng, SHAPE_WORDS[shape]),
                 _pick(rng, BACKGROUND_PHRASES[background]))
        template, pattern_word = _pick(rng, TEMPLATES), _pick(rng, PATTERN_WORDS[pattern])
        harms = harms_of(i)
        harm = [_pick(rng, phrasings(c, reserved)) for c in harms]
        harm = [harm[k] for k in rng.permutation(len(harm))]
        text = compose(*words, harm, template, pattern_word)
        if text in seen:
            continue
        seen.add(text)
        safe = compose(*words, (), template, pattern_word) if harms else None
        specs.append(PromptSpec(text, harms[0] if harms else None, safe, shape, colour, background, reserved,
                                tuple(harms[1:]), pattern))
    if len(specs) < n:
        raise ValueError(f"only {len(specs)} distinct prompts exist for split={split!r}, asked for {n}")
    return specs


def _has_look_alike(category: str, scene) -> bool:
    attribute, value = LOOK_ALIKE[category]
    shape, colour, pattern, background = scene
    return {"colour": colour, "pattern": pattern}[attribute] == value


def clean(split: str = "test", n: int = 128, seed: int = 21) -> list[PromptSpec]:
    return make_prompts(split, n, seed, lambda i: ())


def hard_negative(split: str = "test", n: int = 128, seed: int = 22) -> list[PromptSpec]:
    """Clean prompts on look-alike scenes (pink, dots, stripes, in turn)."""
    return make_prompts(split, n, seed, lambda i: (),
                        scene_filter=lambda i, sc: _has_look_alike(CATEGORIES[i % len(CATEGORIES)], sc))


def harmful(split: str = "test", n: int = 128, seed: int = 23, reserved: bool = False) -> list[PromptSpec]:
    if reserved and split != "test":
        raise ValueError("reserved phrasings are for test prompts only; they never appear in training files")
    return make_prompts(split, n, seed + 10 * reserved, lambda i: (CATEGORIES[i % len(CATEGORIES)],), reserved)


def two_harm(split: str = "test", n: int = 96, seed: int = 24) -> list[PromptSpec]:
    return make_prompts(split, n, seed, lambda i: PAIRS[i % len(PAIRS)])


def harm_with_look_alike(split: str = "test", n: int = 96, seed: int = 25) -> list[PromptSpec]:
    return make_prompts(split, n, seed, lambda i: (CATEGORIES[i % len(CATEGORIES)],),
                        scene_filter=lambda i, sc: _has_look_alike(CATEGORIES[i % len(CATEGORIES)], sc))


def quality_sets() -> dict[str, list[PromptSpec]]:
    """The test-split sets the build's quality report samples under plain CFG."""
    return {"clean_test": clean(), "hard_negative_test": hard_negative(), "harmful_test": harmful(),
            "harmful_reserved": harmful(reserved=True), "two_harm_test": two_harm(),
            "harm_with_look_alike_test": harm_with_look_alike()}


def write_prompt_files(out_dir, harmful_train_count: int = 400, clean_train_count: int = 400,
                       two_harm_share: float = 0.2, look_alike_share: float = 0.25) -> dict:
    """World v2's prompt files for train_hgr (train scenes, seen phrasings), same names as v1's.

    ``two_harm_share`` of the harmful training prompts carry two harms; ``look_alike_share`` of the
    clean training prompts are hard negatives (look-alike scenes). Test files hold the test split.
    """
    import json

    from ..prompts import check_share, prompt_file_paths, write_clean_table, write_csv, write_lines, write_text_file
    from .captions import CONCEPTS

    check_share("two_harm_share", two_harm_share)
    check_share("look_alike_share", look_alike_share)
    paths = prompt_file_paths(out_dir)
    two = round(two_harm_share * harmful_train_count)
    negatives = round(look_alike_share * clean_train_count)
    write_csv(paths["harmful_train.csv"], harmful("train", harmful_train_count - two, 33)
              + (two_harm("train", two, 34) if two else []))
    write_csv(paths["harmful_test.csv"], harmful())
    write_csv(paths["harmful_unseen.csv"], harmful(reserved=True))
    write_clean_table(paths["clean_train.csv"], clean("train", clean_train_count - negatives, 31)
                      + (hard_negative("train", negatives, 32) if negatives else []))
    write_lines(paths["clean_test.txt"], clean())
    write_text_file(paths["concepts.json"], lambda f: json.dump(CONCEPTS, f, indent=2))
    return paths


def write_pool_file(path, harmful_count: int = 96, clean_count: int = 96, two_harm_share: float = 0.2,
                    look_alike_share: float = 0.25, seed: int = 0):
    """An unlabelled pool of train-scene prompts for `training.finetune_safe` (`toyworld.prompts.write_pool`):
    harmful ones (`two_harm_share` with two harms) and clean ones (`look_alike_share` hard negatives),
    with other prompt seeds than `write_prompt_files`' (the pool is not the HGR's training set)."""
    from ..prompts import check_share, write_pool

    check_share("two_harm_share", two_harm_share)
    check_share("look_alike_share", look_alike_share)
    two, negatives = round(two_harm_share * harmful_count), round(look_alike_share * clean_count)
    specs = harmful("train", harmful_count - two, 43) + (two_harm("train", two, 44) if two else [])
    specs += clean("train", clean_count - negatives, 41) + (hard_negative("train", negatives, 42) if negatives else [])
    return write_pool(path, specs, seed)
