"""Discrete prompt search in the style of UnlearnDiffAtk / P4D (issue 17, attack 2).

The attacker types text only, and no word a word filter blocks and no harmful phrasing's word,
seen or reserved, as a whole word; world v2's sub-word tokenizer is the surface: misspellings and
word pieces still carry meaning. Per harm category the search finds one suffix of `words` words
appended to clean prompts: a universal trigger (cheaper than a search per prompt, and the form an
operator meets as a shared jailbreak string).

1. Candidates: every vocabulary piece of two or more letters, and every two pieces (or a piece and
   a letter) joined into one word, minus the filter's and the harmful words; ranked by the cosine
   of their mean-pooled text embedding to the nearest harm word of the category's dev harmful
   prompts (a text-only prior, no model evaluation).
2. Coordinate search under plain CFG: start from the top-ranked words; for each position in
   turn, try `candidates` words drawn from the top `pool` and keep the one that most raises the
   judge's mean harm probability for the category over the dev split's clean prompts and noise
   seeds, sampled with `steps` steps; `rounds` passes.

The found suffixes are then judged like every attack (dev chooses, test reports with fresh prompts,
fresh seeds and the full sampler), against every defence.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from toyworld.bpe import ALPHABET
from toyworld.captions import words
from toyworld.text import PAD, tokenize

from .safety_metrics import STOP_WORDS
from .safety_toy import training_word_filter

log = logging.getLogger(__name__)

KIND = "token_search"


@dataclass(frozen=True)
class SuffixAttack:
    """Clean prompt i + the first s words of suffixes[i] (s = 1..len)."""

    kind: str
    strengths: tuple[float, ...]
    suffixes: list  # per prompt, its category's found words
    extra_texts: list  # per prompt, what a word filter reads besides the clean prompt

    def texts(self, clean_texts: list[str], strength: float) -> list[str]:
        return [f"{t} {' '.join(s[:int(strength)])}" for t, s in zip(clean_texts, self.suffixes)]


def suffix_attack(found: dict[str, list[str]], targets: list[str]) -> SuffixAttack:
    """The attack on prompts whose target categories are `targets`, from the searched suffixes."""
    suffixes = [found[c] for c in targets]
    length = min(len(s) for s in suffixes)
    return SuffixAttack(KIND, tuple(float(n) for n in range(1, length + 1)), suffixes,
                        [[" ".join(s)] for s in suffixes])


def harmful_words(facts) -> set[str]:
    """Every word of a harmful phrasing or concept, seen and reserved, that clean prompts do not use."""
    allowed = {w for t in facts.allowed_texts for w in words(t)} | STOP_WORDS
    return {w for t in (*facts.blocked_texts, *facts.reserved_texts) for w in words(t)} - allowed


def candidate_words(world, facts) -> list[str]:
    """Pieces and joined pairs the attacker may type: not blocked, not a harmful word."""
    pieces = [t for t in world.text_encoder.cfg.vocab if len(t) >= 2 and t.isalpha()]
    letters = [t for t in ALPHABET if t.isalpha()]
    joined = {a + b for a in pieces + letters for b in pieces + letters if len(a) + len(b) > 2}
    banned, word_filter = harmful_words(facts), training_word_filter(facts)
    return sorted(w for w in set(pieces) | joined if w not in banned and not word_filter.blocks(w))


def _pooled(world, texts: list[str]) -> torch.Tensor:
    """(N, width) mean over each text's real tokens of the text encoder's output, unit length."""
    out = []
    for first in range(0, len(texts), 4096):
        chunk = texts[first:first + 4096]
        mask = (tokenize(world.text_encoder.cfg, chunk) != PAD).float().unsqueeze(-1)
        embedded = world.encode_text(chunk)
        out.append(F.normalize((embedded * mask).sum(1) / mask.sum(1), dim=-1))
    return torch.cat(out)


def rank_by_prior(world, candidates: list[str], harm_words: list[str], pooled: torch.Tensor | None = None) -> list[str]:
    """Candidates, closest first to the nearest of `harm_words` in pooled text embedding (`pooled`: the
    candidates' `_pooled` embeddings when already computed)."""
    pooled = _pooled(world, candidates) if pooled is None else pooled
    similarity = (pooled @ _pooled(world, harm_words).T).amax(1)
    return [candidates[i] for i in similarity.argsort(descending=True).tolist()]


def dev_harm_words(harmful: list, category: str) -> list[str]:
    """The words (stop words left out) the category's dev harmful prompts add to their safe counterparts."""
    added = {w for s in harmful if s.category == category for w in set(words(s.text)) - set(words(s.safe_text))}
    return sorted(added - STOP_WORDS)


def _harm_scores(world, category: int, suffixes: list[list[str]], texts: list[str], seeds: list[int],
                 settings, steps: int) -> torch.Tensor:
    """(len(suffixes),) the judge's mean harm probability over `texts` with each suffix, plain CFG."""
    prompts = [f"{t} {' '.join(s)}" for s in suffixes for t in texts]
    all_seeds = seeds * len(suffixes)
    probs = []
    for first in range(0, len(prompts), settings.batch):
        with torch.no_grad():
            latents = world.sample(world.model, prompts[first:first + settings.batch], None,
                                   all_seeds[first:first + settings.batch], settings.cfg, steps,
                                   settings.sampler, settings.scheduler)
        probs.append(world.judge(world.decode(latents)).harm_probs[:, category].cpu())
    return torch.cat(probs).view(len(suffixes), len(texts)).mean(1)


def search_suffix(world, category: str, ranked: list[str], texts: list[str], seeds: list[int], settings,
                  budget, seed: int = 0) -> dict:
    """Coordinate search of one category's suffix; returns its words, dev objective per pass and cost."""
    rng, index = random.Random(seed), world.categories.index(category)
    suffix, pool = list(ranked[:budget.words]), ranked[:budget.pool]
    best = float(_harm_scores(world, index, [suffix], texts, seeds, settings, budget.steps)[0])
    history = [round(best, 4)]
    for _ in range(budget.rounds):
        for position in range(budget.words):
            tries = rng.sample([w for w in pool if w not in suffix], min(budget.candidates, len(pool) - len(suffix)))
            options = [suffix[:position] + [w] + suffix[position + 1:] for w in tries]
            scores = _harm_scores(world, index, options, texts, seeds, settings, budget.steps)
            top = int(scores.argmax())
            if float(scores[top]) > best:
                best, suffix = float(scores[top]), options[top]
        history.append(round(best, 4))
    return {"words": suffix, "dev_harm_probability": history, "evaluations": budget.evaluations()}


def search_suffixes(world, facts, harmful: list, clean_texts: list[str], seeds: list[int], categories, settings,
                    budget) -> dict[str, dict]:
    """Per category, the searched suffix (see `search_suffix`), on dev prompts and dev noise seeds."""
    started, candidates = time.monotonic(), candidate_words(world, facts)
    pooled = _pooled(world, candidates)  # the same for every category
    texts, seeds = clean_texts[:budget.prompts], seeds[:budget.prompts]
    found = {}
    for i, category in enumerate(categories):
        ranked = rank_by_prior(world, candidates, dev_harm_words(harmful, category), pooled)
        found[category] = search_suffix(world, category, ranked, texts, seeds, settings, budget, seed=i)
        log.info("token search %s: %s (dev harm probability %s)", category, " ".join(found[category]["words"]),
                 found[category]["dev_harm_probability"])
    for entry in found.values():
        entry["seconds_all_categories"] = round(time.monotonic() - started, 1)
        entry["candidate_words"] = len(candidates)
    return found
