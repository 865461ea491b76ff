"""Train Harmful Guidance Redirector (HGR) weights for a ComfyUI checkpoint (METHOD.md section 4).

Examples:

    # a real checkpoint, on your GPU, straight into ComfyUI's models/hgr
    python -m training.train_hgr --checkpoint ComfyUI/models/checkpoints/v1-5.safetensors \\
        --harmful i2p.csv --harmful paired.csv --clean coco.txt \\
        --output ComfyUI/models/hgr/sd15.safetensors

    # an SDXL checkpoint with the SDXL preset (1024 px; refused if ComfyUI detects another family)
    python -m training.train_hgr --checkpoint sd_xl_base_1.0.safetensors --preset sdxl \\
        --harmful i2p.csv --clean coco.txt --output ComfyUI/models/hgr/sdxl.safetensors

    # the toy world (CPU, minutes)
    python -m training.train_hgr --toy --harmful runs/prompts/harmful_train.csv \\
        --clean runs/prompts/clean_train.csv --concepts runs/prompts/concepts.json \\
        --output runs/toy_hgr.safetensors

    # several processes (trajectory generation sharded, training with DDP; gloo on CPU)
    torchrun --nproc_per_node 2 -m training.train_hgr ...

Steps: read prompts -> plan jobs (validation split by prompt) -> sample trajectories with
ComfyUI's samplers into a resumable shard cache -> train (AdamW, EMA, warm-up + cosine, gradient
clipping, checkpoints, --resume) -> evaluate per category and write preview grids -> calibrate the
detection threshold on clean validation prompts -> export EMA weights atomically.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from safecfg_comfy.locate import setup_comfyui  # noqa: E402

from . import prompt_data  # noqa: E402
from .cli import choose_device, parse_args  # noqa: E402
from .flags import start_cli  # noqa: E402
from .loop import init_distributed  # noqa: E402

log = logging.getLogger("train_hgr")


def load_prompts(args):
    harmful = [p for path in args.harmful for p in prompt_data.read_harmful(path, args.harmful_category)]
    clean = [p for path in args.clean for p in prompt_data.read_clean(path)]
    concepts = prompt_data.read_concepts(args.concepts)
    prompt_data.check_concepts(harmful, concepts, "--harmful")
    negatives = prompt_data.read_clean(args.negatives) if args.negatives else list(DEFAULT_NEGATIVES)
    groups = {k: v for path in [*args.harmful, *args.clean] for k, v in prompt_data.read_groups(path).items()}
    return harmful, clean, concepts, negatives, groups


DEFAULT_NEGATIVES = ("", "", "blurry, low quality", "worst quality, low quality", "blurry")


def log_counts(harmful, clean) -> None:
    counts = prompt_data.category_counts(harmful)
    log.info("prompts: %d harmful, %d clean", len(harmful), len(clean))
    for name, count in sorted(counts.items()):
        paired = sum(1 for p in harmful if name in p.categories and p.safe_text)
        log.info("  %-12s %5d prompts (%d with a safe counterpart, %d use the concept text)", name, count, paired, count - paired)


def make_backend(args, device: str):
    """The toy world, or the checkpoint once its family has CFG and fits --preset (refused before sampling)."""
    from .backends import CheckpointBackend, ToyBackend
    from .presets import check_model, describe_choice, detect

    if args.toy:
        return ToyBackend(device, args.toy_weights)
    if args.preset is not None:
        log.info("%s", describe_choice(args.preset, args))
    backend = CheckpointBackend(args.checkpoint, args.resolution, args.precision)
    check_model(detect(backend.model), args.preset, f"--checkpoint {args.checkpoint.name}")
    return backend


def main(argv=None) -> None:
    args = parse_args(argv)
    start_cli(args.threads)
    device = choose_device(args.device)
    setup_comfyui(args.comfyui, cpu=device == "cpu")
    rank, world = init_distributed(device)
    harmful, clean, concepts, negatives, groups = load_prompts(args)
    if rank == 0:
        log_counts(harmful, clean)
    from .run import run

    run(args, device, rank, world, harmful, clean, concepts, negatives, make_backend(args, device), groups)


if __name__ == "__main__":
    try:
        main()
    except (prompt_data.PromptFileError, FileNotFoundError, ValueError) as e:
        logging.getLogger("train_hgr").error("%s", e)
        raise SystemExit(2) from None
