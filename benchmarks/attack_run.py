"""Every defence against every attack on one split (`benchmarks.attacks` runs dev, then test).

Defences, one attack budget (the same strength grid) for all: plain CFG, SafeCFG, the negative
prompt and the four SLD presets with the world's per-category concept texts (as in the toy
benchmark), and the word filter (the toy benchmark's blocklist: every seen phrasing and concept
word). The filter reads every text a request encodes: the clean prompt and, for
ConditioningAverage, the carrier prompt, for the token search, the suffix; a blocked request gets a black image (safe; a fidelity
failure on a clean prompt), otherwise CFG's image.

Attack success = the judge sees, in the attacked image, the harm the attack aimed at (one
category per prompt, in turn). Noise seeds: the split's, in a slot (`ATTACK_SLOT`) no sweep
condition uses, so the test split's images are fresh.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hgr_core import HGR, SLDPreset, scale_warmup, sld_preset_for_steps
from safecfg_comfy.lora import apply_lora
from safecfg_comfy.patch import patch_model
from safecfg_comfy.sld_patch import apply_sld
from toyworld.facts import facts_of

from .attack_concept import attack_categories, build_attacks, dev_harmful
from .attack_search import KIND as SEARCH_KIND
from .attack_search import SuffixAttack, search_suffixes, suffix_attack
from .safety_metrics import SLD_NAMES, rate, unet_evaluations_per_step
from .safety_sweep import Vocabulary, count, judge
from .sweep_design import SEED_STRIDE, Split, default_source, draw, text_bucket
from .safety_toy import safety_concept, training_word_filter

log = logging.getLogger(__name__)

ATTACK_SLOT = 16  # noise seeds: split.noise_base + 16 * SEED_STRIDE + i (sweep conditions use slots 0-8)
SEARCH_SLOT = 17  # the token search's own dev noise seeds
SAMPLED = ("cfg", "safecfg", "negative_prompt", *(f"sld_{n}" for n in SLD_NAMES))
LORA_DEFENCES = ("safety_lora", "safety_lora_safecfg")  # with --lora: the LoRA alone (plain CFG), and under SafeCFG
SLD_TUNED = "sld_tuned"  # with --sld-front: one SLD setting tuned on dev (`sld_grid_report.tuned_point`)
DEFENCES = (*SAMPLED, "word_filter")
CLEAN = "clean"  # the unattacked row (strength 0): false harms and fidelity


@dataclass(frozen=True)
class ExtraDefences:
    """Defences a run adds when their inputs exist: `lora`, a safety LoRA file (`training.finetune_safe`),
    judged alone and under SafeCFG; `sld_tuned`, an SLD grid's dev-tuned point (`sld_grid_report.tuned_point`)."""

    lora: Path | None = None
    sld_tuned: dict | None = None

    def names(self) -> tuple[str, ...]:
        return (*((SLD_TUNED,) if self.sld_tuned else ()), *(LORA_DEFENCES if self.lora is not None else ()))

    def record(self) -> dict:
        """What the report says about them."""
        return {"safety_lora": None if self.lora is None else Path(self.lora).name, "sld_tuned": self.sld_tuned}


def evaluations_per_image(defence: str, steps: int) -> int:
    """UNet evaluations one image costs (SafeCFG adds only the HGR's tiny forward pass per step; SLD a third)."""
    return steps * unet_evaluations_per_step(defence)


def clean_prompts(source, split: Split, categories, per_category: int) -> list:
    """The split's clean prompts (test scenes, the split's bucket; test leaves out the benchmark's sets)."""
    def keep(text):
        return text_bucket(text) == split.bucket and (split.name != "test" or text not in source.used)

    return draw(source.clean, {(): per_category * len(categories)}, split.prompt_seeds["clean"] + 101, keep)


def defence_models(world, hgr: HGR, settings, extra: ExtraDefences | None = None) -> dict:
    """Sampled defence -> (model, negative prompt text) (settings: benchmarks.attacks.AttackSettings);
    `extra` adds its defences: the tuned SLD point (warm-up scaled to the run's steps) and the safety
    LoRA's `LORA_DEFENCES`, loaded as ComfyUI's LoraLoaderModelOnly loads it."""
    concept, base, extra = safety_concept(world), world.model, extra or ExtraDefences()
    safecfg = (patch_model(base, hgr, passes=settings.passes), "")
    models = {"cfg": (base, ""), "safecfg": safecfg, "negative_prompt": (base, concept)}
    for name in SLD_NAMES:
        preset = sld_preset_for_steps(name, settings.steps)
        models[f"sld_{name}"] = (apply_sld(base, world.conditioning([concept]), preset), "")
    if extra.sld_tuned:
        preset = scale_warmup(SLDPreset(**extra.sld_tuned["preset"]), settings.steps)
        models[SLD_TUNED] = (apply_sld(base, world.conditioning([concept]), preset), "")
    if extra.lora is not None:
        with_lora = apply_lora(base, extra.lora)
        lora_safecfg = patch_model(with_lora, hgr, passes=settings.passes)
        models.update({"safety_lora": (with_lora, ""), "safety_lora_safecfg": (lora_safecfg, "")})
    return models


def sample_embeddings(world, model, negative: str, embeddings: torch.Tensor, seeds: list[int],
                      settings) -> torch.Tensor:
    """Images (N, 3, H, W) of the embeddings, batch by batch."""
    images, uncond = [], world.encode_text([negative])
    for first in range(0, len(embeddings), settings.batch):
        chunk = embeddings[first:first + settings.batch]
        with torch.no_grad():
            latents = world.sample_embeddings(model, chunk, uncond.expand(len(chunk), -1, -1),
                                              seeds[first:first + len(chunk)], settings.cfg, settings.steps,
                                              settings.sampler, settings.scheduler)
        images.append(world.decode(latents))
    return torch.cat(images)


def attacked_sets(world, attacks: dict, specs: list) -> dict:
    """(kind, strength) -> attacked embeddings; (CLEAN, 0.0) -> the clean prompts' own."""
    texts = [s.text for s in specs]
    clean = world.encode_text(texts)
    sets = {(CLEAN, 0.0): clean}
    for kind, attack in attacks.items():
        for strength in attack.strengths:
            sets[(kind, strength)] = (world.encode_text(attack.texts(texts, strength)) if isinstance(attack, SuffixAttack)
                                      else attack.embeddings(clean, strength))
    return sets


def search_on_dev(world, hgr: HGR, dev: Split, per_category: int, settings, budget) -> dict:
    """The token search's suffix per category (`attack_search`): dev clean and harmful prompts, its own
    dev noise seeds."""
    source, categories = default_source(world), attacked_categories(world, hgr)
    texts = [s.text for s in clean_prompts(source, dev, categories, per_category)]
    first = dev.noise_base + SEARCH_SLOT * SEED_STRIDE
    return search_suffixes(world, facts_of(world), dev_harmful(source, dev, categories, per_category), texts,
                           list(range(first, first + len(texts))), categories, settings, budget)


def attacked_categories(world, hgr: HGR) -> list[str]:
    """The world's harm categories the HGR was trained for, in the world's order (what the attacks aim at)."""
    return Vocabulary.of(world).redirected_by(hgr)


def filter_blocks(world, specs: list, attacks: dict) -> dict:
    """(kind or CLEAN) -> (N,) bool: the word filter refuses the request."""
    word_filter = training_word_filter(facts_of(world))
    texts = [s.text for s in specs]
    out = {CLEAN: word_filter.blocked(texts).numpy()}
    for kind, attack in attacks.items():
        out[kind] = np.array([word_filter.blocks(t) or any(word_filter.blocks(x) for x in extra)
                              for t, extra in zip(texts, attack.extra_texts)])
    return out


def sets_to_sample(keys: list, defence: str, chosen: dict | None, riders=(), clean_rows: bool = True) -> list:
    """The sets `defence` samples: every one for CFG (its per-set row tells which attacks work at all) and
    wherever `chosen` is None (dev, or --every-set); otherwise its dev-chosen set and those of its `riders`
    (gates judged on its outputs). The clean rows unless `clean_rows` is False (dev: they choose nothing)."""
    if chosen is None or defence == "cfg":
        out = list(keys)
    else:
        wanted = {chosen[d] for d in (defence, *riders) if d in chosen}
        out = [k for k in keys if split_key(k).startswith(CLEAN) or split_key(k) in wanted]
    return out if clean_rows else [k for k in out if not split_key(k).startswith(CLEAN)]


@dataclass(frozen=True)
class Halving:
    """How the dev split spends its sampling on every defence but CFG (successive halving): every set on the
    first `head` of the prompts, then only the `finalists` sets with the highest ASR there on the rest; the
    attacker chooses among the finalists (`attack_report.choose`: the sets judged on the most prompts). CFG
    samples every set on every prompt (the word filter's choice is made on CFG's images)."""

    head: float = 1 / 3
    finalists: int = 3


def run_split(world, hgr: HGR, split: Split, per_category: int, settings, dev: Split, found: dict | None = None,
              keep_images: bool = False, extra: ExtraDefences | None = None, chosen: dict | None = None,
              halving: Halving | None = None) -> tuple[dict, dict]:
    """Every defence on the attacked sets of the split; `found`: `search_on_dev`'s suffixes (None: no token
    search); `extra`: the defences the run adds (`ExtraDefences`); `chosen`: defence -> its dev-chosen set
    (`attack_report.choose`), which limits what it samples (`sets_to_sample`; None: every set); `halving`
    (dev): successive halving over the attacked sets, no clean rows. Returns (the split's report,
    images[defence][set])."""
    vocab, source, categories = Vocabulary.of(world), default_source(world), attacked_categories(world, hgr)
    specs = clean_prompts(source, split, categories, per_category)
    attacks = build_attacks(world, specs, dev_harmful(source, dev, categories, per_category), categories)
    if found:
        attacks[SEARCH_KIND] = suffix_attack({c: f["words"] for c, f in found.items()},
                                             attack_categories(specs, categories))
    sets = attacked_sets(world, attacks, specs)
    first = split.noise_base + ATTACK_SLOT * SEED_STRIDE
    batch = _Batch(specs, list(range(first, first + len(specs))),
                   np.array([vocab.categories.index(c) for c in attack_categories(specs, categories)]), sets)
    flags, correct, images, seconds = {}, {}, {}, {}
    for defence, (model, negative) in defence_models(world, hgr, settings, extra).items():
        start = time.monotonic()
        keys = sets_to_sample(list(sets), defence, chosen, clean_rows=halving is None)
        judged = (batch.halved(world, model, negative, keys, settings, halving) if halving and defence != "cfg" else
                  batch.judge(world, model, negative, keys, np.arange(len(specs)), settings))  # CFG: every set in
        # full, also for the word filter, which judges CFG's images
        flags[defence] = {key: harm for key, (harm, _, _) in judged.items()}
        images[defence] = {key: pictures for key, (_, _, pictures) in judged.items()} if keep_images else {}
        if (CLEAN, 0.0) in judged:
            correct[defence] = judged[(CLEAN, 0.0)][1]
        seconds[defence] = round(time.monotonic() - start, 1)
        log.info("%s %s: %.0f s", split.name, defence, seconds[defence])
    blocked = filter_blocks(world, specs, attacks)
    flags["word_filter"] = {key: cfg_flags & ~blocked[key[0]] for key, cfg_flags in flags["cfg"].items()}
    if "cfg" in correct:
        correct["word_filter"] = correct["cfg"] & ~blocked[CLEAN]
    report = {"split": split.name, "prompts": len(specs), "seeds": [batch.seeds[0], batch.seeds[-1]],
              "attacked_with": categories, "carriers": sorted({t for x in attacks["conditioning_average"].extra_texts
                                                               for t in x})[:6],
              "asr": {d: {split_key(k): count(f) for k, f in per.items()} for d, per in flags.items()},
              "clean_attribute_accuracy": {d: rate(c) for d, c in correct.items()}, "seconds": seconds,
              "examples": [s.text for s in specs[:8]]}
    if halving:
        report["halving"] = {"head_prompts": batch.head(halving), "finalists": halving.finalists}
    if found:
        attack = attacks[SEARCH_KIND]
        report["search_examples"] = attack.texts(report["examples"], attack.strengths[-1])
    return report, images


@dataclass
class _Batch:
    """A split's prompts, noise seeds, target categories and attacked sets, judged per defence."""

    specs: list
    seeds: list
    targets: np.ndarray
    sets: dict

    def judge(self, world, model, negative: str, keys: list, index: np.ndarray, settings) -> dict:
        """key -> (harm flags, attribute-correct flags, images) of the prompts `index` under each set in `keys`,
        all sets in one run of batches (fewer, fuller calls)."""
        if not len(keys) or not len(index):
            return {key: (np.zeros(0, bool), np.zeros(0, bool), None) for key in keys}
        vocab, n = Vocabulary.of(world), len(index)
        specs, chosen = [self.specs[i] for i in index], torch.as_tensor(index)
        stacked = torch.cat([self.sets[key][chosen] for key in keys])
        sampled = sample_embeddings(world, model, negative, stacked, [self.seeds[i] for i in index] * len(keys),
                                    settings)
        out = {}
        for i, key in enumerate(keys):
            pictures = sampled[i * n:(i + 1) * n]
            judged = judge(world, vocab, specs, pictures)
            out[key] = (judged["harm"][np.arange(n), self.targets[index]], judged["attributes"], pictures)
        return out

    def head(self, halving: Halving) -> int:
        return max(1, round(len(self.specs) * halving.head))

    def halved(self, world, model, negative: str, keys: list, settings, halving: Halving) -> dict:
        """`judge` with successive halving: every key on the first `head` prompts, the finalists on all."""
        head, prompts = self.head(halving), np.arange(len(self.specs))
        first = self.judge(world, model, negative, keys, prompts[:head], settings)
        ranked = sorted(keys, key=lambda k: (-first[k][0].mean(), keys.index(k)))
        rest = self.judge(world, model, negative, ranked[:halving.finalists], prompts[head:], settings)
        return {k: tuple(_join(a, b) for a, b in zip(first[k], rest[k])) if k in rest else first[k] for k in keys}


def _join(a, b):
    if b is None or a is None:
        return a if b is None else b
    return torch.cat([a, b]) if isinstance(a, torch.Tensor) else np.concatenate([a, b])


def split_key(key) -> str:
    kind, strength = key
    return kind if kind == CLEAN else f"{kind}@{strength:g}"
