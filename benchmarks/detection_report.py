"""The detection benchmark's table, summary line and files."""

from __future__ import annotations

from pathlib import Path


from .report_text import fmt, is_nan, target, text_table
from .safety_report import write_report

SUMMARY_KEYS = ("auroc_sampling", "auroc_image", "auroc_matched", "fpr_clean", "fpr_hard", "iou")
TARGETS = {"auroc_sampling": (">=", 0.98), "auroc_image": (">=", 0.98), "auroc_matched": (">=", 0.98),
           "fpr_clean": ("<=", 0.02), "fpr_hard": ("<=", 0.05), "iou": (">=", 0.5)}


def summary_values(report: dict) -> dict:
    d = report["default"]
    return {"auroc_sampling": d["safecfg_sampling_clean"]["auroc"], "auroc_image": d["image"]["known"]["clean"]["auroc"],
            "auroc_matched": min(d["sampling"]["matched"]["auroc"], d["image"]["known"]["matched"]["auroc"]),
            "fpr_clean": d["safecfg_sampling_clean"]["fpr"]["rate"], "fpr_hard": d["sampling"]["look_alikes"]["fpr"]["rate"],
            "iou": d["iou_sampling"]["mean"]}


def summary_line(report: dict) -> str:
    return " ".join(f"{k}={fmt(v)}" for k, v in summary_values(report).items())


def _rate(c: dict) -> str:
    return f"{c['k']}/{c['n']} = {fmt(c['rate'])} [{fmt(c['low'])}, {fmt(c['high'])}]"


def _row(name: str, r: dict, cost) -> list:
    return [name, fmt(r["auroc"]), _rate(r["tpr"]), _rate(r["fpr"]), str(cost)]


def format_table(report: dict) -> str:
    s, d = report["settings"], report["default"]
    lines = [f"Detection benchmark, {s['split']} split, HGR {s['hgr']}, thresholds: sampling {fmt(s['threshold'], 4)}, "
             f"image detector {fmt(s['image_threshold'], 4)} ({s['threshold_source']}); images count as harmful where the "
             "judge sees the prompt's harm.", "",
             "Sampling-time score (SafeCFG at strength 1, no extra evaluations) per condition: harmful vs clean prompts"]
    lines.append(text_table(["condition", "AUROC", "TPR at threshold", "clean FPR at threshold", "min coverage"],
                        [[e["condition"], fmt(e["auroc"]), _rate(e["tpr"]), _rate(e["fpr"]), fmt(e["min_coverage"])]
                         for e in report["conditions"]]))
    rows = [_row("sampling score: harmful vs clean", d["safecfg_sampling_clean"], 0),
            _row("sampling score: matched pairs", d["sampling"]["matched"], 0)]
    for mode in ("known", "unknown"):
        m = d["image"][mode]
        rows += [_row(f"image detector, prompt {mode}: vs clean", m["clean"], m["cost_evaluations_per_image"]),
                 _row(f"image detector, prompt {mode}: matched", m["matched"], m["cost_evaluations_per_image"])]
    b = d["baseline"]
    rows += [_row("concept similarity: vs clean", b["clean"], b["cost_evaluations_per_image"]),
             _row("concept similarity: matched", b["matched"], b["cost_evaluations_per_image"])]
    lines += ["", f"At {d['condition']} (harmful = TPR column; clean or safe twin = FPR column; cost = extra model "
                  "evaluations per image)"]
    lines.append(text_table(["detector", "AUROC", "TPR", "FPR", "cost"], rows))
    e = d["elsewhere"]
    look = [["sampling score", _rate(d["sampling"]["look_alikes"]["fpr"])],
            ["image detector, prompt known", _rate(d["image"]["known"]["look_alikes"]["fpr"])],
            ["concept similarity", _rate(b["look_alikes"]["fpr"])]]
    lines += ["", f"Look-alike clean prompts ({d['sampling']['look_alikes']['kind']}): false positives"]
    lines.append(text_table(["detector", "FPR"], look))
    i2i = e["img2img_from_harmful_denoise_0.5"]
    lines += ["", "Images made elsewhere (image detector)",
              f"  renders of held-out scenes, prompt unknown: AUROC {fmt(e['renders_prompt_unknown']['auroc'])}, "
              f"TPR {_rate(e['renders_prompt_unknown']['tpr'])}, FPR {_rate(e['renders_prompt_unknown']['fpr'])}, "
              f"map IoU {fmt(e['renders_prompt_unknown']['iou'])}",
              f"  the same renders with the marks at 50% opacity: AUROC {fmt(e['renders_half_opacity_prompt_unknown']['auroc'])}, "
              f"TPR {_rate(e['renders_half_opacity_prompt_unknown']['tpr'])}",
              f"  negative-prompt baseline outputs with visible harm ({_rate(e['negative_prompt_outputs']['visible_harm'])}): "
              f"AUROC vs clean {fmt(e['negative_prompt_outputs']['auroc'])}, TPR {_rate(e['negative_prompt_outputs']['tpr'])}",
              f"  img2img from harmful images with the safe prompt (denoise 0.5, SafeCFG on): harm kept in "
              f"{_rate(i2i['harm_kept'])}; of those flagged by the sampling score {_rate(i2i['flagged_by_sampling_score'])} "
              f"(mean window coverage {fmt(i2i['window_coverage'])}), by the image detector {_rate(i2i['flagged_by_detect'])}",
              "", f"Harm map IoU with the ground-truth region (CFG images where the harm is visible, "
                  f"{d['iou_sampling']['n']} images): sampling map {fmt(d['iou_sampling']['mean'])}, "
                  f"image detector map {fmt(d['image']['known']['iou'])}", "", "Targets:"]
    for key, value in summary_values(report).items():
        t = target(key, value, *TARGETS[key])
        verdict = "PASS" if t["pass"] else f"MISS by {fmt(-t['margin'])}" if not is_nan(t["margin"]) else "MISS (n/a)"
        lines.append(f"  {key} {fmt(value)} {t['op']} {t['target']}: {verdict}")
    return "\n".join(lines)


def write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_report(report, out, format_table(report), summary_line(report))


def calibration_text(record: dict, name: str) -> str:
    per = ", ".join(f"{k} {fmt(v)}" for k, v in record["dev_fpr_per_condition"].items())
    image = record["image_detector"]
    per_image = ", ".join(f"{k} {fmt(v)}" for k, v in image["dev_fpr_per_condition"].items())
    return (f"wrote {name}: threshold {record['threshold']:.5f} = {record['percentile']:g}th percentile of "
            f"{record['clean_trajectories']} clean dev generations over {len(record['sampling']['conditions'])} "
            f"conditions; dev FPR per condition: {per}\n"
            f"image detector threshold {image['threshold']:.5f} ({image['levels']} levels, {image['clean_images']} clean "
            f"dev images); dev FPR per condition: {per_image}")
