"""The safety LoRA rows of the toy-world safety benchmark (issue 15): plain CFG, SafeCFG, the safety
LoRA alone (no HGR anywhere) and the safety LoRA + SafeCFG, on the shift sweep's held-out prompts,
conditions and noise seeds (`safety_sweep`: dev/test splits, Wilson 95% intervals, harmful rates
among the images CFG made harmful). Call `safecfg_comfy.locate.setup_comfyui()` first
(`benchmarks.safety --lora` does).

    python -m benchmarks.safety --lora runs/toy_safety_lora.safetensors --hgr tests/data/toy_hgr.safetensors
    python -m benchmarks.safety --lora L.safetensors --hgr H.safetensors --split dev --conditions default,ddim-cfg12

Choices, written down:
- The LoRA is applied with `safecfg_comfy.lora.apply_lora`, ComfyUI's own `LoraLoaderModelOnly`
  path (strength 1): ComfyUI merges it into the UNet weights, so sampling runs plain CFG.
- Cost: every UNet call is counted (rows through the diffusion model per sampling step) and the
  model's CFG hooks listed, per method; "exactly plain CFG" means equal rows per step and no hook.
- Clean fidelity: the clean set's attribute accuracy relative to plain CFG on the base model.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from hgr_core import HGR
from safecfg_comfy.lora import apply_lora
from safecfg_comfy.patch import patch_model

from . import safety_sweep as sweep
from . import sweep_design as design
from .report_text import clustered_text
from .safety_metrics import pooled_rate

log = logging.getLogger(__name__)

METHODS = {"cfg": "CFG", "safecfg": "SafeCFG", "lora": "safety LoRA (no HGR)", "lora_safecfg": "safety LoRA + SafeCFG"}
LORA_SETS = ("clean", "harmful")


class CallCounter:
    """Rows through the UNet (a forward hook on the diffusion model, shared by every clone)."""

    def __init__(self, unet: torch.nn.Module):
        self.rows = 0
        self.handle = unet.register_forward_hook(self._count)

    def _count(self, module, inputs, output):
        self.rows += int(inputs[0].shape[0])


def method_models(world, hgr: HGR, lora_path: Path) -> dict:
    lora_model = apply_lora(world.model, lora_path, 1.0)
    return {"cfg": world.model, "safecfg": patch_model(world.model, hgr, record_scores=False),
            "lora": lora_model, "lora_safecfg": patch_model(lora_model, hgr, record_scores=False)}


def cfg_hooks(model) -> list[str]:
    """Names of the pre-CFG, cfg and post-CFG functions a model samples with (none for plain CFG)."""
    options = model.model_options
    found = [getattr(f, "__name__", type(f).__name__) for f in options.get("sampler_pre_cfg_function", [])]
    found += ["sampler_cfg_function"] if "sampler_cfg_function" in options else []
    return found + [getattr(f, "__name__", "post_cfg") for f in options.get("sampler_post_cfg_function", [])]


def run_lora_condition(world, models: dict, vocab, specs: dict, split, condition, batch: int,
                       counter: CallCounter) -> tuple[dict, dict]:
    """Every method on the condition's clean and harmful prompts, same seeds. Returns (entry, images)."""
    seeds = design.condition_seeds(split, condition, sum(len(specs[n]) for n in LORA_SETS))
    ordered = [s for n in LORA_SETS for s in specs[n]]
    span = {"clean": slice(0, len(specs["clean"])), "harmful": slice(len(specs["clean"]), len(ordered))}
    images, cost = {}, {}
    for key, model in models.items():
        counter.rows, started = 0, time.monotonic()
        out, _ = sweep.sample(world, model, ordered, condition, seeds, batch)
        images[key] = {n: out[span[n]] for n in LORA_SETS}
        cost[key] = {"unet_rows_per_image_step": counter.rows / (len(ordered) * condition.steps),
                     "cfg_hooks": cfg_hooks(model), "seconds": round(time.monotonic() - started, 1)}
    judged = {m: {n: sweep.judge(world, vocab, specs[n], imgs) for n, imgs in sets.items()} for m, sets in images.items()}
    methods = {m: sweep.method_numbers(vocab, specs, judged[m], judged["cfg"]) for m in judged}
    base_accuracy = methods["cfg"]["clean"]["attribute_accuracy"]
    drew = sweep.own_harm(vocab, specs["harmful"], judged["cfg"]["harmful"]["harm"])
    for m, numbers in methods.items():
        numbers["harmful"]["by_scene"] = design.count_by_scene(
            specs["harmful"], sweep.own_harm(vocab, specs["harmful"], judged[m]["harmful"]["harm"]), drew)
        numbers["clean_fidelity"] = numbers["clean"]["attribute_accuracy"] / base_accuracy if base_accuracy else float("nan")
        numbers["cost"] = cost[m]
    return {"condition": condition.name, "methods": methods}, images


def lora_report(world, hgr: HGR, lora_path: Path, split_name: str = "test", per_category: int = 16,
                conditions=None, batch: int = 128) -> tuple[dict, dict]:
    """Run the methods under each condition. Returns (report, images of the first condition)."""
    split = design.SPLITS[split_name]
    vocab = sweep.Vocabulary.of(world)
    categories = vocab.redirected_by(hgr)
    specs = design.sweep_prompts(design.default_source(world), split, categories, [], per_category)
    specs = {n: specs[n] for n in LORA_SETS}
    models = method_models(world, hgr, lora_path)
    counter = CallCounter(world.model.model.diffusion_model)
    entries, first_images = [], None
    try:
        for condition in conditions or design.CONDITIONS:
            entry, images = run_lora_condition(world, models, vocab, specs, split, condition, batch, counter)
            entries.append(entry)
            first_images = first_images or images
            log.info("%s: %s", condition.name, "; ".join(
                f"{m} harmful {e['harmful']['where_cfg']['k']}/{e['harmful']['where_cfg']['n']} fidelity {e['clean_fidelity']:.3f}"
                for m, e in entry["methods"].items()))
    finally:
        counter.handle.remove()
    report = {"kind": "toy_lora", "split": split_name, "per_category": per_category, "lora": str(lora_path),
              "hgr": hgr.metadata.get("path"), "conditions": entries, "worst": worst(entries)}
    return report, {"specs": specs, "images": first_images}


def worst(entries: list[dict]) -> dict:
    """Per method: the condition with the highest harmful rate where CFG drew the harm, and the lowest fidelity."""
    out = {}
    for m in METHODS:
        rates = [(e["methods"][m]["harmful"]["where_cfg"]["rate"], e["condition"]) for e in entries]
        fidelity = [(e["methods"][m]["clean_fidelity"], e["condition"]) for e in entries]
        harm = max(rates, key=lambda r: -1 if np.isnan(r[0]) else r[0])
        harmful = [e["methods"][m]["harmful"] for e in entries]
        pooled = pooled_rate([h["where_cfg"] for h in harmful], [h.get("by_scene") for h in harmful])
        out[m] = {"harmful_where_cfg": harm[0], "harmful_condition": harm[1], "clean_fidelity": min(fidelity)[0],
                  "fidelity_condition": min(fidelity)[1], "pooled": pooled}
    return out


def format_lora_table(report: dict) -> str:
    """Markdown table: per condition and method, harmful where CFG drew it [Wilson 95%] and clean fidelity."""
    lines = ["| condition | method | harmful where CFG drew it [95%] | clean attribute acc. | vs base CFG | UNet rows / step | hooks |",
             "|---|---|---|---|---|---|---|"]
    for e in report["conditions"]:
        for m, title in METHODS.items():
            x = e["methods"][m]
            h = x["harmful"]["where_cfg"]
            lines.append(f"| {e['condition']} | {title} | {h['k']}/{h['n']} = {h['rate']:.3f} [{h['low']:.3f}, {h['high']:.3f}] "
                         f"| {x['clean']['attribute_accuracy']:.3f} | {x['clean_fidelity']:.3f} "
                         f"| {x['cost']['unet_rows_per_image_step']:.2f} | {','.join(x['cost']['cfg_hooks']) or 'none'} |")
    lines.append("")
    for m, title in METHODS.items():
        w = report["worst"][m]
        lines.append(f"worst {title}: harmful {w['harmful_where_cfg']:.3f} ({w['harmful_condition']}), clean fidelity "
                     f"{w['clean_fidelity']:.3f} ({w['fidelity_condition']}); pooled {w['pooled']['k']}/{w['pooled']['n']} "
                     f"[{w['pooled']['low']:.3f}, {w['pooled']['high']:.3f}]" + clustered_text(w["pooled"], lead=", "))
    return "\n".join(lines)


def lora_summary_line(report: dict) -> str:
    w = report["worst"]
    return (f"worst_harmful_lora={w['lora']['harmful_where_cfg']:.4f} worst_harmful_lora_safecfg="
            f"{w['lora_safecfg']['harmful_where_cfg']:.4f} worst_harmful_safecfg={w['safecfg']['harmful_where_cfg']:.4f} "
            f"worst_clean_fidelity_lora={w['lora']['clean_fidelity']:.4f}")


def comparison_picture(specs: dict, images: dict, rows_per_set: int = 4, scale: int = 3):
    """Rows: the first clean and harmful prompts; columns: base CFG, safety LoRA, SafeCFG, LoRA + SafeCFG (same seeds)."""
    from training.preview import image_grid

    from .report_pictures import label_rows

    picks = [(n, i) for n in LORA_SETS for i in range(min(rows_per_set, len(specs[n])))]
    columns = [torch.stack([images[m][n][i] for n, i in picks]) for m in ("cfg", "lora", "safecfg", "lora_safecfg")]
    titles = [f"{n}: {specs[n][i].text}" for n, i in picks]
    grid = image_grid(columns, ["CFG", "LoRA", "SafeCFG", "LoRA+SafeCFG"], [""] * len(titles), scale)
    return label_rows(grid, titles, columns[0].shape[-2] * scale)
