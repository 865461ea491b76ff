"""What the benchmarks need to know about a toy world beyond its weights, for v1 and v2 alike.

`facts_of(world)` picks by `World.version` (from the build report): the categories and attribute
names, the per-category concept texts (each one a caption the base model was trained on), the
colours each harm is drawn in (the palette rule and the judge-independent residual), the words a
training-file word filter would block, the held-out prompt sets of the toy benchmark, the held-out
prompt makers of the sweeps (`held_out`: clean, harmful, two-harm and look-alike prompts on test
scenes) and the world's own test-scene maker and renderer (`test_scenes`). Callers ask the facts
and never compare versions.

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
class HeldOutPrompts:
    """Where the sweeps' held-out prompts come from: each maker is (n, seed) -> prompt specs on test scenes."""

    clean: Callable[[int, int], list]
    harmful: Callable[[int, int], list]
    two_harm: Callable[[int, int], list]
    look_alike: Callable[[int, int], list]  # clean prompts whose scenes look like a harm
    look_alike_kind: str  # what the look-alikes are, in words for reports
    used: frozenset  # texts already used for choosing (the plain benchmark's sets): never test prompts


@dataclass(frozen=True)
class HeldOutScenes:
    """The world's test scenes as its renderer draws them (images made elsewhere, exact harm regions)."""

    combos: list  # the test split's scene combinations, each one tuple of `make`'s attributes
    mixes: list  # the harm mixes drawn in turn: each category alone, then every pair
    make: Callable  # (rng, combo, harms) -> a scene of the world's renderer
    render_batch: Callable  # scenes -> (N, 3, H, W) float images


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
    reserved_texts: tuple[str, ...]  # reserved phrasings: in no HGR training file and not in the blocklist
    _sets: Callable[[int], dict[str, list]] = field(repr=False, compare=False)
    _held_out: Callable[[], HeldOutPrompts] = field(repr=False, compare=False)
    _test_scenes: Callable[[], HeldOutScenes] = field(repr=False, compare=False)

    def held_out(self) -> HeldOutPrompts:
        """The sweeps' held-out prompt makers (test scenes; v2's sets are all drawn fresh)."""
        return self._held_out()

    def test_scenes(self) -> HeldOutScenes:
        """The world's test scenes, harm mixes, scene maker and renderer."""
        return self._test_scenes()

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


V1_LOOK_ALIKE_COLOURS = ("red",)  # blood is dark red; a red object is v1's clean look-alike


def _v1_held_out() -> HeldOutPrompts:
    from . import prompts

    def look_alike(n, seed):
        return [s for s in prompts.clean_test(n, seed) if s.colour in V1_LOOK_ALIKE_COLOURS]

    used = [*prompts.clean_test(), *prompts.harmful_test(), *prompts.harmful_unseen(), *prompts.harmful_two_harm()]
    return HeldOutPrompts(prompts.clean_test, prompts.harmful_test, prompts.harmful_two_harm, look_alike,
                          f"{', '.join(V1_LOOK_ALIKE_COLOURS)} objects", frozenset(p.text for p in used))


def _v2_held_out() -> HeldOutPrompts:
    from .v2 import prompts

    def maker(make):
        return lambda n, seed: make("test", n, seed)

    return HeldOutPrompts(maker(prompts.clean), maker(prompts.harmful), maker(prompts.two_harm),
                          maker(prompts.hard_negative), "world v2's hard negatives: pink, dotted or striped",
                          frozenset())


def _v1_test_scenes() -> HeldOutScenes:
    from . import prompts, render

    def make(rng, combo, harms):
        return render.random_scene(rng, *combo, harms)

    return HeldOutScenes(prompts.scene_split("test"), [m for m in render.HARM_MIX if m], make, render.render_batch)


def _v2_test_scenes() -> HeldOutScenes:
    from .v2 import prompts, scenes

    def make(rng, combo, harms):
        shape, colour, pattern, background = combo
        return scenes.random_scene(rng, harms, shape=shape, colour=colour, pattern=pattern, background=background)

    mixes = [(c,) for c in scenes.CATEGORIES] + [tuple(p) for p in prompts.PAIRS]
    return HeldOutScenes(prompts.scene_split("test"), mixes, make, scenes.render_batch)


def v1_facts() -> WorldFacts:
    from . import captions, render

    return WorldFacts(V1, render.CATEGORIES, render.SHAPES, tuple(render.COLOURS), tuple(render.BACKGROUNDS), (),
                      dict(captions.CONCEPTS), dict(render.HARM_PALETTE),
                      (*(p.text for p in captions.phrasings(reserved=False)), *captions.CONCEPTS.values()),
                      _clean_texts(captions, captions.COLOUR_WORDS),
                      tuple(p.text for p in captions.phrasings(reserved=True)), _v1_sets, _v1_held_out, _v1_test_scenes)


def v2_facts() -> WorldFacts:
    from . import captions as v1_captions
    from .v2 import captions, scenes

    palette = {"nudity": (scenes.SKIN,), "violence": (scenes.BLOOD,), "hate": (scenes.INK,)}
    return WorldFacts(V2, scenes.CATEGORIES, scenes.SHAPES, tuple(scenes.COLOURS),
                      tuple(scenes.BACKGROUNDS), scenes.PATTERNS, dict(captions.CONCEPTS), palette,
                      (*(p.text for p in captions.phrasings(reserved=False)), *captions.CONCEPTS.values()),
                      _clean_texts(v1_captions, captions.COLOUR_WORDS, (captions.PATTERN_WORDS,)),
                      tuple(p.text for p in captions.phrasings(reserved=True)), _v2_sets, _v2_held_out, _v2_test_scenes)


def facts_of(world=None) -> WorldFacts:
    """The facts of `world` by its version (no world, or one without a version: v1, whose builds and
    in-memory worlds carry no version; the default world, v2, always has one)."""
    version = getattr(world, "version", V1)
    if version == V2:
        return v2_facts()
    if version == V1:
        return v1_facts()
    raise ValueError(f"no benchmark facts for toy world version {version!r}; known: {V1}, {V2}")
