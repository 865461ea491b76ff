"""The assembled toy world: text encoder, ComfyUI model, latent codec and judge behind one object.

Latent spaces: ``World.sample``, ``World.decode`` and ``World.encode_images`` all speak the
*ComfyUI* latent space, the one ``comfy.sample.sample`` takes and returns. The UNet itself works
in model space = ComfyUI space * 0.18215 (SD15's stock ``latent_format.process_in``), as with a
real SD checkpoint. Hooks inside sampling (pre-CFG, cfg, post-CFG) see model-space tensors.

Callers must have run ``safecfg_comfy.locate.setup_comfyui()`` first (``toyworld.load_world`` does).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import comfy.sample
import torch

from .files import DEFAULT_WEIGHTS_DIR
from .judge import V1_ATTRIBUTES, JudgeNet, JudgeResult, load_judge
from .latent import LATENT_CHANNELS, PatchPCA
from .render import CATEGORIES
from .text import TextEncoder, load_text_encoder
from .unet import load_unet, patcher

log = logging.getLogger(__name__)

FILES = {"unet": "unet.safetensors", "text": "text_encoder.safetensors", "latent": "latent.safetensors",
         "judge": "judge.safetensors", "report": "report.json"}


class World:
    """Everything needed to generate and judge toy-world images through ComfyUI."""

    latent_shape = (LATENT_CHANNELS, 8, 8)
    latent_factor = 4  # image pixels per latent pixel, each way

    def __init__(self, model, text_encoder: TextEncoder, codec: PatchPCA, judge_net: JudgeNet, device="cpu",
                 weights_dir: Path | None = None):
        self.device = torch.device(device)
        self.weights_dir = weights_dir  # where the weights came from; None if built in memory
        self.model = model  # comfy.model_patcher.ModelPatcher
        self.text_encoder = text_encoder.to(self.device).eval()
        self.codec = codec
        self.judge_net = judge_net.to(self.device).eval()
        self.latent_format = model.get_model_object("latent_format")
        # What the judge's heads mean (from its file; v1's for judges built in memory).
        self.categories = tuple(getattr(judge_net, "categories", CATEGORIES))
        self.attributes = dict(getattr(judge_net, "attributes", V1_ATTRIBUTES))
        self.version = self.report().get("world", "toyworld-v1")  # v2 builds write "toyworld-v2"

    @property
    def hgr_base_model(self) -> str:
        """The `base_model` an HGR trained on this world records ("toyworld" for v1, else the version)."""
        return "toyworld" if self.version == "toyworld-v1" else self.version

    def check_hgr_trained_here(self, base_model: str | None, file_name: str) -> None:
        """Refuse an HGR trained on another toy world: its redirections would be measured on scenes it
        never saw (v1 and v2 share the latent format, so ComfyUI's compatibility check passes)."""
        if base_model and base_model.startswith("toyworld") and base_model != self.hgr_base_model:
            fix = {"toyworld-v2": "drop --toy-weights (toy world v2 is the default)",
                   "toyworld": "pass --toy-weights toyworld/weights (toy world v1)"}.get(
                base_model, "pass --toy-weights with that world's weights folder")
            raise ValueError(f"{file_name} was trained on toy world {base_model!r} but this run uses "
                             f"{self.hgr_base_model!r}; {fix} (or use an HGR trained on this world)")

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> (B, tokens, context_dim) float32; "" is the unconditional embedding."""
        return self.text_encoder.encode(list(prompts)).float()

    def conditioning(self, prompts: list[str]) -> list:
        """ComfyUI conditioning ``[[tensor(B, T, D), {}]]`` for a batch of prompts."""
        return [[self.encode_text(prompts), {}]]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """ComfyUI-space latents (B, 4, 8, 8) -> images (B, 3, 32, 32) in [0, 1]."""
        return self.codec.decode(self.latent_format.process_in(latents.float().cpu()))

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, 32, 32) in [0, 1] -> ComfyUI-space latents (B, 4, 8, 8)."""
        return self.latent_format.process_out(self.codec.encode(images.float().cpu()))

    def judge(self, images: torch.Tensor) -> JudgeResult:
        """What each image shows: harm flags per category, shape, colour, background."""
        return self.judge_net.judge(images.to(self.device))

    def sample(self, model, prompts, negative_prompts=None, seeds=None, cfg: float = 5.0, steps: int = 20,
               sampler_name: str = "euler", scheduler: str = "normal") -> torch.Tensor:
        """Sample a batch with ComfyUI's ``comfy.sample.sample``; returns ComfyUI-space latents.

        model: ``self.model`` or a patched clone of it. negative_prompts: None (all ""), one string,
        or one per prompt. seeds: one per prompt (default 0..B-1); each image's noise is what
        ComfyUI draws for a batch of one with that seed, so a batch reproduces single runs.
        """
        prompts = list(prompts)
        n = len(prompts)
        if negative_prompts is None or isinstance(negative_prompts, str):
            negative_prompts = [negative_prompts or ""] * n
        if len(negative_prompts) != n:
            raise ValueError(f"{n} prompts need as many negatives, got {len(negative_prompts)}")
        return self.sample_embeddings(model, self.encode_text(prompts), self.encode_text(negative_prompts), seeds,
                                      cfg, steps, sampler_name, scheduler)

    def sample_embeddings(self, model, positive: torch.Tensor, negative: torch.Tensor, seeds=None, cfg: float = 5.0,
                          steps: int = 20, sampler_name: str = "euler", scheduler: str = "normal") -> torch.Tensor:
        """`sample` from text embeddings (B, tokens, context_dim) instead of prompts: what a graph's
        conditioning nodes (ConditioningAverage, ...) hand KSampler. Returns ComfyUI-space latents."""
        n = len(positive)
        seeds = list(range(n)) if seeds is None else [int(s) for s in seeds]
        if len(negative) != n or len(seeds) != n:
            raise ValueError(f"{n} prompts need as many negatives and seeds, got {len(negative)} negatives and "
                             f"{len(seeds)} seeds")
        empty = torch.zeros(1, *self.latent_shape)
        noise = torch.cat([comfy.sample.prepare_noise(empty, s) for s in seeds])
        return comfy.sample.sample(
            model, noise, steps, cfg, sampler_name, scheduler, [[positive, {}]], [[negative, {}]],
            torch.zeros(n, *self.latent_shape), seed=seeds[0], disable_pbar=True,
        )

    def report(self) -> dict:
        """The build's quality report (report.json next to the weights), {} if absent."""
        path = self.weights_dir / FILES["report"] if self.weights_dir else None
        return json.loads(path.read_text()) if path and path.is_file() else {}


def load_world(device: str | torch.device = "cpu", weights_dir: str | os.PathLike | None = None) -> World:
    """Load the default world, v2 (or the build in ``weights_dir``; ``files.V1_WEIGHTS_DIR`` is v1)."""
    folder = Path(weights_dir) if weights_dir is not None else DEFAULT_WEIGHTS_DIR
    missing = [name for key, name in FILES.items() if key != "report" and not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"toy-world weights {missing} missing in {folder}; "
                                "build them with `python -m toyworld.build` (`--world v1` for v1)")
    model = load_unet(folder / FILES["unet"]).to(device)
    world = World(patcher(model, device), load_text_encoder(folder / FILES["text"]),
                  PatchPCA.load(folder / FILES["latent"]), load_judge(folder / FILES["judge"]), device, folder)
    log.info("loaded toy world from %s", folder)
    return world
