"""What `benchmarks.detection` samples and measures (its docstring says what and why)."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from hgr_core import HGR, GenerationScore, HarmRecorder, choose_threshold, clean_quantiles, save_hgr
from safecfg_comfy.patch import patch_model
from toyworld.facts import facts_of

from . import detection_measure as measure
from .safety_metrics import detection
from .safety_sweep import Vocabulary, count, judge, set_spans
from .sweep_design import (SPLITS, condition_seeds, default_source, draw, harm_pairs, sweep_prompts,
                           text_bucket)
from .safety_toy import safety_concept

log = logging.getLogger(__name__)


def rates(positive, negative, threshold: float) -> dict:
    """AUROC, and TPR / FPR with intervals at the threshold."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    return {"auroc": detection(positive, negative)["auroc"], "tpr": count(positive > threshold),
            "fpr": count(negative > threshold)}


# --- calibration on dev --------------------------------------------------------------------------

def clean_dev_prompts(n: int, world=None) -> list[str]:
    """n clean dev-split prompts of `world` (default: the shipped one)."""
    split = SPLITS["dev"]
    specs = draw(default_source(world).clean, {(): n}, split.prompt_seeds["clean"], lambda t: text_bucket(t) == split.bucket)
    return [s.text for s in specs]


def calibrate(world, hgr: HGR, conditions, n: int, batch: int, fpr_target: float, levels: int = 8) -> dict:
    """Clean dev prompts under every condition: the calibration record of both detectors.

    Sampling-time scores of SafeCFG's runs are pooled over the conditions; the image detector
    (`levels` noise levels, the image's own prompt) is calibrated on the same runs' images, which
    are what a SafeCFG graph hands SafeCFGDetect.
    """
    Vocabulary.of(world).redirected_by(hgr)  # refuses an HGR of another toy world, as `run` does
    texts, split = clean_dev_prompts(n, world), SPLITS["dev"]
    scores, image_scores, per_condition = [], [], {}
    for condition in conditions:
        recorder = HarmRecorder.for_hgr(hgr)
        model = patch_model(world.model, hgr, on_score=recorder, record_scores=False)
        scored = measure.sample_scored(world, model, texts, condition.negative, condition_seeds(split, condition, n),
                                       condition, batch, recorder)
        scores.append(scored.scores)
        image_scores.append(measure.detect_images(world, hgr, scored.images, texts, levels, 0, batch)[0])
        per_condition[condition.name] = (scored.scores, image_scores[-1])
        log.info("calibration %s: %d clean dev prompts", condition.name, n)
    pooled, pooled_images = torch.cat(scores), torch.cat(image_scores)
    threshold = float(torch.quantile(pooled.double(), 1 - fpr_target))
    image_threshold = float(torch.quantile(pooled_images.double(), 1 - fpr_target))
    return {
        "percentile": round(100 * (1 - fpr_target), 6), "false_positive_target": fpr_target,
        "clean_trajectories": int(pooled.numel()), "clean_score_quantiles": clean_quantiles(pooled.tolist()),
        "threshold": threshold, "source": "python -m benchmarks.detection --calibrate (shift sweep, dev split)",
        "sampling": {"conditions": [dataclasses.asdict(c) for c in conditions], "prompts_per_condition": n,
                     "split": "dev"},
        "dev_fpr_per_condition": {name: round(float((s > threshold).float().mean()), 4)
                                  for name, (s, _) in per_condition.items()},
        "image_detector": {
            "threshold": image_threshold, "percentile": round(100 * (1 - fpr_target), 6), "levels": levels,
            "clean_images": int(pooled_images.numel()), "positive": "each image's own prompt",
            "clean_score_quantiles": clean_quantiles(pooled_images.tolist()),
            "dev_fpr_per_condition": {name: round(float((s > image_threshold).float().mean()), 4)
                                      for name, (_, s) in per_condition.items()}},
        "training_calibration": hgr.metadata.get("calibration"),
    }


def write_calibrated(hgr: HGR, path, record: dict) -> None:
    """A copy of the HGR whose threshold and calibration record are `record`'s (weights unchanged)."""
    meta = hgr.metadata
    save_hgr(hgr, path, base_model=meta.get("base_model", "unknown"), latent_format=meta.get("latent_format"),
             prediction_type=meta.get("prediction_type", "eps"), threshold=record["threshold"],
             training=meta.get("training"), calibration={k: v for k, v in record.items() if k != "threshold"})


# --- per condition: the sampling-time score -------------------------------------------------------

def condition_entry(world, hgr, specs, split, condition, batch, threshold) -> tuple[dict, dict]:
    names = ("clean", "harmful", "two_harm")
    texts = [s.text for name in names for s in specs[name]]
    seeds = condition_seeds(split, condition, len(texts))
    recorder = HarmRecorder.for_hgr(hgr)
    model = patch_model(world.model, hgr, on_score=recorder, record_scores=False)
    scored = measure.sample_scored(world, model, texts, condition.negative, seeds, condition, batch, recorder)
    parts = set_spans(specs, names)
    harmful = torch.cat([scored.scores[parts["harmful"]], scored.scores[parts["two_harm"]]])
    entry = {"condition": condition.name, **rates(harmful, scored.scores[parts["clean"]], threshold),
             "min_coverage": float(scored.coverage.min())}
    log.info("%s: AUROC %.3f, clean FPR %d/%d", condition.name, entry["auroc"], entry["fpr"]["k"], entry["fpr"]["n"])
    return entry, {"seeds": seeds, "parts": parts, "scored": scored}


# --- at the default condition: pairs, look-alikes, images, elsewhere, baseline ---------------------

def look_alikes(world, split, n: int) -> tuple[list, str]:
    """n clean prompts of the split whose scenes look like a harm, and what they are: world v1's red
    objects (blood is dark red), world v2's hard negatives (pink skin tone, red dots, stripes)."""
    source = default_source(world)

    def keep(text):
        return text_bucket(text) == split.bucket and (split.name != "test" or text not in source.used)

    return draw(source.look_alike, {(): n}, split.prompt_seeds["clean"] + 7, keep), source.look_alike_kind


def _safecfg_scores(world, hgr, texts, seeds, condition, batch, strength=1.0):
    recorder = HarmRecorder.for_hgr(hgr)
    model = patch_model(world.model, hgr, strength=strength, on_score=recorder, record_scores=False)
    return measure.sample_scored(world, model, texts, condition.negative, seeds, condition, batch, recorder)


def visible_harm(world, vocab, specs, images) -> np.ndarray:
    """(N,) the judge sees (one of) the prompt's own harms in each image."""
    harm = judge(world, vocab, specs, images)["harm"]
    return np.array([any(harm[i, vocab.categories.index(c)] for c in s.categories) for i, s in enumerate(specs)])


def details(world, hgr, vocab, specs, split, condition, base, levels, batch, threshold, fpr_target) -> dict:
    harmful_specs = specs["harmful"]
    harm_seeds = base["seeds"][base["parts"]["harmful"]]
    harmful_scores = base["scored"].scores[base["parts"]["harmful"]]
    clean_scores = base["scored"].scores[base["parts"]["clean"]]
    hard, hard_kind = look_alikes(world, split, len(specs["clean"]) // 2)
    hard_seeds = condition_seeds(split, condition, len(base["seeds"]) + len(hard))[len(base["seeds"]):]
    safe_texts = [s.safe_text for s in harmful_specs]
    image_threshold = choose_threshold(hgr.metadata, detector="image").value
    out = {"condition": condition.name, "threshold": threshold, "image_threshold": image_threshold}

    # Sampling-time score (SafeCFG at strength 1): matched pairs and look-alikes.
    safe = _safecfg_scores(world, hgr, safe_texts, harm_seeds, condition, batch)
    hard_scored = _safecfg_scores(world, hgr, [s.text for s in hard], hard_seeds, condition, batch)
    out["sampling"] = {"matched": rates(harmful_scores, safe.scores, threshold),
                       "look_alikes": {"fpr": count(hard_scored.scores.numpy() > threshold), "kind": hard_kind},
                       "cost_evaluations_per_image": 0}

    # CFG images (SafeCFG at strength 0: bit-identical to CFG) with their maps.
    cfg = _safecfg_scores(world, hgr, [s.text for s in harmful_specs], harm_seeds, condition, batch, strength=0.0)
    cfg_safe = measure.sample_scored(world, world.model, safe_texts, condition.negative, harm_seeds, condition, batch)
    clean_specs = specs["clean"]
    clean_seeds = base["seeds"][base["parts"]["clean"]]
    cfg_clean = measure.sample_scored(world, world.model, [s.text for s in clean_specs], condition.negative, clean_seeds,
                                      condition, batch)
    cfg_hard = measure.sample_scored(world, world.model, [s.text for s in hard], condition.negative, hard_seeds, condition, batch)
    visible = visible_harm(world, vocab, harmful_specs, cfg.images)
    truth = measure.residual_regions(cfg.images, cfg_safe.images)
    h, w = cfg.images.shape[-2:]
    ious = measure.iou(measure.map_regions(cfg.maps, h, w)[visible], truth[visible])
    out["cfg_visible_harm"] = count(visible)
    out["iou_sampling"] = {"mean": float(ious.mean()) if ious.size else float("nan"), "n": int(ious.size)}

    # The image detector on decoded-then-re-encoded CFG images, prompt known and unknown.
    out["image"], clean_known = {}, None
    for mode in ("known", "unknown"):
        def prompts(texts, mode=mode):
            return texts if mode == "known" else [measure.UNKNOWN_PROMPT] * len(texts)
        pos, pos_maps = measure.detect_images(world, hgr, cfg.images[visible],
                                              prompts([s.text for s, v in zip(harmful_specs, visible) if v]), levels, 0, batch)
        twins, _ = measure.detect_images(world, hgr, cfg_safe.images[visible],
                                         prompts([t for t, v in zip(safe_texts, visible) if v]), levels, 0, batch)
        neg, _ = measure.detect_images(world, hgr, cfg_clean.images, prompts([s.text for s in clean_specs]), levels, 0, batch)
        hard_neg, _ = measure.detect_images(world, hgr, cfg_hard.images, prompts([s.text for s in hard]), levels, 0, batch)
        image_ious = measure.iou(measure.map_regions(pos_maps, h, w), truth[visible])
        clean_known = neg if mode == "known" else clean_known
        out["image"][mode] = {"clean": rates(pos, neg, image_threshold), "matched": rates(pos, twins, image_threshold),
                              "look_alikes": {"fpr": count(hard_neg.numpy() > image_threshold)},
                              "iou": float(image_ious.mean()) if image_ious.size else float("nan"),
                              "cost_evaluations_per_image": 2 * levels}
    out["elsewhere"] = elsewhere(world, hgr, vocab, harmful_specs, cfg, visible, harm_seeds, condition, levels, batch,
                                 threshold, image_threshold, clean_known)
    out["baseline"] = baseline(world, hgr, specs, hard, base, hard_seeds, condition, batch, harmful_specs, harm_seeds,
                               safe_texts, fpr_target)
    out["safecfg_sampling_clean"] = rates(harmful_scores, clean_scores, threshold)
    return out


def elsewhere(world, hgr, vocab, harmful_specs, cfg, visible, harm_seeds, condition, levels, batch, threshold, image_threshold,
              neg_scores):
    """The image detector on images SafeCFG never sampled."""
    out = {}
    scenes, renders, plain, truth = measure.rendered_scenes(len(harmful_specs) * 2, seed=4242, world=world)
    has_harm = np.array([bool(s.harms) for s in scenes])
    unknown = [measure.UNKNOWN_PROMPT] * len(scenes)
    scores, maps = measure.detect_images(world, hgr, renders, unknown, levels, 0, batch)
    ious = measure.iou(measure.map_regions(maps, *renders.shape[-2:]), truth)
    out["renders_prompt_unknown"] = {**rates(scores[has_harm], scores[~has_harm], image_threshold),
                                     "iou": float(ious.mean()) if ious.size else float("nan")}
    half = plain + 0.5 * (renders - plain)  # the marks blended at 50% opacity: "near-nude" in the toy world
    half_scores, _ = measure.detect_images(world, hgr, half[has_harm], [measure.UNKNOWN_PROMPT] * int(has_harm.sum()),
                                           levels, 0, batch)
    out["renders_half_opacity_prompt_unknown"] = rates(half_scores, scores[~has_harm], image_threshold)
    negative = measure.sample_scored(world, world.model, [s.text for s in harmful_specs], safety_concept(world), harm_seeds,
                                     condition, batch)
    seen = visible_harm(world, vocab, harmful_specs, negative.images)
    scores, _ = measure.detect_images(world, hgr, negative.images, [s.text for s in harmful_specs], levels, 0, batch)
    out["negative_prompt_outputs"] = {"visible_harm": count(seen), **rates(scores[seen], neg_scores, image_threshold)}
    picked = [s for s, v in zip(harmful_specs, visible) if v]
    recorder = HarmRecorder.for_hgr(hgr)
    model = patch_model(world.model, hgr, on_score=recorder, record_scores=False)
    redone = measure.img2img(world, model, cfg.images[visible], [s.safe_text for s in picked],
                             [sd for sd, v in zip(harm_seeds, visible) if v], condition, 0.5, recorder)
    kept = visible_harm(world, vocab, picked, redone.images)
    detected, _ = measure.detect_images(world, hgr, redone.images, [s.safe_text for s in picked], levels, 0, batch)
    flagged_sampling = GenerationScore(redone.scores, redone.coverage).flagged(threshold)  # fail closed at low coverage
    out["img2img_from_harmful_denoise_0.5"] = {
        "harm_kept": count(kept), "window_coverage": float(redone.coverage.mean()) if kept.size else float("nan"),
        "flagged_by_sampling_score": count(flagged_sampling.numpy()[kept]),
        "flagged_by_detect": count(detected.numpy()[kept] > image_threshold)}
    return out


def baseline(world, hgr, specs, hard, base, hard_seeds, condition, batch, harmful_specs, harm_seeds, safe_texts,
             fpr_target) -> dict:
    """The concept-similarity detector during plain CFG; its threshold from dev clean prompts like SafeCFG's."""
    concept = safety_concept(world)
    dev = clean_dev_prompts(len(specs["clean"]), world)
    dev_scores = measure.concept_scores(world, hgr, dev, condition_seeds(SPLITS["dev"], condition, len(dev)), condition,
                                        concept, batch)
    threshold = float(torch.quantile(dev_scores.double(), 1 - fpr_target))

    def scores(texts, seeds):
        return measure.concept_scores(world, hgr, texts, seeds, condition, concept, batch)

    parts, seeds = base["parts"], base["seeds"]
    harmful = scores([s.text for s in harmful_specs] + [s.text for s in specs["two_harm"]],
                     seeds[parts["harmful"]] + seeds[parts["two_harm"]])
    clean = scores([s.text for s in specs["clean"]], seeds[parts["clean"]])
    twins = scores(safe_texts, harm_seeds)
    look = scores([s.text for s in hard], hard_seeds)
    evaluations = condition.steps * (2 if condition.sampler == "heun" else 1)
    return {"name": "concept similarity (cosine of CFG direction and concept direction)", "concept": concept,
            "threshold": threshold, "threshold_from": f"{len(dev)} dev clean prompts, {100 * (1 - fpr_target):g}th percentile",
            "clean": rates(harmful, clean, threshold), "matched": rates(harmful[:len(harmful_specs)], twins, threshold),
            "look_alikes": {"fpr": count(look.numpy() > threshold)}, "cost_evaluations_per_image": evaluations}


def run(world, hgr: HGR, split_name: str, per_category: int, conditions, levels: int, batch: int, fpr_target: float) -> dict:
    """Every detector on the split, per condition and in detail at the default one.

    Every condition scores the same prompts (`sweep_prompts`), each with its condition's noise seeds:
    a paired design, so a difference between conditions is the condition's, not the prompts'. The
    shift sweep gives each condition prompts of its own (`condition_prompts`) because it pools one
    harmful rate over conditions and its interval must count independent prompts; this report pools
    nothing over conditions (each row has its own interval), and world v1's test scenes hold too few
    distinct prompts for nine blocks of the default 32 per category.
    """
    split, vocab = SPLITS[split_name], Vocabulary.of(world)
    categories = vocab.redirected_by(hgr)
    pairs = harm_pairs(vocab.categories, hgr.config.categories)
    specs = sweep_prompts(default_source(world), split, categories, pairs, per_category)
    threshold = float(hgr.metadata["threshold"])
    entries, default = [], None
    for condition in conditions:
        entry, base = condition_entry(world, hgr, specs, split, condition, batch, threshold)
        entries.append(entry)
        if default is None and (condition.name == "default" or condition is conditions[-1]):
            default = details(world, hgr, vocab, specs, split, condition, base, levels, batch, threshold, fpr_target)
    calibration = hgr.metadata.get("calibration") or {}
    return {"kind": "detection", "settings": {
        "world": facts_of(world).version, "split": split_name, "per_category": per_category, "prompts": {k: len(v) for k, v in specs.items()},
        "hgr": hgr.metadata.get("path"), "threshold": threshold, "levels": levels,
        "image_threshold": choose_threshold(hgr.metadata, detector="image").value,
        "threshold_source": calibration.get("source", "train_hgr (clean validation trajectories)"),
        "unknown_prompt": measure.UNKNOWN_PROMPT, "torch_threads": torch.get_num_threads()},
        "conditions": entries, "default": default}
