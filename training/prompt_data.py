"""Prompt files for HGR training (METHOD.md section 4): harmful, clean, and concept texts.

Formats: .csv, .tsv, .jsonl (one object per line) and .txt (one prompt per line).
- harmful: `prompt, category[, safe_prompt]` (paired files), or I2P-style `prompt, categories`
  where categories is a comma-separated list ("sexual, violence"); I2P's names are mapped to ours
  (sexual -> nudity, shocking -> violence, illegal activity -> illegal). A .txt harmful file needs
  --harmful-category.
- clean: one prompt per line, or any table with a `prompt` column.
- either table may carry a `group` column (`read_groups`): train_hgr splits validation by group.
- published sets carry a seed and a guidance scale per prompt (`published_sampling`, `read_sampling`):
  `evaluation_seed`, `evaluation_guidance` (the copies in Diffusion-MU-Attack) or I2P's original
  `sd_seed`, `sd_guidance_scale`; the benchmarks sample with them. train_hgr ignores them on
  purpose: training on the very (prompt, seed, scale) a benchmark then samples would contaminate
  that benchmark, and it draws its own seeds and scales across the training mix.
- concepts: JSON object {category: "concept words"}; built-in defaults cover common categories.
`read_rows` is the one parser of these files; the benchmarks read published prompt sets with it.
Every error names the file and line and says how to fix it.
"""

from __future__ import annotations

import csv
import io
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
TABLE_SUFFIXES = (".csv", ".tsv")
PROMPT_SUFFIXES = (*TABLE_SUFFIXES, ".jsonl", ".txt")
CATEGORY_ALIASES = {
    "sexual": "nudity", "nsfw": "nudity", "nude": "nudity", "shocking": "violence",
    "illegal activity": "illegal", "harassment": "hate", "self harm": "self-harm",
}
# Per-prompt seed and guidance columns, preferred first: Diffusion-MU-Attack's copies of I2P, COCO-10k,
# Ring-A-Bell and UnlearnDiffAtk name them evaluation_*, I2P's original release (AIML-TUDA/i2p) sd_*.
SEED_COLUMNS = ("evaluation_seed", "sd_seed")
GUIDANCE_COLUMNS = ("evaluation_guidance", "sd_guidance_scale")


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


def read_rows(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, record) of every record in a prompt file, as the file has them.

    .csv/.tsv: one dict per table row, keyed by the header (the line is where the row ends);
    .jsonl: the object on each non-blank line; .txt: {"prompt": line} for each non-blank line.
    Nothing is split at U+2028, U+2029, \x0b, \x0c, \x1c-\x1e or \x85, which `str.splitlines()`
    treats as line ends and which occur inside published attack prompts: Ring-A-Bell's
    Violence_eta_5.5_K_38.csv would read as 253 rows instead of its 250.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix not in PROMPT_SUFFIXES:
        raise PromptFileError(f"{path}: unknown prompt file type {suffix!r}; use .csv, .tsv, .jsonl or .txt")
    with path.open(encoding="utf-8-sig", newline="") as f:  # newline="": csv sees \r\n as written
        text = f.read()
    if suffix in TABLE_SUFFIXES:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        return [(reader.line_num, row) for row in reader]
    lines = [(i, line.removesuffix("\r")) for i, line in enumerate(text.split("\n"), 1) if line.strip()]
    if suffix == ".txt":
        return [(i, {"prompt": line.strip()}) for i, line in lines]
    return [(i, _json_object(path, i, line)) for i, line in lines]


def _json_object(path: Path, line: int, text: str) -> dict:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        raise PromptFileError(f"{path}:{line}: not valid JSON ({e.msg})") from e
    if not isinstance(row, dict):
        raise PromptFileError(f"{path}:{line}: each line must be a JSON object with a 'prompt' key")
    return row


def _rows(path: Path) -> list[tuple[int, dict]]:
    """`read_rows`, refusing a table without a `prompt` column up front rather than row by row."""
    rows = read_rows(path)
    if path.suffix.lower() in TABLE_SUFFIXES and rows and "prompt" not in rows[0][1]:
        raise PromptFileError(f"{path}:1: no 'prompt' column in header {list(rows[0][1])}; add one")
    return rows


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


def _number(text: str, kind):
    """`text` as a float, or as an int: exact for digits (seeds such as 4261553411), "42.0" -> 42."""
    if kind is int and text.lstrip("+-").isdigit():
        return int(text)
    number = float(text)
    if kind is int and not number.is_integer():
        raise ValueError(text)
    return int(number) if kind is int else number


def _published_value(path: Path, line: int, row: dict, columns: tuple[str, ...], kind):
    """The first non-empty of `columns` in the row as `kind` (int or float), or None."""
    for column in columns:
        value = row.get(column)
        text = "" if value is None else str(value).strip()  # a JSON seed may be the number 0
        if text:
            try:
                return _number(text, kind)
            except (ValueError, OverflowError):
                raise PromptFileError(f"{path}:{line}: {column} {text!r} is not a {kind.__name__}; fix or empty it") from None
    return None


def published_sampling(path: str | Path, line: int, row: dict) -> tuple[int | None, float | None]:
    """(seed, guidance scale) a published prompt set gives this row; None where it gives none.

    Reads both conventions: `evaluation_seed` / `evaluation_guidance` and I2P's original
    `sd_seed` / `sd_guidance_scale`. A row with both uses the evaluation_* value (the column a
    benchmark copy chose to evaluate with) and falls back to sd_* only where evaluation_* is empty.
    """
    return (_published_value(Path(path), line, row, SEED_COLUMNS, int),
            _published_value(Path(path), line, row, GUIDANCE_COLUMNS, float))


def read_sampling(path: str | Path) -> dict[str, tuple[int | None, float | None]]:
    """{prompt: (seed, guidance)} for the rows that give a published seed or guidance (`published_sampling`).

    A prompt on several rows keeps its last row's values. Files without these columns give {}.
    """
    path = Path(path)
    found = {}
    for line, row in _rows(path):
        sampling = published_sampling(path, line, row)
        if sampling != (None, None):
            found[_prompt(path, line, row)] = sampling
    return found


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


def read_groups(path: str | Path) -> dict[str, str]:
    """{prompt: group} for the rows of a table or .jsonl file that have a non-empty `group` field.

    Prompts of one group (in the toy world: one scene, however it is phrased) land on the same
    side of train_hgr's validation split, so validation never sees a scene training saw.
    """
    path = Path(path)
    groups = {}
    for line, row in _rows(path):
        group = row.get("group")
        if isinstance(group, str) and group.strip():
            groups[_prompt(path, line, row)] = group.strip()
    return groups


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


def read_pool(path: str | Path) -> list[str]:
    """The prompts of an unlabelled pool file (any prompt file format), in file order, duplicates dropped.

    Only the `prompt` field is read: a `category`/`categories` column, if the file has one, never
    reaches `finetune_safe`'s pseudo-labels or training (`read_hidden_truth` reads it for the report).
    """
    path = Path(path)
    prompts = list(dict.fromkeys(_prompt(path, line, row) for line, row in _rows(path)))
    if not prompts:
        raise PromptFileError(f"{path}: no prompts found")
    return prompts


def read_hidden_truth(path: str | Path) -> dict[str, tuple[str, ...]] | None:
    """{prompt: categories} from a pool file's `category`/`categories` column (empty = clean), or None
    when the file has no such column. Used only to report pseudo-label precision and recall."""
    path = Path(path)
    rows = _rows(path)
    if not any("category" in row or "categories" in row for _, row in rows):
        return None
    truth = {}
    for line, row in rows:
        raw = row.get("category") or row.get("categories") or ""
        raw = ",".join(raw) if isinstance(raw, list) else str(raw)
        truth[_prompt(path, line, row)] = tuple(dict.fromkeys(canonical_category(c) for c in raw.split(",") if c.strip()))
    return truth
