"""Argument types, the optimisation flags that `train_hgr` and `finetune_safe` share, and the first
lines every CLI runs (`add_threads_flag`, `start_cli`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(name)s: %(message)s"


def add_threads_flag(parser, default: int | None = None) -> None:
    parser.add_argument("--threads", type=positive_int, default=default,
                        help="torch CPU threads (default: torch's, one per core; with another torch process on the "
                             "same cores use 1: two processes asking for every core each run many times slower)")


def start_cli(threads: int | None = None) -> None:
    """A CLI's first lines: INFO logging with timestamps and, when given, torch's CPU thread count."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt="%H:%M:%S")
    if threads:
        import torch

        torch.set_num_threads(threads)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,2,4, got {text!r}") from None


def unit_interval_list(text: str) -> tuple[float, ...]:
    """Comma-separated numbers, each in (0, 1] (denoise levels, strengths)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.3,0.5, got {text!r}") from None
    if not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"each value must be in (0, 1], got {text!r}")
    return values


def name_list(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names like euler,heun, got {text!r}")
    return names


def int_range(text: str) -> tuple[int, int]:
    values = int_list(text)
    if len(values) != 2 or not 1 <= values[0] <= values[1]:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX with 1 <= MIN <= MAX like 10,50, got {text!r}")
    return values


def safetensors_output(text: str) -> Path:
    path = Path(text)
    if path.suffix != ".safetensors":
        raise argparse.ArgumentTypeError(f"must end in .safetensors (e.g. ComfyUI/models/hgr/my_hgr.safetensors), got {text}")
    return path


def add_optimisation_flags(group, defaults, *, batch: str, ema: str, eval_every: str, seed: str) -> None:
    """--steps, --batch-size, --lr, --weight-decay, --warmup, --ema-decay, --grad-clip, --eval-every
    and --seed, defaulting to `defaults` (a `training.loop.OptimConfig`); the strings say what a
    batch holds, what the EMA exports, what happens every --eval-every steps and what --seed seeds."""
    group.add_argument("--steps", type=positive_int, default=defaults.steps, help="optimisation steps")
    group.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help=batch)
    group.add_argument("--lr", type=float, default=defaults.lr, help="peak AdamW learning rate")
    group.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="AdamW weight decay")
    group.add_argument("--warmup", type=int, default=defaults.warmup, help="linear warm-up steps before cosine decay")
    group.add_argument("--ema-decay", type=float, default=defaults.ema_decay,
                       help=f"EMA decay of the exported {ema}, reached after a warm-up min(decay, (1+t)/(10+t)) at step t")
    group.add_argument("--grad-clip", type=float, default=defaults.grad_clip, help="gradient norm clip")
    group.add_argument("--eval-every", type=positive_int, default=defaults.eval_every, help=eval_every)
    group.add_argument("--seed", type=int, default=0, help=seed)
