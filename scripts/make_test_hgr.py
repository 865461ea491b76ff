"""Write the small redirecting HGR that the graph tests use: tests/data/toy_hgr.safetensors.

    .venv/bin/python scripts/make_test_hgr.py          # ~6-8 minutes on 2 CPU cores

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
TARGET = REPO / "tests" / "data" / "toy_hgr.safetensors"


def _demo():
    spec = importlib.util.spec_from_file_location("safecfg_demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work-dir", type=Path, default=None, help="keep prompts and trajectories here (default: a temp dir)")
    p.add_argument("--output", type=Path, default=TARGET, help="where the weights go")
    args = p.parse_args(argv)
    demo = _demo()
    from toyworld import prompts

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        files = prompts.write_prompt_files(work / "prompts", 400, 200, demo.DEMO_TWO_HARM_SHARE)
        weights = demo.train_hgr(files, work, demo.TOY_TRAINING)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
