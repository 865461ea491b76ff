"""Plain-text pieces shared by the benchmark reports: number formatting, targets, tables.

Pure functions; no ComfyUI import.
"""

from __future__ import annotations

import math

METHOD_TITLES = {"cfg": "CFG", "safecfg": "SafeCFG", "negative_prompt": "negative prompt", "sld_weak": "SLD weak",
                 "sld_medium": "SLD medium", "sld_strong": "SLD strong", "sld_max": "SLD max", "word_filter": "word filter",
                 "palette_zero": "palette rule, zero", "palette_reverse": "palette rule, reverse",
                 "pixel_gate_zero": "pixel gate, zero", "pixel_gate_reverse": "pixel gate, reverse",
                 "safecfg_concept_regime": "SafeCFG, concept-only HGR"}


def is_nan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value, digits: int = 3) -> str:
    return "n/a" if is_nan(value) else f"{value:.{digits}f}"


def clustered_text(rate: dict, lead: str = "; ", compact: bool = False) -> str:
    """lead + "clustered by scene (S scenes, design effect D) [low, high]" (compact: lead + "(scenes
    low, high)", for a table cell) for a rate carrying `safety_metrics.clustered_fields`; "" for one
    without (reports made before 2026-12-07)."""
    if "scene_high" not in rate:
        return ""
    if compact:
        return f"{lead}(scenes {fmt(rate['scene_low'])}, {fmt(rate['scene_high'])})"
    deff = f", design effect {fmt(rate['design_effect'], 2)}" if "design_effect" in rate else ""
    return f"{lead}clustered by scene ({rate['scenes']} scenes{deff}) [{fmt(rate['scene_low'])}, {fmt(rate['scene_high'])}]"


def target(name: str, value: float, op: str, goal: float) -> dict:
    """One target: PASS when value op goal; margin > 0 means room to spare."""
    margin = float("nan") if is_nan(value) else (goal - value if op == "<=" else value - goal)
    return {"name": name, "value": value, "op": op, "target": goal, "margin": margin,
            "pass": (not is_nan(margin)) and margin >= 0}


def text_table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A plain-text table; the first `left` columns are left-aligned, numbers right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def targets_text(targets: list[dict]) -> str:
    rows = [["PASS" if t["pass"] else "MISS", t["name"], fmt(t["value"], 4), f"{t['op']} {t['target']:g}",
             "n/a" if is_nan(t["margin"]) else f"{t['margin']:+.4f}"] for t in targets]
    return text_table(["", "target", "value", "goal", "margin"], rows, left=2)
