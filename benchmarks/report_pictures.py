"""The benchmark reports' pictures, drawn with PIL: the safety-vs-fidelity plot and prompt labels
for comparison grids (matplotlib is not a dependency)."""

from __future__ import annotations

import math
import textwrap

from PIL import Image, ImageDraw

from .report_text import METHOD_TITLES, is_nan


SWEEP_COLOUR = (200, 30, 30)
BASELINE_COLOURS = {"negative_prompt": (40, 150, 60), "word_filter": (120, 120, 120), "sld_weak": (150, 180, 240),
                    "sld_medium": (90, 130, 230), "sld_strong": (40, 80, 200), "sld_max": (20, 30, 120)}


def safety_fidelity_plot(report: dict, size=(720, 460)) -> Image.Image:
    """Harmful rate (seen + unseen prompts) against clean pixel difference to CFG: lower left is better.

    The SafeCFG strength sweep is a line with each point labelled by its strength; baselines are
    points named in the legend.
    """
    methods, series = report["methods"], []  # (legend, colour, [(x, y, point label)], connected)
    if report.get("strength_sweep"):
        pts = [(p["clean_pixel_diff"], _pooled(p), f"s={p['strength']:g}") for p in report["strength_sweep"]]
        series.append(("SafeCFG, strength 0..1", SWEEP_COLOUR, pts, True))
    for key, colour in BASELINE_COLOURS.items():
        if key in methods:
            m = methods[key]
            point = (m["clean"]["pixel_diff"], m["harmful_and_unseen_rate"], "")
            series.append((METHOD_TITLES[key], colour, [point], False))
    return _plot(series, "clean prompts: mean |pixel difference| to CFG, same seeds",
                 "harmful rate, seen + unseen phrasings", "Safety vs fidelity (lower left is better)", size)


FRONT_COLOUR = (40, 80, 200)


def fronts_plot(report: dict, size=(720, 460)) -> Image.Image:
    """An SLD grid report's two fronts on the test split: SafeCFG's strength sweep and SLD's front
    tuned on dev, harmful rate where CFG drew the harm against clean pixel change to CFG (lower left
    is better). Each point is labelled (strength, or the grid point's name)."""
    sweep = [(p["test"]["clean_pixel_diff"], p["test"]["harmful"]["rate"], f"s={p['strength']:g}")
             for p in report["safecfg_sweep"]]
    front = sorted(((p["test"]["clean_pixel_diff"], p["test"]["harmful"]["rate"], p["name"])
                    for p in report["grid"] if "test" in p), key=lambda pt: (pt[0], pt[1]))
    series = [("SafeCFG, strength 0..1", SWEEP_COLOUR, sweep, True),
              ("SLD front, tuned on dev", FRONT_COLOUR, front, True)]
    return _plot(series, "clean prompts: mean |pixel difference| to CFG, same seeds",
                 "harmful rate among the images CFG made harmful", "Test split: SafeCFG vs SLD tuned on dev "
                 "(lower left is better)", size)


ATTACK_COLOURS = {"cfg": (0, 0, 0), "safecfg": SWEEP_COLOUR, "safety_lora": (230, 140, 30),
                  "safety_lora_safecfg": (150, 60, 0), "sld_tuned": (160, 60, 200), **BASELINE_COLOURS}


def attack_plot(per_defence: dict, size=(720, 460)) -> Image.Image:
    """An attack report's defences (`attack_report.results`): test ASR at each one's dev-chosen attack against
    its loss of clean fidelity (1 - clean attribute accuracy relative to CFG's); lower left is better."""
    series = [(name.replace("_", " "), ATTACK_COLOURS.get(name, (90, 90, 90)),
               [(max(0.0, 1 - row["clean_fidelity"]), row["test_asr"]["rate"], name.replace("_", " "))], False)
              for name, row in per_defence.items()]
    return _plot(series, "clean fidelity lost: 1 - clean attribute accuracy / CFG's", "attack success rate (test, "
                 "each defence's dev-chosen attack)", "Prompt attacks: safety vs fidelity (lower left is better)", size)


def _pooled(point: dict) -> float:
    return (point["harmful_rate"] + point["unseen_rate"]) / 2  # the two sets have the same size


def _merged_labels(pixels, labels, radius: float = 12.0):
    """Point labels with points closer than `radius` px sharing one label ("s=0,0.25"), so none overlap."""
    merged: list[list] = []  # [(x, y), [texts]]
    for (px, py), label in zip(pixels, labels):
        if not label:
            continue
        near = next((m for m in merged if abs(m[0][0] - px) < radius and abs(m[0][1] - py) < radius), None)
        if near is None:
            merged.append([(px, py), [label]])
        else:
            near[1].append(label.split("=", 1)[-1])
    return [(xy, ",".join(texts)) for xy, texts in merged]


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 or 10 times a power of ten that is >= value (round axis ticks)."""
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value)


def _plot(series, x_label: str, y_label: str, title: str, size) -> Image.Image:
    """A small scatter/line plot drawn with PIL (matplotlib is not a dependency)."""
    width, height = size
    left, right, top, bottom, legend_w = 60, 20, 50, 50, 170
    xs = [x for _, _, pts, _ in series for x, _, _ in pts if not is_nan(x)]
    x_max = _nice_ceiling(max([0.02, *xs]) * 1.05)
    plot_right = width - right - legend_w
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)

    def to_px(x, y):
        return left + x / x_max * (plot_right - left), height - bottom - y * (height - top - bottom)

    draw.rectangle([left, top, plot_right, height - bottom], outline="black")
    for i in range(6):
        gx, gy = to_px(x_max * i / 5, i / 5)
        draw.line([gx, height - bottom, gx, height - bottom + 4], fill="black")
        draw.text((gx - 14, height - bottom + 6), f"{x_max * i / 5:.3f}", fill="black")
        draw.line([left - 4, gy, left, gy], fill="black")
        draw.text((left - 30, gy - 6), f"{i / 5:.1f}", fill="black")
    draw.text((left, 8), title, fill="black")
    draw.text((left, 26), f"y: {y_label}", fill="black")
    draw.text((left, height - 20), f"x: {x_label}", fill="black")
    for row, (legend, colour, pts, connected) in enumerate(series):
        pts = [pt for pt in pts if not (is_nan(pt[0]) or is_nan(pt[1]))]  # unmeasured: not drawn (labels stay aligned)
        pixels = [to_px(x, y) for x, y, _ in pts]
        if connected and len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        for px, py in pixels:
            draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=colour)
        dy = -12 if row % 2 == 0 else 2  # alternate series label above / below their points: fewer collisions
        for (px, py), label in _merged_labels(pixels, [label for _, _, label in pts]):
            draw.text((px + 6, py + dy), label, fill=colour)
        ly = top + 4 + 16 * row
        draw.ellipse([plot_right + 12, ly + 2, plot_right + 20, ly + 10], fill=colour)
        draw.text((plot_right + 26, ly), legend, fill="black")
    return img


def label_rows(grid: Image.Image, titles: list[str], cell_h: int, label_w: int = 260, top: int = 16,
               chars: int = 40) -> Image.Image:
    """Write each row's full prompt, wrapped, into the label column of a `training.preview.image_grid`."""
    draw = ImageDraw.Draw(grid)
    for r, title in enumerate(titles):
        lines = textwrap.wrap(title, chars)[: max(1, cell_h // 12)]
        y = top + r * cell_h + max(0, (cell_h - 12 * len(lines)) // 2)
        draw.rectangle([0, top + r * cell_h, label_w - 1, top + (r + 1) * cell_h - 1], fill="white")
        for i, line in enumerate(lines):
            draw.text((4, y + 12 * i), line, fill="black")
    return grid


def with_column_notes(grid: Image.Image, notes: list[str], cell_w: int, label_w: int = 260, top: int = 16
                      ) -> Image.Image:
    """The grid with a second title line under the column titles of a `training.preview.image_grid`."""
    out = Image.new("RGB", (grid.width, grid.height + 12), "white")
    out.paste(grid.crop((0, 0, grid.width, top)), (0, 0))
    out.paste(grid.crop((0, top, grid.width, grid.height)), (0, top + 12))
    draw = ImageDraw.Draw(out)
    for c, note in enumerate(notes):
        draw.text((label_w + c * cell_w + 2, top - 2), note, fill="dimgray")
    return out
