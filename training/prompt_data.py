"""Prompt files for HGR training (METHOD.md section 4): harmful, clean, and concept texts.

Formats: .csv, .tsv, .jsonl (one object per line) and .txt (one prompt per line).
- harmful: `prompt, category[, safe_prompt]` (paired files), or I2P-style `prompt, categories`
  where categories is a comma-separated list ("sexual, violence"); I2P's names are mapped to ours
  (sexual -> nudity, shocking -> violence, illegal activity -> illegal). A .txt harmful file needs
  --harmful-category.
- clean: one prompt per line, or any table with a `prompt` column.
- concepts: JSON object {category: "concept words"}; built-in defaults cover common categories.
Every error names the file and line and says how to fix it.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CONCEPTS = {
    "nudity": "nudity, naked, nude, nsfw, sexual, exposed breasts, genitals",
    "violence": "violence, blood, gore, wounds, weapons, fighting, bloody",
    "gore": "gore, blood, mutilation, wounds, bloody, dismembered",
    "self-harm": "self-harm, suicide, cutting, self-injury",
    "hate": "hate, hate symbols, racism, discrimination, offensive",
    "illegal": "illegal activity, drugs, crime, theft, weapons",
}
CATEGORY_ALIASES = {
    "sexual": "nudity", "nsfw": "nudity", "nude": "nudity", "shocking": "violence",
    "illegal activity": "illegal", "harassment": "hate", "self harm": "self-harm",
}


class PromptFileError(ValueError):
    """A prompt file that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class HarmfulPrompt:
    text: str
    categories: tuple[str, ...]
    safe_text: str | None  # None: the target uses the category concept as a negative


def canonical_category(name: str) -> str:
    name = name.strip().lower()
    return CATEGORY_ALIASES.get(name, name)


def _rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs of a table file; .txt rows are {"prompt": line}."""
    if not path.is_file():
        raise PromptFileError(f"{path}: file not found")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".txt":
        return [(i, {"prompt": line.strip()}) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise PromptFileError(f"{path}:{i}: not valid JSON ({e.msg})") from e
            if not isinstance(row, dict):
                raise PromptFileError(f"{path}:{i}: each line must be a JSON object with a 'prompt' key")
            rows.append((i, row))
        return rows
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        if not reader.fieldnames or "prompt" not in reader.fieldnames:
            raise PromptFileError(f"{path}:1: no 'prompt' column in header {reader.fieldnames}; add one")
        return [(i, row) for i, row in enumerate(reader, 2)]
    raise PromptFileError(f"{path}: unknown prompt file type {suffix!r}; use .csv, .tsv, .jsonl or .txt")


def _prompt(path: Path, line: int, row: dict) -> str:
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptFileError(f"{path}:{line}: empty or missing prompt")
    return prompt.strip()


def _categories(path: Path, line: int, row: dict, default: str | None) -> tuple[str, ...]:
    raw = row.get("category") or row.get("categories") or default
    if isinstance(raw, list):
        raw = ",".join(raw)
    names = tuple(dict.fromkeys(canonical_category(c) for c in str(raw or "").split(",") if c.strip()))
    if not names:
        raise PromptFileError(f"{path}:{line}: no category; add a 'category' or 'categories' column "
                              "(or pass --harmful-category for .txt files)")
    return names


def read_harmful(path: str | Path, default_category: str | None = None) -> list[HarmfulPrompt]:
    path = Path(path)
    prompts = []
    for line, row in _rows(path):
        safe = row.get("safe_prompt")
        safe = safe.strip() if isinstance(safe, str) and safe.strip() else None
        prompts.append(HarmfulPrompt(_prompt(path, line, row), _categories(path, line, row, default_category), safe))
    if not prompts:
        raise PromptFileError(f"{path}: no prompts found")
    return prompts


def read_clean(path: str | Path) -> list[str]:
    path = Path(path)
    prompts = [_prompt(path, line, row) for line, row in _rows(path)]
    if not prompts:
        raise PromptFileError(f"{path}: no prompts found")
    return prompts


def read_concepts(path: str | Path | None) -> dict[str, str]:
    """Built-in concept texts, overridden/extended by a JSON file {category: text}."""
    concepts = dict(DEFAULT_CONCEPTS)
    if path is None:
        return concepts
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise PromptFileError(f"{path}: cannot read concept file ({e}); expected a JSON object") from e
    if not isinstance(data, dict) or not all(isinstance(v, str) and v.strip() for v in data.values()):
        raise PromptFileError(f"{path}: expected a JSON object mapping category -> non-empty concept text")
    concepts.update({canonical_category(k): v for k, v in data.items()})
    return concepts


def category_counts(harmful: list[HarmfulPrompt]) -> Counter:
    return Counter(c for p in harmful for c in p.categories)


def check_concepts(harmful: list[HarmfulPrompt], concepts: dict[str, str], source: str) -> None:
    """Every category of a prompt without a safe counterpart needs a concept text."""
    missing = sorted({c for p in harmful if p.safe_text is None for c in p.categories if c not in concepts})
    if missing:
        raise PromptFileError(f"{source}: no concept text for categories {missing}; add them to a --concepts JSON file")
