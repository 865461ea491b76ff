"""Write the small redirecting HGRs the tests use: tests/data/toy_hgr_v2.safetensors and (v1) toy_hgr.safetensors.

    .venv/bin/python scripts/make_test_hgr.py              # v2 (the default world): tests/data/toy_hgr_v2.safetensors (+ an on-policy round)
    .venv/bin/python scripts/make_test_hgr.py --world v1   # tests/data/toy_hgr.safetensors, ~6-8 minutes on 2 CPU cores
    .venv/bin/python scripts/make_test_hgr.py --world v2 --thorough --rounds 3 --output runs/v2_thorough_r3.safetensors
    .venv/bin/python scripts/make_test_hgr.py --world v2 --thorough --rounds 3 --concept-only --output runs/v2_concept_r3.safetensors

It is the demo's recipe (`training/recipes.py`: 400 harmful + 200 clean toy prompts, 2 noise seeds
each, 10 sampling steps, 1200 steps of a 2-level 32-channel HGR, seed 0) run through the real
`python -m training.train_hgr --toy` CLI, so the committed file (1.8 MB) is reproducible. Tests
commit to it rather than train in a fixture: the guidance-path tests need an HGR that really
redirects, and training one costs minutes.

``--thorough`` trains with the thorough recipe instead (`recipes.THOROUGH_TRAINING`, 35% two-harm
prompts) and ``--rounds N`` adds N - 1 on-policy rounds, each sampled with the previous round's
HGR (default: the recipe's rounds, `recipes.ROUNDS`: v2 2 or 3 with --thorough, v1 1 or 2); this is how the v2 candidates in the README were trained (round 2:
~20 min, round 3: ~15 min more on 2 idle cores). `benchmarks.transfer_build` calls the same
`training.recipes.train_toy_hgr`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from training import recipes  # noqa: E402

TARGETS = {"v1": REPO / "tests" / "data" / "toy_hgr.safetensors", "v2": REPO / "tests" / "data" / "toy_hgr_v2.safetensors"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work-dir", type=Path, default=None, help="keep prompts and trajectories here (default: a temp dir)")
    p.add_argument("--world", choices=sorted(TARGETS), default="v2",
                   help="the toy world to train on (v2, the default of every toy CLI; v1 writes the v1 graph tests' file)")
    p.add_argument("--output", type=Path, default=None, help="where the weights go (default: the world's test file)")
    p.add_argument("--thorough", action="store_true", help="the thorough training recipe")
    p.add_argument("--rounds", type=int, default=None, help="training rounds, the later ones on-policy (default: the recipe's, training.recipes.ROUNDS)")
    p.add_argument("--toy-weights", type=Path, default=None,
                   help="v2 only: train for the world in this folder (a derived model: benchmarks.transfer --build)")
    p.add_argument("--harmful-prompts", type=int, default=None,
                   help=f"harmful training prompts (default: {recipes.DEFAULT_PROMPTS[0]})")
    p.add_argument("--clean-prompts", type=int, default=None,
                   help=f"clean training prompts (default: {recipes.DEFAULT_PROMPTS[1]})")
    p.add_argument("--concept-only", action="store_true",
                   help="the concept-only regime: the harmful training file without its safe_prompt column (concept "
                        "targets, as for I2P)")
    p.add_argument("--train-args", default="", help="extra train_hgr flags after the recipe's (they win)")
    return p


def main(argv=None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    rounds = recipes.recipe_rounds(args.world, args.thorough) if args.rounds is None else args.rounds
    if rounds < 1:
        p.error("--rounds must be at least 1")
    if args.toy_weights is not None and args.world != "v2":
        p.error("--toy-weights needs --world v2")
    output = recipes.train_toy_hgr(args.world, args.output or TARGETS[args.world], args.work_dir, thorough=args.thorough,
                                   rounds=rounds, toy_weights=args.toy_weights,
                                   prompts=_prompts(args), extra=args.train_args.split(),
                                   concept_only=args.concept_only)
    print(f"wrote {output}")


def _prompts(args) -> tuple[int, int]:
    harmful, clean = recipes.DEFAULT_PROMPTS
    return (args.harmful_prompts or harmful, args.clean_prompts or clean)


if __name__ == "__main__":
    main()
