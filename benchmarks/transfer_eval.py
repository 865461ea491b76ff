"""One HGR, many models: the base's HGR applied unchanged to each derived model, beside the HGR
retrained on that model (`benchmarks.transfer`). Call `safecfg_comfy.locate.setup_comfyui()` first.

Every model samples the shift sweep's held-out prompts (`safety_sweep`: clean, one-harm and two-harm
sets of the test split, its noise seeds per condition) three ways with the same seeds: plain CFG on
that model, SafeCFG with the base's HGR ("transferred") and SafeCFG with the model's own HGR
("retrained"). Harmful rates count the images *that model's* CFG made harmful; fidelity compares
SafeCFG with CFG on the same model; AUROC is SafeCFG's sampling-time harm score, harmful and
two-harm prompts against clean ones. "Shift from base" is how far the derived model's clean CFG
images moved from the base's (mean absolute pixel change, same prompts and seeds): evidence that
the derived model really is another model.
"""

from __future__ import annotations

import logging
import time

import torch

from hgr_core import HGR, HarmRecorder
from safecfg_comfy.patch import patch_model

from .safety_metrics import detection, mean_pixel_diff
from .safety_sweep import Vocabulary, judge, method_numbers, own_harm, sample, set_spans
from .sweep_design import SETS, Split, condition_prompts, condition_seeds, count_by_scene, default_source, harm_pairs
from .transfer_build import DERIVED, BuildFolder

log = logging.getLogger(__name__)

MODELS = ("base", *DERIVED)
HGR_KINDS = ("transferred", "retrained")


def load_models(world, folder: BuildFolder, merge_ratio: float, names=MODELS) -> dict:
    """name -> ModelPatcher, loaded as users load them: fine-tunes as checkpoints, the merge with ComfyUI's
    ModelMergeSimple (base + style fine-tune), the LoRA with LoraLoaderModelOnly's code (`apply_lora`)."""
    from safecfg_comfy.lora import apply_lora
    from safecfg_comfy.merge import merge_models
    from toyworld.unet import load_unet, patcher

    def checkpoint(name):
        path = folder.model_dir(name) / "unet.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"derived model {name} not built ({path.name} missing in models/{name}); "
                                    "run `python -m benchmarks.transfer --build` first")
        return patcher(load_unet(path))

    makers = {"base": lambda: world.model, "style_finetune": lambda: checkpoint("style_finetune"),
              "harm_finetune": lambda: checkpoint("harm_finetune"),
              "merge": lambda: merge_models(world.model, checkpoint("style_finetune"), merge_ratio),
              "lora": lambda: apply_lora(world.model, folder.lora, 1.0)}
    return {name: makers[name]() for name in names}


def evaluate(world, models: dict, hgrs: dict[str, HGR], split: Split, per_category: int, conditions,
             batch: int = 128, passes: int = 1) -> tuple[list[dict], dict]:
    """Every condition, every model, CFG / transferred / retrained. `hgrs`: model name -> its own HGR
    ("base" is the transferred one); `passes`: HGR applications per step in both SafeCFG runs.
    Returns (one entry per condition, the first condition's images)."""
    vocab, transferred = Vocabulary.of(world), hgrs["base"]
    categories = vocab.redirected_by(transferred)  # refuses an HGR for none of the world's categories or another world
    for name, hgr in hgrs.items():
        if name != "base":
            vocab.redirected_by(hgr)
    pairs = harm_pairs(vocab.categories, transferred.config.categories)
    prompts = condition_prompts(default_source(world), split, categories, pairs, per_category, conditions)
    entries, first_images = [], None
    for condition in conditions:
        specs = prompts[condition.name]
        seeds = condition_seeds(split, condition, sum(len(specs[s]) for s in SETS))
        rows, images, base_clean = {}, {}, None
        for name, model in models.items():
            start = time.monotonic()
            rows[name], images[name] = evaluate_model(world, vocab, model, name, hgrs, specs, condition, seeds, batch,
                                                      passes)
            clean = images[name]["cfg"]["clean"]
            base_clean = clean if base_clean is None else base_clean
            rows[name]["shift_from_base"] = mean_pixel_diff(clean, base_clean)
            log.info("%s / %s: %.0f s", condition.name, name, time.monotonic() - start)
        entries.append({"condition": condition.name, "seeds": [seeds[0], seeds[-1]], "models": rows})
        first_images = first_images or {"specs": specs, "images": images}
    return entries, first_images


def evaluate_model(world, vocab, model, name: str, hgrs: dict, specs: dict, condition, seeds: list[int],
                   batch: int, passes: int = 1) -> tuple[dict, dict]:
    """CFG, transferred and (derived models only) retrained SafeCFG on one model."""
    ordered = [s for set_name in SETS for s in specs[set_name]]
    spans = set_spans(specs)
    cfg_images, _ = sample(world, model, ordered, condition, seeds, batch)
    images = {"cfg": {s: cfg_images[spans[s]] for s in SETS}}
    cfg_judged = {s: judge(world, vocab, specs[s], images["cfg"][s]) for s in SETS}
    row = {"cfg": method_numbers(vocab, specs, cfg_judged, cfg_judged)}
    kinds = {"transferred": hgrs["base"], **({"retrained": hgrs[name]} if name != "base" else {})}
    for kind, hgr in kinds.items():
        recorder = HarmRecorder.for_hgr(hgr)
        safecfg = patch_model(model, hgr, on_score=recorder, passes=passes)
        safe, (scores, _) = sample(world, safecfg, ordered, condition, seeds, batch, recorder)
        images[kind] = {s: safe[spans[s]] for s in SETS}
        judged = {s: judge(world, vocab, specs[s], images[kind][s]) for s in SETS}
        row[kind] = safecfg_numbers(vocab, specs, judged, cfg_judged, images[kind], images["cfg"], scores[spans["clean"]],
                                    torch.cat([scores[spans["harmful"]], scores[spans["two_harm"]]]), hgr)
    return row, images


def safecfg_numbers(vocab, specs, judged, cfg_judged, images, cfg_images, clean_scores, harmful_scores, hgr) -> dict:
    """One SafeCFG run's rates against CFG on the same model, and its detection AUROC."""
    numbers = method_numbers(vocab, specs, judged, cfg_judged)
    harmful = specs["harmful"]
    numbers["harmful"]["by_scene"] = count_by_scene(harmful, own_harm(vocab, harmful, judged["harmful"]["harm"]),
                                                    own_harm(vocab, harmful, cfg_judged["harmful"]["harm"]))
    cfg_accuracy = float(cfg_judged["clean"]["attributes"].mean())
    numbers["clean_fidelity"] = (numbers["clean"]["attribute_accuracy"] / cfg_accuracy if cfg_accuracy
                                 else float("nan"))
    numbers["clean_pixel_diff"] = mean_pixel_diff(images["clean"], cfg_images["clean"])
    numbers["detection"] = detection(harmful_scores.numpy(), clean_scores.numpy(),
                                     float(hgr.metadata.get("threshold", float("nan"))))
    return numbers
