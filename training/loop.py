"""The optimisation loop every trainer in `training` shares: AdamW, warm-up + cosine schedule,
gradient clipping, EMA with warm-up, checkpoints (`weights_only=True`) with `--resume`, atomic
writes, progress, and DistributedDataParallel under torchrun.

`train_hgr` (`trainer.train`) and `finetune_safe` (the safety LoRA) differ only in the module they
optimise and the loss of a batch; both hand `optimise` a `loss_fn(net, generator) -> loss`, where
`net` is the module as the forward pass must see it (the DDP wrapper under torchrun).
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from hgr_core import atomic_write, ema_decay_at, ema_update, warmup_cosine

from .progress import progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OptimConfig:
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100  # linear warm-up steps, then cosine decay to lr_min_ratio * lr
    lr_min_ratio: float = 0.1
    ema_decay: float = 0.995  # reached after a warm-up (hgr_core.ema_decay_at)
    grad_clip: float = 1.0
    clean_weight: float = 1.0
    second_pass_share: float = 0.0  # HGR training: rows trained as a second pass's input (`losses.with_second_pass_rows`)
    eval_every: int = 500
    seed: int = 0


def init_distributed(device: str) -> tuple[int, int]:
    """(rank, world size); initialises torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return dist.get_rank(), world


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def all_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    """`t` summed over the ranks (itself when not distributed); every rank gets the sum."""
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def save_checkpoint(path: Path, model: torch.nn.Module, ema: torch.nn.Module, optimizer, step: int,
                    identity: str) -> None:
    """Model, EMA, optimizer and step, written atomically; `identity` (a JSON string) names what was trained."""
    state = {"model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
             "step": step, "config": identity}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path, model: torch.nn.Module, ema: torch.nn.Module, optimizer, identity: str,
                    what: str = "model") -> int:
    """Restore a checkpoint of our own (weights_only=True: nothing else is unpickled); returns its step."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"] != identity:
        raise ValueError(f"--resume: {path} was written for another {what} config; use a new --work-dir")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def optimise(model: torch.nn.Module, loss_fn: Callable, config: OptimConfig, device, checkpoint: Path,
             resume: bool, identity: str, desc: str = "train", on_eval=None) -> torch.nn.Module:
    """Optimise `model`'s trainable parameters with `loss_fn(net, generator)`; returns the EMA copy.

    The batch generator is seeded by (seed, rank, start step), so a resumed run draws fresh
    batches. on_eval(step, ema) runs on rank 0 after each checkpoint (every `eval_every` steps).
    """
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    model.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    start = load_checkpoint(checkpoint, model, ema, optimizer, identity) if resume and checkpoint.is_file() else 0
    if start:
        log.info("resumed from %s at step %d", checkpoint, start)
    net = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    generator = torch.Generator().manual_seed(config.seed * 1000 + rank + start)
    bar = progress(range(start, config.steps), desc=desc, disable=rank != 0, initial=start, total=config.steps)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * warmup_cosine(step, config.steps, config.warmup, config.lr_min_ratio)
        loss = loss_fn(net, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        ema_update(ema, model, ema_decay_at(step, config.ema_decay))  # step: global, so --resume continues the warm-up
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)  # refresh=True would redraw every step
        done = step + 1
        if rank == 0 and (done % config.eval_every == 0 or done == config.steps):
            save_checkpoint(checkpoint, model, ema, optimizer, done, identity)
            if on_eval is not None:
                on_eval(done, ema)
    return ema
