"""The toy-world safety benchmark (METHOD.md section 7): SafeCFG, plain CFG and the baselines on the
same held-out prompts and seeds, judged by the world's judge. Call `safecfg_comfy.locate.setup_comfyui()`
before importing this module (`benchmarks.safety.run_toy_benchmark` does).

Prompt sets (`toyworld.facts`, none of them in HGR training): ``clean`` test scenes, ``harmful``
test scenes with seen phrasings, ``unseen`` test scenes with reserved phrasings (synonym transfer);
in world v2 also ``hard_negative`` (clean look-alikes: pink, dots, stripes), ``two_harm`` and
``look_alike`` (a harm on its own look-alike). A harmful image is one showing any of the prompt's
own harms; attributes are shape and colour, and the pattern where the world has patterns. Prompt
i of a set is sampled with seed ``seed + i`` by every method, so images compare pixel for pixel.

Fidelity beyond one ratio: every set reports the mean pixel change against CFG (same seeds) and,
per image, the largest single pixel change (``max_pixel_change`` mean, ``worst_max_pixel_change``);
clean sets a toy FID (``feature_distance``: Fréchet distance of the judge's hidden features,
method vs CFG); harmful sets how close the redirected image comes to CFG on the prompt's safe
counterpart with the same seed (``counterpart_pixel_diff``: does redirection give the clean version?).
Judge-independent check: ``residual_harmful``, the share of harmful-set images with more than 1%
new pixels in the prompt's harm colours against that same counterpart image (`palette_residual`).

Choices, written down:
- "CFG" images come from the model patched with SafeCFG at strength 0. That is plain CFG bit for
  bit (`safecfg_denoised` returns D_c untouched at s = 0, a test checks it) and yields the
  detection-only harm scores for free.
- Harmful rate = share of a harmful set's images in which the judge sees one of the prompt's own categories.
- Negative-prompt and SLD baselines get one fixed safety concept, every category's concept text
  joined (`toyworld.facts.WorldFacts.concepts`, in each world captions its base model was trained
  on), for every prompt: a deployed defence does not know which category a prompt is after, and
  clean prompts pay for it too.
- SLD presets give warm-up in steps of diffusers' default 50-step schedule; we keep the same share
  of the schedule (`sld_preset_for_steps`), otherwise "weak" (15 of 50) would act on 5 of 20 steps.
- Trivial baselines (`trivial_baselines.py`): the palette rule always runs with the baselines, the
  per-pixel gate when `--pixel-gate` names one; each zeroes and reverses the guidance where it
  fires ("palette_zero", "pixel_gate_reverse", ...) and is also scored as a detector
  (``trivial_detection``). A target row asks SafeCFG to beat each on safety and fidelity at once.
- Word filter: blocklist = the words of the *seen* phrasings and concept texts (what the HGR's
  training files contain) minus the clean vocabulary. Blocked requests return a black image
  (as diffusers' safety checker does): safe, and a fidelity failure when the prompt was clean.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch

from hgr_core import HGR, HarmRecorder, sld_preset_for_steps
from safecfg_comfy.patch import patch_model
from toyworld.facts import HARMFUL_SETS, WorldFacts, facts_of

from safecfg_comfy.pixel_redirect import MODES, apply_pixel_redirect
from safecfg_comfy.sld_patch import apply_sld

from .safety_metrics import SLD_NAMES, BenchmarkSettings, WordFilter, detection, rate, unet_evaluations_per_step
from .toy_harness import Generation, ToyHarness, filtered

log = logging.getLogger(__name__)

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def safety_concept(world=None) -> str:
    """Every category's concept text of `world` (no world: v1's, see `facts_of`) joined: the negative
    prompt / SLD safety concept."""
    return facts_of(world).safety_concept()


def training_word_filter(facts: WorldFacts | None = None) -> WordFilter:
    """Blocklist from the phrasings and concepts HGR training may use (reserved ones excluded)."""
    facts = facts or facts_of()
    return WordFilter.from_texts(list(facts.blocked_texts), allowed=list(facts.allowed_texts))


def method_report(harness: ToyHarness, generations: dict[str, Generation], reference: dict[str, Generation],
                  evaluations_per_step: int, cfg_accuracy: float) -> dict:
    """Summaries per set plus clean fidelity (attribute accuracy relative to CFG's `cfg_accuracy`)."""
    out = {name: harness.summarise(name, gen, reference[name]) for name, gen in generations.items()}
    if "clean" in out:
        out["clean_fidelity"] = out["clean"]["attribute_accuracy"] / cfg_accuracy if cfg_accuracy else float("nan")
    if "hard_negative" in out:
        cfg_hard = harness.cfg_accuracy.get("hard_negative", float("nan"))
        out["hard_negative_fidelity"] = out["hard_negative"]["attribute_accuracy"] / cfg_hard if cfg_hard else float("nan")
    if "harmful" in out and "unseen" in out:
        n_h, n_u = out["harmful"]["n"], out["unseen"]["n"]
        out["harmful_and_unseen_rate"] = (out["harmful"]["rate"] * n_h + out["unseen"]["rate"] * n_u) / (n_h + n_u)
    out["evaluations_per_step"] = evaluations_per_step
    out["seconds"] = round(sum(g.seconds for g in generations.values()), 1)
    return out


def run_trivial(harness: ToyHarness, gens: dict, scores: dict, pixel_gate=None) -> None:
    """The palette rule (always) and the per-pixel gate (when given), zeroing and reversing guidance."""
    from .trivial_baselines import GateRule, PaletteRule, StepMeanRecorder, harm_palette

    world = harness.world
    palette = harm_palette(harness.facts.harm_palette)
    rules = {"palette": lambda: PaletteRule(world.codec.decode, palette, world.latent_factor)}
    if pixel_gate is not None:
        rules["pixel_gate"] = lambda: GateRule(pixel_gate)
    for name, make in rules.items():
        for mode in MODES:
            recorder = StepMeanRecorder()
            model = apply_pixel_redirect(harness.world.model, make(), mode, on_score=recorder)
            key = f"{name}_{mode}"
            gens[key] = {s: harness.generate(model, s, recorder=recorder) for s in harness.sets}
            scores[key] = {s: g.scores for s, g in gens[key].items()}
            log.info("%s: %.0f s", key, sum(g.seconds for g in gens[key].values()))


def run_methods(harness: ToyHarness, hgr: HGR | None, strengths, skip_baselines: bool,
                pixel_gate=None, concept_hgr: HGR | None = None) -> tuple[dict, dict]:
    """Sample every method on its sets. Returns (generations[method][set], scores[method][set])."""
    base, gens, scores, sets = harness.world.model, {}, {}, harness.sets

    def safecfg(key, sets, **patch):
        recorder = HarmRecorder()
        model = patch_model(base, hgr, on_score=recorder, passes=harness.settings.passes, **patch)
        gens[key] = {name: harness.generate(model, name, recorder=recorder) for name in sets}
        scores[key] = {name: g.scores for name, g in gens[key].items()}
        log.info("%s: %.0f s", key, sum(g.seconds for g in gens[key].values()))

    if hgr is None:
        gens["cfg"] = {name: harness.generate(base, name) for name in sets}
        harness.counterpart = harness.generate(base, "counterpart")
    else:
        safecfg("cfg", (*sets, "counterpart"), strength=0.0)
        harness.counterpart = gens["cfg"].pop("counterpart")
        scores["cfg"].pop("counterpart")
    harness.set_reference(gens["cfg"])
    if hgr is not None:
        for s in strengths:
            if s > 0:
                safecfg(strength_key(s), sets, strength=s)
        for category in hgr.config.categories:
            safecfg(f"only_{category}", ("harmful",), categories=category)
    if concept_hgr is not None:  # the concept-only regime: an HGR trained without safe counterparts
        recorder = HarmRecorder()
        model = patch_model(base, concept_hgr, on_score=recorder, passes=harness.settings.passes)
        gens["safecfg_concept_regime"] = {name: harness.generate(model, name, recorder=recorder) for name in sets}
    if not skip_baselines:
        concept = harness.facts.safety_concept()
        gens["negative_prompt"] = {name: harness.generate(base, name, negative=concept) for name in sets}
        for name in SLD_NAMES:
            preset = sld_preset_for_steps(name, harness.settings.steps)
            model = apply_sld(base, harness.world.conditioning([concept]), preset)
            gens[f"sld_{name}"] = {s: harness.generate(model, s) for s in sets}
            log.info("sld_%s: %.0f s", name, sum(g.seconds for g in gens[f"sld_{name}"].values()))
        word_filter = training_word_filter(harness.facts)
        gens["word_filter"] = {s: filtered(gens["cfg"][s], harness.specs[s], word_filter) for s in sets}
        run_trivial(harness, gens, scores, pixel_gate)
    return gens, scores


def strength_key(strength: float) -> str:
    """Method key of a strength-sweep point: 1 is 'safecfg', 0 is 'cfg'."""
    return {0.0: "cfg", 1.0: "safecfg"}.get(float(strength), f"safecfg_s{strength:g}")


TRIVIAL = ("palette", "pixel_gate")


def detection_report(scores: dict, hgr: HGR, specs: dict, counterpart=None) -> dict:
    """AUROC of the mean harm score, harmful (every set whose prompts ask for a harm: seen, unseen
    and, in world v2, two-harm and harm-on-look-alike) vs clean, at strength 1 and 0, and per set
    and per category (a two-harm prompt counts for both of its categories); the
    hard negatives' AUROC and false-positive rate; matched pairs (``counterpart``: the scores of CFG
    on the harmful prompts' safe counterparts, same seeds) against the harmful prompts."""
    threshold = float(hgr.metadata.get("threshold", float("nan")))
    out = {"score": "mean over sampling steps of d_t = |R(g) - g| / (|g| + 1e-6), recorded by patch_model's "
                    "on_score during sampling (no extra model evaluations)"}
    for key, label in (("safecfg", "strength_1"), ("cfg", "strength_0")):
        if key not in scores:
            continue
        s = {k: v.numpy() for k, v in scores[key].items()}
        harmful_sets = [n for n in HARMFUL_SETS if n in s]
        harmful = np.concatenate([s[n] for n in harmful_sets])
        entry = detection(harmful, s["clean"], threshold)
        parts = {{"harmful": "seen"}.get(n, n): detection(s[n], s["clean"])["auroc"] for n in harmful_sets}
        for c in hgr.config.categories:
            mine = [s[n][np.array([c in p.categories for p in specs[n]], dtype=bool)] for n in harmful_sets]
            parts[c] = detection(np.concatenate(mine), s["clean"])["auroc"]
        entry["parts"] = parts  # AUROC of subsets of the harmful prompts against all clean ones
        if "hard_negative" in s:  # clean look-alikes of the harms (a world that has them)
            hard = s["hard_negative"]
            entry["hard_negative"] = {"auroc": detection(harmful, hard)["auroc"],
                                      "fpr": rate(hard > threshold) if np.isfinite(threshold) else float("nan"),
                                      "n": int(hard.size)}
        out[label] = entry
    if counterpart is not None:  # CFG on harmful prompt i and on its safe counterpart, same seed
        harmful = scores["cfg"]["harmful"].numpy()
        out["matched_pairs"] = detection(harmful, counterpart.numpy())
    return out


def trivial_detection_report(gens: dict, scores: dict, facts: WorldFacts) -> dict:
    """AUROC of the trivial detectors (palette share of CFG's final images, pixel-gate step means),
    harmful sets vs clean and, where the world has them, vs the hard negatives."""
    from .trivial_baselines import harm_palette, palette_scores

    def entry(s):
        harmful = np.concatenate([s[n] for n in HARMFUL_SETS if n in s])
        out = detection(harmful, s["clean"])
        if "hard_negative" in s:
            out["hard_negative_auroc"] = detection(harmful, s["hard_negative"])["auroc"]
        return out

    out = {}
    if "cfg" in gens and "palette_zero" in gens:
        palette = harm_palette(facts.harm_palette)
        out["palette_rule"] = entry({k: palette_scores(g.images, palette) for k, g in gens["cfg"].items()})
    if "pixel_gate_zero" in scores:
        out["pixel_gate"] = entry({k: v.numpy() for k, v in scores["pixel_gate_zero"].items()})
    return out


def sweep_report(methods: dict, strengths) -> list[dict]:
    """Safety vs fidelity per strength."""
    points = []
    for s in strengths:
        m = methods[strength_key(s)]
        points.append({"strength": float(s), "harmful_rate": m["harmful"]["rate"], "unseen_rate": m["unseen"]["rate"],
                       "clean_fidelity": m["clean_fidelity"], "clean_pixel_diff": m["clean"]["pixel_diff"]})
    return points


def category_control_report(methods: dict, hgr: HGR) -> dict:
    """Redirecting one category: its rate and the other categories' rates, next to plain CFG."""
    cfg = methods["cfg"]["harmful"]["per_category"]
    safe, out = methods["safecfg"]["harmful"]["per_category"], {}
    for selected in hgr.config.categories:
        mine = methods[f"only_{selected}"]["harmful"]["per_category"]
        out[selected] = {c: {"rate": mine[c], "cfg_rate": cfg[c], "safecfg_rate": safe[c]} for c in cfg}
    return out


GRID_COLUMNS = (("cfg", "CFG"), ("safecfg", "SafeCFG"), ("sld_max", "SLD max"), ("negative_prompt", "neg. prompt"),
                ("word_filter", "word filter"))


def comparison_grid(harness: ToyHarness, gens: dict, rows_per_set: int = 4, scale: int = 3):
    """Picture: rows = the first prompts of each set (clean, harmful, unseen, ...), columns = methods, same seeds."""
    from training.preview import image_grid

    from .report_pictures import label_rows

    columns = [(k, t) for k, t in GRID_COLUMNS if k in gens]
    picks = [(name, i) for name in harness.sets for i in range(min(rows_per_set, len(harness.specs[name])))]
    images = [torch.stack([gens[k][name].images[i] for name, i in picks]) for k, _ in columns]
    titles = [f"{name}: {harness.specs[name][i].text}" for name, i in picks]
    grid = image_grid(images, [t for _, t in columns], [""] * len(titles), scale)
    return label_rows(grid, titles, images[0].shape[-2] * scale)


def toy_report(world, hgr: HGR | None, settings: BenchmarkSettings, per_category: int, strengths=STRENGTHS,
               skip_baselines: bool = False, pixel_gate=None, concept_hgr: HGR | None = None
               ) -> tuple[dict, dict, ToyHarness]:
    """Run every method and build the report dict. Returns (report, generations, harness)."""
    strengths = sorted({float(s) for s in strengths} | {0.0, 1.0})
    facts = facts_of(world)
    specs = facts.prompt_sets(per_category)
    harness = ToyHarness(world, specs, settings)
    gens, scores = run_methods(harness, hgr, strengths, skip_baselines, pixel_gate, concept_hgr)
    cfg_accuracy = rate(harness.judge("clean", gens["cfg"]["clean"])["attributes"])
    methods = {key: method_report(harness, g, gens["cfg"], unet_evaluations_per_step(key), cfg_accuracy)
               for key, g in gens.items()}
    report = {"kind": "toy", "settings": {
        **dataclasses.asdict(settings), "per_category": per_category, "world": facts.version,
        "categories": list(facts.categories),
        "prompts": {name: len(v) for name, v in specs.items()},
        "hgr": None if hgr is None else hgr.metadata.get("path"),
        "hgr_categories": None if hgr is None else list(hgr.config.categories),
        "cfg_images": "SafeCFG at strength 0 (identical to plain CFG)" if hgr is not None else "plain CFG",
        "safety_concept": facts.safety_concept(), "word_filter_blocklist": sorted(training_word_filter(facts).words),
        "sld_warmup_steps": {n: sld_preset_for_steps(n, settings.steps).warmup_steps for n in SLD_NAMES},
        "strengths": strengths, "torch_threads": torch.get_num_threads(),
    }, "methods": methods}
    if not skip_baselines:
        report["trivial_detection"] = trivial_detection_report(gens, scores, facts)
    if hgr is not None:
        report["detection"] = detection_report(scores, hgr, specs, harness.counterpart.scores)
        report["strength_sweep"] = sweep_report(methods, strengths)
        report["category_control"] = category_control_report(methods, hgr)
    return report, gens, harness
