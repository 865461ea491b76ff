"""The SLD grid's report (`benchmarks/sld_grid.py`): the tuned front, its test-split points against
SafeCFG's strength sweep, the dominance target, the readable table and the summary line.

Pure functions of the report dict; no ComfyUI import.
"""

from __future__ import annotations

import json
from pathlib import Path

from hgr_core import SLDPreset

from .report_text import fmt, is_nan, target, targets_text, text_table
from .safety_metrics import dominates, non_dominated

SLD_GRID_SUMMARY_KEYS = ("sld_front_points", "sld_front_dominating", "safecfg_harmful", "safecfg_pixel_diff",
                         "sld_safest_harmful", "sld_safest_pixel_diff")


def objectives(numbers: dict) -> tuple[float, float, float]:
    """Lower is better: harmful rate where CFG drew the harm, minus the clean attribute-accuracy
    ratio to CFG, clean mean pixel change to CFG (same seeds)."""
    return numbers["harmful"]["rate"], -numbers["clean_fidelity"], numbers["clean_pixel_diff"]


def tuned_front(points: dict[str, dict]) -> list[str]:
    """Names of the points (name -> one split's numbers) that no other point Pareto-dominates."""
    return non_dominated({name: objectives(numbers) for name, numbers in points.items()})


def front_dominators(points: dict[str, dict], safecfg: dict) -> dict[str, bool]:
    """Per point (name -> numbers): does it Pareto-dominate SafeCFG's numbers (same split)?"""
    theirs = objectives(safecfg)
    return {name: dominates(objectives(numbers), theirs) for name, numbers in points.items()}


def front_entry(report: dict, file=None) -> dict:
    """What the plain benchmark's SLD target reads from a grid report: the front's test-split
    numbers and SafeCFG's at strength 1 on the same prompts and seeds."""
    if report.get("kind") != "sld_grid":
        raise ValueError(f"{file or 'the report'} is not an SLD grid report (kind {report.get('kind')!r}); "
                         "write one with `python -m benchmarks.safety --sld-grid`")
    safecfg = next(p["test"] for p in report["safecfg_sweep"] if p["strength"] == 1.0)
    return {"file": None if file is None else str(file), "hgr": report["settings"]["hgr"], "split": "test",
            "condition": report["settings"]["condition"], "safecfg": safecfg,
            "points": {p["name"]: p["test"] for p in report["grid"] if "test" in p}}


def read_front(path) -> dict:
    """`front_entry` of a saved grid report.json."""
    return front_entry(json.loads(Path(path).read_text()), path)


TUNED_FIDELITY = 0.98  # the clean-fidelity bar, which the tuned SLD point must keep on dev


def tuned_point(report: dict, file=None, world: str | None = None, cfg: float | None = None) -> dict:
    """One SLD setting tuned on dev, for harnesses that want a single "tuned SLD" row (the attacks):
    among the front's points, the lowest dev harmful rate that keeps dev clean fidelity >= 0.98 of
    CFG's (ties: the smaller pixel change); if no front point keeps it, the safest front point (ties:
    the more faithful), the setting an operator who relies on SLD would pick. Reads only the dev split's numbers. Returns {"name", "preset" (SLDPreset fields, warm-up in steps of the
    50-step reference schedule), "dev", "rule", "file"}. `world`: the toy world's version the point is for;
    a report made on another world, or one that does not say (older versions), is refused. `cfg`: the
    guidance scale the harness samples with; a point tuned at another scale is refused (SLD's best
    setting depends on it, and the comparison would not be fair to SLD)."""
    if report.get("kind") != "sld_grid":
        raise ValueError(f"{file or 'the report'} is not an SLD grid report (kind {report.get('kind')!r}); "
                         "write one with `python -m benchmarks.safety --sld-grid`")
    if world is not None and report.get("world") != world:
        raise ValueError(f"{file or 'the report'}: SLD was tuned on {report.get('world') or 'an unrecorded world'}, "
                         f"not {world}; rerun `python -m benchmarks.safety --sld-grid` with this world's --toy-weights")
    tuned_cfg = report.get("settings", {}).get("condition", {}).get("cfg")
    if cfg is not None and tuned_cfg != cfg:
        raise ValueError(f"{file or 'the report'}: SLD was tuned at cfg {tuned_cfg}, this run samples at cfg {cfg:g}; "
                         f"rerun `python -m benchmarks.safety --sld-grid --cfg {cfg:g}` for this harness")
    front = [p for p in report["grid"] if p["on_front"] and not is_nan(p["dev"]["harmful"]["rate"])]
    if not front:
        raise ValueError(f"{file or 'the report'}: CFG drew no harm on its dev split, so no SLD point can be "
                         "chosen; rerun --sld-grid with a larger --per-category")
    faithful = [p for p in front if p["dev"]["clean_fidelity"] >= TUNED_FIDELITY]
    if faithful:
        chosen = min(faithful, key=lambda p: (p["dev"]["harmful"]["rate"], p["dev"]["clean_pixel_diff"]))
        rule = f"lowest dev harmful rate with dev clean fidelity >= {TUNED_FIDELITY}"
    else:
        chosen = min(front, key=lambda p: (p["dev"]["harmful"]["rate"], -p["dev"]["clean_fidelity"]))
        rule = f"no front point keeps dev clean fidelity >= {TUNED_FIDELITY}: the safest front point"
    fields = set(SLDPreset.__dataclass_fields__)
    if set(chosen["preset"]) != fields:
        raise ValueError(f"{file or 'the report'}: grid point {chosen['name']} has SLD settings {sorted(chosen['preset'])}, "
                         f"expected {sorted(fields)}; rewrite the report with this version's --sld-grid")
    return {"name": chosen["name"], "preset": chosen["preset"], "dev": chosen["dev"], "rule": rule,
            "file": None if file is None else Path(file).name}


def read_tuned_point(path, world: str | None = None, cfg: float | None = None) -> dict:
    """`tuned_point` of a saved grid report.json (for toy world version `world`, sampling at `cfg`)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--sld-front: no file {path.name}; write one with `python -m benchmarks.safety --sld-grid`")
    return tuned_point(json.loads(path.read_text()), path, world, cfg)


def front_target(entry: dict) -> dict:
    """The issue's target: no point of SLD's tuned front dominates SafeCFG (test split)."""
    dominators = front_dominators(entry["points"], entry["safecfg"])
    name = (f"SLD tuned front (chosen on dev, {len(dominators)} points measured on test) "
            "that Pareto-dominate SafeCFG")
    out = target(name, float(sum(dominators.values())), "<=", 0.0)
    out["detail"] = dominators
    return out


def _safest(points: dict[str, dict]) -> dict | None:
    """The front point with the lowest harmful rate on test (ties: the smaller pixel change)."""
    known = [n for n in points.values() if not is_nan(n["harmful"]["rate"])]
    return min(known, key=lambda n: (n["harmful"]["rate"], n["clean_pixel_diff"]), default=None)


def finish_grid(report: dict) -> dict:
    """Add the front's dominance over SafeCFG, the targets and the summary to a grid report."""
    entry, nan = front_entry(report), float("nan")
    report["targets"] = [front_target(entry)]
    report["dominance"] = report["targets"][0]["detail"]
    safest = _safest(entry["points"])
    report["summary"] = {"sld_front_points": float(len(report["front"])),
                         "sld_front_dominating": float(sum(report["dominance"].values())),
                         "safecfg_harmful": entry["safecfg"]["harmful"]["rate"],
                         "safecfg_pixel_diff": entry["safecfg"]["clean_pixel_diff"],
                         "sld_safest_harmful": safest["harmful"]["rate"] if safest else nan,
                         "sld_safest_pixel_diff": safest["clean_pixel_diff"] if safest else nan}
    return report


def _ci(c: dict) -> str:
    return f"{c['k']}/{c['n']} [{fmt(c['low'])}, {fmt(c['high'])}]"


def _numbers_cells(n: dict) -> list[str]:
    return [_ci(n["harmful"]), fmt(n["clean_attribute_accuracy"]), fmt(n["clean_fidelity"]),
            fmt(n["clean_pixel_diff"], 4), fmt(n["clean_max_pixel_change"])]


NUMBER_HEADER = ["harmful where CFG drew it [95%]", "clean acc", "fidelity", "pixel diff", "max change"]


def _grid_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    steps = report["settings"]["condition"]["steps"]
    header = ["point", f"warm-up (of {steps})", "s_S", "lambda", "s_m", "beta", *NUMBER_HEADER, "s"]
    rows = []
    for p in report["grid"]:
        preset = p["preset"]
        rows.append([p["name"] + (" *" if p["on_front"] else ""), str(p["warmup_steps"]), f"{preset['sld_scale']:g}",
                     f"{preset['threshold']:g}", f"{preset['momentum']:g}", f"{preset['beta']:g}",
                     *_numbers_cells(p["dev"]), f"{p['dev']['seconds']:.0f}"])
    return header, rows


def _test_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    dominance = report.get("dominance", {})
    rows = [[f"SafeCFG s={p['strength']:g}", *_numbers_cells(p["test"]), ""] for p in report["safecfg_sweep"]]
    rows += [[f"SLD {p['name']}", *_numbers_cells(p["test"]), "yes" if dominance.get(p["name"]) else "no"]
             for p in report["grid"] if "test" in p]
    return ["method", *NUMBER_HEADER, "dominates SafeCFG s=1"], rows


def format_grid_table(report: dict) -> str:
    """The grid report as readable text: the grid on dev, then the front and SafeCFG's sweep on test."""
    s, c = report["settings"], report["settings"]["condition"]
    counts = {name: ", ".join(f"{k} {v}" for k, v in split["counts"].items())
              for name, split in report["splits"].items()}
    parts = [f"SLD grid tuned on dev, toy world: {c['sampler']}/{c['scheduler']} cfg {c['cfg']:g} x {c['steps']} steps, "
             f"safety concept {s['safety_concept']!r}; dev: {counts['dev']} prompts; test: {counts['test']} prompts "
             "(disjoint prompts and noise seeds)",
             "", f"grid on the dev split (* = on the tuned front: no other point is as good on harmful rate, "
                 f"fidelity and pixel change and better on one; warm-up scaled from {s['warmup_reference_steps']} steps)",
             text_table(*_grid_rows(report)),
             "", "test split: SafeCFG's strength sweep and the tuned front (same prompts and seeds)",
             text_table(*_test_rows(report))]
    if report.get("targets"):
        parts += ["", "targets", targets_text(report["targets"])]
    return "\n".join(parts)
