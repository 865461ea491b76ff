"""Write the small redirecting HGR that the graph tests use: tests/data/toy_hgr.safetensors.

    .venv/bin/python scripts/make_test_hgr.py              # ~6-8 minutes on 2 CPU cores
    .venv/bin/python scripts/make_test_hgr.py --world v2   # tests/data/toy_hgr_v2.safetensors (+ an on-policy round)
    .venv/bin/python scripts/make_test_hgr.py --world v2 --thorough --rounds 3 --output runs/v2_thorough_r3.safetensors

It is the demo's recipe (`scripts/demo.py`: 400 harmful + 200 clean toy prompts, 2 noise seeds
each, 10 sampling steps, 1200 steps of a 2-level 32-channel HGR, seed 0) run through the real
`python -m training.train_hgr --toy` CLI, so the committed file (1.8 MB) is reproducible. Tests
commit to it rather than train in a fixture: the guidance-path tests need an HGR that really
redirects, and training one costs minutes.

``--thorough`` trains with the demo's --thorough recipe instead (`demo.THOROUGH_TRAINING`, 35%
two-harm prompts) and ``--rounds N`` adds N - 1 on-policy rounds, each sampled with the previous
round's HGR (v2 default: 2, v1: 1); this is how the v2 candidates in the README were trained
(round 2: ~20 min, round 3: ~15 min more on 2 idle cores).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"v1": REPO / "tests" / "data" / "toy_hgr.safetensors", "v2": REPO / "tests" / "data" / "toy_hgr_v2.safetensors"}
V2_WEIGHTS = REPO / "toyworld" / "v2" / "weights"


def _demo():
    spec = importlib.util.spec_from_file_location("safecfg_demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work-dir", type=Path, default=None, help="keep prompts and trajectories here (default: a temp dir)")
    p.add_argument("--world", choices=sorted(TARGETS), default="v1", help="the toy world to train on")
    p.add_argument("--output", type=Path, default=None, help="where the weights go (default: the world's test file)")
    p.add_argument("--thorough", action="store_true", help="the demo's --thorough training recipe")
    p.add_argument("--rounds", type=int, default=None, help="training rounds, the later ones on-policy (default: v2 2, v1 1)")
    p.add_argument("--toy-weights", type=Path, default=None,
                   help="v2 only: train for the world in this folder (a derived model: benchmarks.transfer --build)")
    p.add_argument("--harmful-prompts", type=int, default=400, help="harmful training prompts")
    p.add_argument("--clean-prompts", type=int, default=200, help="clean training prompts")
    p.add_argument("--train-args", default="", help="extra train_hgr flags after the recipe's (they win)")
    args = p.parse_args(argv)
    rounds = args.rounds or (2 if args.world == "v2" else 1)
    if rounds < 1:
        p.error("--rounds must be at least 1")
    if args.toy_weights is not None and args.world != "v2":
        p.error("--toy-weights needs --world v2")
    demo = _demo()
    if args.world == "v2":
        from toyworld.v2 import prompts
    else:
        from toyworld import prompts
    training = demo.THOROUGH_TRAINING if args.thorough else demo.TOY_TRAINING
    two_harm_share = demo.THOROUGH_TWO_HARM_SHARE if args.thorough else demo.DEMO_TWO_HARM_SHARE
    world_weights = args.toy_weights or V2_WEIGHTS
    recipe = [*training, *(["--toy-weights", str(world_weights)] if args.world == "v2" else []), *args.train_args.split()]
    output = args.output or TARGETS[args.world]

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        files = prompts.write_prompt_files(work / "prompts", args.harmful_prompts, args.clean_prompts, two_harm_share)
        weights = demo.train_hgr(files, work, recipe)
        for n in range(2, rounds + 1):  # v2: one on-policy round gave 35/215 vs 49/215 harmful on the sweep's dev split
            name = "on_policy.safetensors" if n == 2 else f"on_policy_round{n}.safetensors"
            weights = demo.train_hgr(files, work, [*recipe, "--on-policy", str(weights)], name)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, output)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
