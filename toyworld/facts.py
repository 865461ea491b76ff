"""What the benchmarks need to know about a toy world beyond its weights, for v1 and v2 alike.

`facts_of(world)` picks by `World.version` (from the build report): the categories and attribute
names, the per-category concept texts (each one a caption the base model was trained on), the
colours each harm is drawn in (the palette rule and the judge-independent residual), the words a
training-file word filter would block, and the held-out prompt sets of the toy benchmark.

The toy benchmark's sets (test scenes, no prompt of any HGR training file):
- v1: ``clean``, ``harmful`` (seen phrasings), ``unseen`` (reserved phrasings: synonym transfer);
- v2: the same three plus ``hard_negative`` (clean look-alike scenes: pink, dots, stripes),
  ``two_harm`` (two harms at once) and ``look_alike`` (a harm on its own look-alike, whose safe
  counterpart keeps the look-alike).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

V1, V2 = "toyworld-v1", "toyworld-v2"
HARMFUL_SETS = ("harmful", "unseen", "two_harm", "look_alike")  # sets whose prompts ask for a harm


@dataclass(frozen=True)
class WorldFacts:
    version: str
    categories: tuple[str, ...]
    shapes: tuple[str, ...]
    colours: tuple[str, ...]
    backgrounds: tuple[str, ...]
    patterns: tuple[str, ...]  # () where objects are always plain (v1)
    concepts: dict[str, str]
    harm_palette: dict[str, tuple[tuple[int, int, int], ...]]
    blocked_texts: tuple[str, ...]  # seen phrasings and concept texts: what HGR training files contain
    allowed_texts: tuple[str, ...]  # the clean vocabulary a word filter must let through
    _sets: Callable[[int], dict[str, list]] = field(repr=False, compare=False)

    def prompt_sets(self, per_category: int) -> dict[str, list]:
        """The toy benchmark's held-out sets, `per_category` prompts per category (or pair) each."""
        return self._sets(per_category)

    def safety_concept(self) -> str:
        """Every category's concept text joined: the negative prompt / SLD safety concept."""
        return ", ".join(self.concepts[c] for c in self.categories)


def _clean_texts(captions_module, colour_words, extra=()) -> tuple[str, ...]:
    c = captions_module
    words = [w for table in (colour_words, c.SHAPE_WORDS, c.BACKGROUND_PHRASES, *extra)
             for ws in table.values() for w in ws]
    words += [*c.TEMPLATES, *c.STYLE_WORDS, c.GENERIC_NOUN]
    return tuple(t.replace("{np}", "").replace("{bg}", "") for t in words)


def _v1_sets(per_category: int) -> dict[str, list]:
    from . import prompts

    n = per_category * 2
    return {"clean": prompts.clean_test(n), "harmful": prompts.harmful_test(n), "unseen": prompts.harmful_unseen(n)}


def _v2_sets(per_category: int) -> dict[str, list]:
    from .v2 import prompts

    n = per_category * len(prompts.CATEGORIES)
    return {"clean": prompts.clean("test", n), "hard_negative": prompts.hard_negative("test", n),
            "harmful": prompts.harmful("test", n), "unseen": prompts.harmful("test", n, reserved=True),
            "two_harm": prompts.two_harm("test", per_category * len(prompts.PAIRS)),
            "look_alike": prompts.harm_with_look_alike("test", n)}


def v1_facts() -> WorldFacts:
    from . import captions, render

    return WorldFacts(V1, render.CATEGORIES, render.SHAPES, tuple(render.COLOURS), tuple(render.BACKGROUNDS), (),
                      dict(captions.CONCEPTS), dict(render.HARM_PALETTE),
                      (*(p.text for p in captions.phrasings(reserved=False)), *captions.CONCEPTS.values()),
                      _clean_texts(captions, captions.COLOUR_WORDS), _v1_sets)


def v2_facts() -> WorldFacts:
    from . import captions as v1_captions
    from .v2 import captions, scenes

    palette = {"nudity": (scenes.SKIN,), "violence": (scenes.BLOOD,), "hate": (scenes.INK,)}
    return WorldFacts(V2, scenes.CATEGORIES, scenes.SHAPES, tuple(scenes.COLOURS),
                      tuple(scenes.BACKGROUNDS), scenes.PATTERNS, dict(captions.CONCEPTS), palette,
                      (*(p.text for p in captions.phrasings(reserved=False)), *captions.CONCEPTS.values()),
                      _clean_texts(v1_captions, captions.COLOUR_WORDS, (captions.PATTERN_WORDS,)), _v2_sets)


def facts_of(world=None) -> WorldFacts:
    """The facts of `world` by its version (no world, or one without a version: the shipped v1)."""
    version = getattr(world, "version", V1)
    if version == V2:
        return v2_facts()
    if version == V1:
        return v1_facts()
    raise ValueError(f"no benchmark facts for toy world version {version!r}; known: {V1}, {V2}")
