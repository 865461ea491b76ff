"""The derived models of toy world v2 and their retrained HGRs (`python -m benchmarks.transfer --build`).

Made with the world's own training code (`toyworld.train`), from the shipped v2 weights, the kinds
of models users run instead of a base:

| name | what it is | how users load it |
|---|---|---|
| ``style_finetune`` | the UNet fine-tuned on the ``dusk`` style (text encoder kept, as most fine-tunes do) | a checkpoint |
| ``merge`` | base and ``style_finetune`` half and half | ComfyUI's ``ModelMergeSimple`` |
| ``lora`` | the base with a rank-8 LoRA trained on the ``spotlight`` style | ComfyUI's ``LoraLoaderModelOnly`` |
| ``harm_finetune`` | the UNet fine-tuned on a violence-heavy scene mix (learned one harm more strongly) | a checkpoint |

Each gets a weights folder (``models/NAME``: its UNet, the base's text encoder, codec and judge),
which `load_world` loads and `train_hgr --toy --toy-weights` trains on; the merge's and the LoRA's
folders hold the merged UNet (the evaluation itself samples them through ComfyUI's nodes). Then
each gets an HGR trained with exactly the recipe of the base's test HGR
(`training.recipes.train_toy_hgr`, as `scripts/make_test_hgr.py --world v2` runs it: the demo recipe
plus one on-policy round). Everything is cached in the build folder; a stage whose output exists
under the same recipe and base is skipped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hgr_core import atomic_write_json, file_sha256
from hgr_core.files import stale_cache_keys

log = logging.getLogger(__name__)

DERIVED = ("style_finetune", "merge", "lora", "harm_finetune")
SHARED_FILES = ("text_encoder.safetensors", "latent.safetensors", "judge.safetensors")
LORA_FILE = "spotlight_lora.safetensors"


@dataclass(frozen=True)
class BuildRecipe:
    """How the derived models and their HGRs are made (fixed before any evaluation; none tuned on it)."""

    scenes: int = 6000  # training scenes per derived model
    finetune_steps: int = 500  # batch 32, ~0.5 s each on one core: about 4 minutes
    finetune_lr: float = 5e-4  # a quarter of the base's peak: a fine-tune, not a retraining
    lora_rank: int = 8
    lora_steps: int = 500
    lora_lr: float = 2e-3
    merge_ratio: float = 0.5
    seed: int = 0
    hgr_rounds: int = 2  # the base test HGR's recipe: demo recipe + one on-policy round
    hgr_prompts: tuple[int, int] = (400, 200)  # harmful, clean training prompts (make_test_hgr's)
    hgr_args: tuple[str, ...] = ()  # extra train_hgr flags after the recipe (tests shrink it)


@dataclass(frozen=True)
class BuildFolder:
    """Where a build keeps its files."""

    root: Path

    def model_dir(self, name: str) -> Path:
        return self.root / "models" / name

    def hgr(self, name: str) -> Path:
        return self.root / "hgr" / f"{name}.safetensors"

    @property
    def lora(self) -> Path:
        return self.root / "loras" / LORA_FILE

    @property
    def record(self) -> Path:
        return self.root / "build.json"


def read_record(folder: BuildFolder) -> dict:
    """The build's record (recipe, base, timings, the judge's accuracy on each style); {} if absent."""
    return json.loads(folder.record.read_text()) if folder.record.is_file() else {}


def build(base_dir: Path, out: Path, recipe: BuildRecipe | None = None, names=DERIVED) -> dict:
    """Make every derived model in `names` and its HGR (cached); returns the build record."""
    recipe, folder = recipe or BuildRecipe(), BuildFolder(Path(out))
    key = {"recipe": dataclasses.asdict(recipe), "base_unet_sha256": file_sha256(base_dir / "unet.safetensors")}
    record = read_record(folder)
    if stale_cache_keys(record, key):
        if folder.root.exists() and record:
            log.info("recipe or base changed since the cached build: rebuilding everything")
            shutil.rmtree(folder.root)
        record = {**key, "seconds": {}}
    folder.root.mkdir(parents=True, exist_ok=True)
    record.setdefault("judge_on_styles", judge_on_styles(base_dir, recipe.seed))
    for name in names:
        if name not in DERIVED:
            raise ValueError(f"--models: unknown derived model {name!r}; choose from {list(DERIVED)}")
        _timed(record, name, folder.model_dir(name) / "unet.safetensors",
               lambda n=name: make_model(n, base_dir, folder, recipe))
        _timed(record, f"hgr_{name}", folder.hgr(name), lambda n=name: train_hgr(folder.model_dir(n), folder.hgr(n),
                                                                                  folder.root / "work" / n, recipe))
        atomic_write_json(folder.record, record)
    return record


def _timed(record: dict, stage: str, output: Path, make) -> None:
    if output.is_file():
        log.info("%s: cached (%s)", stage, output.name)
        return
    start = time.monotonic()
    make()
    record["seconds"][stage] = round(time.monotonic() - start, 1)
    log.info("%s: %.0f s", stage, record["seconds"][stage])


# --- the derived models -------------------------------------------------------------------------

def make_model(name: str, base_dir: Path, folder: BuildFolder, recipe: BuildRecipe) -> None:
    """Train (or merge) derived model `name` and write its weights folder."""
    from toyworld.unet import load_unet

    from toyworld.v2.styles import HARM_HEAVY_MIX

    if name == "style_finetune":
        unet = finetune(base_dir, training_data(base_dir, recipe, style="dusk"), recipe)
    elif name == "harm_finetune":
        unet = finetune(base_dir, training_data(base_dir, recipe, mix=HARM_HEAVY_MIX), recipe)
    elif name == "merge":
        style = folder.model_dir("style_finetune") / "unet.safetensors"
        if not style.is_file():
            make_model("style_finetune", base_dir, folder, recipe)
        unet = merged_unet(load_unet(base_dir / "unet.safetensors"), load_unet(style), recipe.merge_ratio)
    else:
        unet = lora_unet(base_dir, folder, recipe)
    write_model_folder(folder.model_dir(name), base_dir, unet, {"derived": name, "recipe": dataclasses.asdict(recipe)})


def training_data(base_dir: Path, recipe: BuildRecipe, style: str | None = None, mix: dict | None = None) -> tuple:
    """(scenes, model-space latents) of a derived model's training set, rendered in `style` from `mix`."""
    from toyworld.latent import PatchPCA
    from toyworld.v2.scenes import render_batch, scene_pool
    from toyworld.v2.styles import render_styled

    scenes = scene_pool(recipe.scenes, recipe.seed + 100, mix=mix)
    images = render_styled(scenes, style) if style else render_batch(scenes)
    return scenes, PatchPCA.load(base_dir / "latent.safetensors").encode(torch.from_numpy(images))


def _config(recipe: BuildRecipe, steps: int, lr: float):
    from toyworld.train import DiffusionTrainConfig

    # EMA 0.99: the base's 0.998 would still be half the base after a 500-step fine-tune.
    return DiffusionTrainConfig(steps=steps, lr=lr, warmup=max(1, min(50, steps // 5)), ema_decay=0.99,
                                seed=recipe.seed)


def finetune(base_dir: Path, data: tuple, recipe: BuildRecipe) -> torch.nn.Module:
    """The base UNet fine-tuned on `data` with the base's text encoder frozen; returns the EMA UNet."""
    from toyworld.text import load_text_encoder
    from toyworld.train import train_diffusion
    from toyworld.unet import load_unet
    from toyworld.v2.captions import training_caption

    scenes, latents = data
    model = load_unet(base_dir / "unet.safetensors")
    ema_unet, _ = train_diffusion(model, load_text_encoder(base_dir / "text_encoder.safetensors"), latents, scenes,
                                  _config(recipe, recipe.finetune_steps, recipe.finetune_lr),
                                  caption=training_caption, freeze_text=True)
    return ema_unet


def merged_unet(model1, model2, ratio: float) -> torch.nn.Module:
    """``ratio * w1 + (1 - ratio) * w2`` for every UNet weight: ModelMergeSimple's arithmetic."""
    theirs = model2.diffusion_model.state_dict()
    unet = model1.diffusion_model
    unet.load_state_dict({k: ratio * v + (1 - ratio) * theirs[k] for k, v in unet.state_dict().items()})
    return unet


def lora_unet(base_dir: Path, folder: BuildFolder, recipe: BuildRecipe) -> torch.nn.Module:
    """Train the spotlight LoRA on the base (saved for LoraLoaderModelOnly); returns the base UNet with it merged in."""
    from toyworld.text import load_text_encoder
    from toyworld.train import train_lora
    from toyworld.unet import load_unet
    from toyworld.v2.captions import training_caption
    from training.lora import LoRA, save_lora

    scenes, latents = training_data(base_dir, recipe, style="spotlight")
    model = load_unet(base_dir / "unet.safetensors")
    lora = LoRA.for_unet(model.diffusion_model, recipe.lora_rank, float(recipe.lora_rank), recipe.seed)
    train_lora(model, load_text_encoder(base_dir / "text_encoder.safetensors"), lora, latents, scenes,
               _config(recipe, recipe.lora_steps, recipe.lora_lr), caption=training_caption)
    folder.lora.parent.mkdir(parents=True, exist_ok=True)
    save_lora(lora, folder.lora, {"style": "spotlight", "recipe": dataclasses.asdict(recipe)})
    state = model.diffusion_model.state_dict()
    with torch.no_grad():
        for path in lora.paths:
            state[f"{path}.weight"] += lora.delta(path)
    model.diffusion_model.load_state_dict(state)
    return model.diffusion_model


def write_model_folder(out: Path, base_dir: Path, unet: torch.nn.Module, summary: dict) -> None:
    """A loadable world folder: the derived UNet beside the base's text encoder, codec and judge."""
    from toyworld.unet import save_unet

    out.mkdir(parents=True, exist_ok=True)
    for name in SHARED_FILES:
        shutil.copyfile(base_dir / name, out / name)
    atomic_write_json(out / "report.json", {"world": "toyworld-v2", **summary})
    save_unet(unet, out / "unet.safetensors", summary)  # last: its presence marks the folder complete


def train_hgr(model_dir: Path, output: Path, work: Path, recipe: BuildRecipe) -> None:
    """An HGR for the model in `model_dir` with the base test HGR's recipe (`scripts/make_test_hgr.py --world v2`)."""
    from training.recipes import train_toy_hgr

    train_toy_hgr("v2", output, work, rounds=recipe.hgr_rounds, toy_weights=model_dir, prompts=recipe.hgr_prompts,
                  extra=recipe.hgr_args)


# --- does the yardstick hold on the styles? ------------------------------------------------------

def judge_on_styles(base_dir: Path, seed: int, n: int = 600) -> dict:
    """The judge's accuracy (per head, harm = every flag right) on round-tripped ground-truth renders of
    held-out mixed scenes, plain and in each style: the derived models draw in these styles."""
    from toyworld.judge import judge_accuracy, load_judge
    from toyworld.latent import PatchPCA
    from toyworld.v2.scenes import labels, render_batch, scene_pool
    from toyworld.v2.styles import STYLES, render_styled

    judge, codec = load_judge(base_dir / "judge.safetensors"), PatchPCA.load(base_dir / "latent.safetensors")
    scenes = scene_pool(n, seed + 200)
    truth = {k: torch.from_numpy(v) for k, v in labels(scenes).items()}
    out = {}
    for style in ("plain", *STYLES):
        images = torch.from_numpy(render_batch(scenes) if style == "plain" else render_styled(scenes, style))
        with torch.no_grad():
            out[style] = {k: round(v, 4) for k, v in judge_accuracy(judge, codec.round_trip(images), truth).items()}
    log.info("judge on round-tripped renders per style: %s", out)
    return out
