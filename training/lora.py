"""A LoRA on the attention projections of an SD1.x-style UNet, saved in the key format ComfyUI's
stock `LoraLoader` / `LoraLoaderModelOnly` read (plain PyTorch: no ComfyUI import here).

Targets: every `to_q`, `to_k`, `to_v`, `to_out.0` linear of the transformer blocks' self- and
cross-attention (`attn1`, `attn2`). For a linear with weight W (out x in) the adapted layer is

    y = W x + b + (alpha / rank) * up @ (down @ x)          down: (rank, in), up: (out, rank)

(Hu et al. 2021, https://arxiv.org/abs/2106.09685). `up` starts at zero, so a fresh LoRA is the
base model exactly. During training the update runs as a forward hook beside the frozen weight
(the UNet is never modified); ComfyUI merges it into W when it loads the file, so inference
costs exactly the base model.

File keys, for module path `p` inside the UNet (ComfyUI's `diffusion_model.p.weight`):
`lora_unet_<p with "." -> "_">.lora_down.weight`, `.lora_up.weight`, `.alpha` (a 0-d tensor),
the format `comfy.lora.model_lora_keys_unet` maps to `diffusion_model.p.weight`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from hgr_core import atomic_write

FORMAT = "safecfg-safety-lora"
ATTENTION_LINEAR = re.compile(r"transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$")


def attention_linears(unet: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """{module path: linear} of the attention projections a safety LoRA adapts, in module order."""
    found = {name: m for name, m in unet.named_modules()
             if ATTENTION_LINEAR.search(name) and isinstance(m, torch.nn.Linear)}
    if not found:
        raise ValueError("no attention projections (transformer_blocks.*.attn1/attn2.to_q/to_k/to_v/to_out.0) "
                         "in this UNet; the safety LoRA supports SD1.x/SD2.x-style UNets")
    return found


def comfy_key(module_path: str) -> str:
    """ComfyUI's LoRA name of a UNet module: `lora_unet_` + the path with dots as underscores."""
    return "lora_unet_" + module_path.replace(".", "_")


class LoRA(torch.nn.Module):
    """down/up matrices per adapted linear; `attach` puts them on a UNet as forward hooks."""

    def __init__(self, shapes: dict[str, tuple[int, int]], rank: int, alpha: float, seed: int = 0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"--rank must be >= 1, got {rank}")
        self.rank, self.alpha = rank, float(alpha)
        self.paths = list(shapes)
        generator = torch.Generator().manual_seed(seed)
        # ModuleDict keys may not contain dots: ComfyUI's underscored name is the key.
        self.down = torch.nn.ParameterDict({comfy_key(p): torch.nn.Parameter(
            torch.randn(rank, n_in, generator=generator) / n_in ** 0.5) for p, (_, n_in) in shapes.items()})
        self.up = torch.nn.ParameterDict({comfy_key(p): torch.nn.Parameter(torch.zeros(n_out, rank))
                                          for p, (n_out, _) in shapes.items()})

    @classmethod
    def for_unet(cls, unet: torch.nn.Module, rank: int, alpha: float, seed: int = 0) -> "LoRA":
        return cls({p: tuple(m.weight.shape) for p, m in attention_linears(unet).items()}, rank, alpha, seed)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def forward(self, run, *args, **kwargs):
        """`run(*args)`: the UNet call with this LoRA attached, routed through the module so that a
        DistributedDataParallel wrapper sees the forward pass and synchronises the LoRA's gradients."""
        return run(*args, **kwargs)

    def delta(self, path: str) -> torch.Tensor:
        """(alpha / rank) * up @ down: what the LoRA adds to the weight of module `path` at strength 1."""
        key = comfy_key(path)
        return self.scale * self.up[key] @ self.down[key]

    def attach(self, unet: torch.nn.Module) -> list:
        """Add the LoRA to `unet`'s attention linears as forward hooks; returns the handles to `.remove()`."""
        linears = attention_linears(unet)
        missing = [p for p in self.paths if p not in linears]
        if missing:
            raise ValueError(f"this LoRA adapts modules the UNet lacks: {missing[:3]}")
        return [linears[p].register_forward_hook(self._hook(comfy_key(p))) for p in self.paths]

    def _hook(self, key: str):
        def add_update(module, inputs, output):
            x = inputs[0]
            update = F.linear(F.linear(x, self.down[key].to(x.dtype)), self.up[key].to(x.dtype))
            return output + self.scale * update

        return add_update

    def state_for_file(self) -> dict[str, torch.Tensor]:
        """The tensors of the ComfyUI LoRA file (float32, contiguous)."""
        out = {}
        for p in self.paths:
            key = comfy_key(p)
            out[f"{key}.lora_down.weight"] = self.down[key].detach().float().contiguous().cpu()
            out[f"{key}.lora_up.weight"] = self.up[key].detach().float().contiguous().cpu()
            out[f"{key}.alpha"] = torch.tensor(self.alpha)
        return out


def save_lora(lora: LoRA, path: str | Path, metadata: dict) -> Path:
    """Write `lora` for ComfyUI's LoRA loaders, atomically; metadata values are stored as JSON strings."""
    info = {"format": FORMAT, "format_version": "1", "rank": str(lora.rank), "alpha": str(lora.alpha),
            "target_modules": "to_q,to_k,to_v,to_out.0",
            **{k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in metadata.items()}}
    tensors = lora.state_for_file()
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=info))


def read_lora_file(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """{ComfyUI LoRA name: {"down", "up", "alpha"}} of a LoRA file, read independently of `LoRA`."""
    tensors = load_file(str(path))
    names = {k.split(".lora_down.weight")[0] for k in tensors if k.endswith(".lora_down.weight")}
    return {n: {"down": tensors[f"{n}.lora_down.weight"], "up": tensors[f"{n}.lora_up.weight"],
                "alpha": tensors[f"{n}.alpha"]} for n in sorted(names)}
