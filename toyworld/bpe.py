"""Byte-pair encoding over letters and digits, as CLIP's tokenizer does over bytes.

A word is split into characters and the learned merges are applied in the order they were learned
(lowest rank first), so frequent words end up as one token and everything else, misspellings
included, as a few sub-word pieces that still carry meaning. No character of a word is ever
dropped or mapped to an unknown token: ``words`` keeps only ``[a-z0-9]`` runs and every one of
those characters is in the base alphabet.

    merges = learn_merges({"naked": 40, "nude": 30, ...}, 200)
    encode_word("nakd", merges)   # -> ["nak", "d"]
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

ALPHABET = tuple("abcdefghijklmnopqrstuvwxyz0123456789")


def _pairs(symbols: tuple[str, ...]):
    return zip(symbols, symbols[1:])


def learn_merges(word_counts: dict[str, int], n_merges: int) -> tuple[str, ...]:
    """The ``n_merges`` most frequent adjacent pairs, merged greedily; each merge is "left right".

    Ties are broken by the pair's text, so the result depends on the counts alone.
    """
    corpus = {tuple(word): count for word, count in word_counts.items() if word}
    merges = []
    for _ in range(n_merges):
        counts = Counter()
        for symbols, count in corpus.items():
            for pair in _pairs(symbols):
                counts[pair] += count
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(" ".join(best))
        corpus = {_merge(symbols, best): count for symbols, count in corpus.items()}
    return tuple(merges)


def _merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)


def vocabulary(merges: tuple[str, ...]) -> tuple[str, ...]:
    """The token strings: the alphabet, then each new merge result in merge order."""
    return tuple(dict.fromkeys(ALPHABET + tuple(m.replace(" ", "") for m in merges)))


@lru_cache(maxsize=8)
def _ranks(merges: tuple[str, ...]) -> dict[tuple[str, str], int]:
    return {tuple(m.split(" ")): i for i, m in enumerate(merges)}


@lru_cache(maxsize=1 << 16)
def _encode(word: str, merges: tuple[str, ...]) -> tuple[str, ...]:
    ranks = _ranks(merges)
    symbols = tuple(word)
    while len(symbols) > 1:
        ranked = [(ranks[p], p) for p in _pairs(symbols) if p in ranks]
        if not ranked:
            break
        symbols = _merge(symbols, min(ranked)[1])
    return symbols


def encode_word(word: str, merges: tuple[str, ...]) -> list[str]:
    """A word of ``[a-z0-9]`` characters -> its sub-word tokens."""
    bad = set(word) - set(ALPHABET)
    if bad:
        raise ValueError(f"{word!r} has characters {sorted(bad)} outside the tokenizer's alphabet [a-z0-9]")
    return list(_encode(word, merges))
