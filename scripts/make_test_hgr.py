"""Write the small redirecting HGR that the graph tests use: tests/data/toy_hgr.safetensors.

    .venv/bin/python scripts/make_test_hgr.py              # ~6-8 minutes on 2 CPU cores
    .venv/bin/python scripts/make_test_hgr.py --world v2   # tests/data/toy_hgr_v2.safetensors (+ an on-policy round)

It is the demo's recipe (`scripts/demo.py`: 400 harmful + 200 clean toy prompts, 2 noise seeds
each, 10 sampling steps, 1200 steps of a 2-level 32-channel HGR, seed 0) run through the real
`python -m training.train_hgr --toy` CLI, so the committed file (1.8 MB) is reproducible. Tests
commit to it rather than train in a fixture: the guidance-path tests need an HGR that really
redirects, and training one costs minutes.
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
    args = p.parse_args(argv)
    demo = _demo()
    if args.world == "v2":
        from toyworld.v2 import prompts
    else:
        from toyworld import prompts
    recipe = [*demo.TOY_TRAINING, *(["--toy-weights", str(V2_WEIGHTS)] if args.world == "v2" else [])]
    output = args.output or TARGETS[args.world]

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        files = prompts.write_prompt_files(work / "prompts", 400, 200, demo.DEMO_TWO_HARM_SHARE)
        weights = demo.train_hgr(files, work, recipe)
        if args.world == "v2":  # one on-policy round on top: 35/215 vs 49/215 harmful on the v2 sweep's dev split
            weights = demo.train_hgr(files, work, [*recipe, "--on-policy", str(weights)], "on_policy.safetensors")
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, output)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
