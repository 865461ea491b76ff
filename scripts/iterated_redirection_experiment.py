"""Dev-split experiment, not a product option: SafeCFG with the HGR applied several times per step.

    .venv/bin/python scripts/iterated_redirection_experiment.py --passes 2 -- --sweep --split dev \
        --toy-weights toyworld/v2/weights --hgr H --per-category 8

Pass 1 is the product's R(g) - g. Each further pass runs the HGR on the already redirected guidance
and adds its change, g_k = g_{k-1} + (R(g_{k-1}) - g_{k-1}), so a harm the first pass left (a second
harm of a two-harm prompt, a half-removed mark) meets the network again; clean guidance, which the
HGR leaves alone, stays put. The harm score (detection) is pass 1's, as in the product. Cost: one
more HGR forward per pass and step, no UNet evaluation.

Everything after `--` goes to `python -m benchmarks.safety`. The extra passes are installed by
replacing `hgr_core.guidance.redirection_parts` in this process only (`iterated_redirection`
restores it); nothing in the node pack changes. Results and the decision to make it a node input
are in the README (toy world v2 section).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from hgr_core import guidance  # noqa: E402


@contextlib.contextmanager
def iterated_redirection(passes: int):
    """Within the block, every SafeCFG step applies the HGR `passes` times (1: unchanged)."""
    if passes < 1:
        raise ValueError(f"--passes must be at least 1, got {passes}")
    single = guidance.redirection_parts

    def repeated(hgr, g, sigma, x, uncond_denoised, category_mask=None):
        total, harm = single(hgr, g, sigma, x, uncond_denoised, category_mask)
        for _ in range(passes - 1):
            total = total + single(hgr, g + total, sigma, x, uncond_denoised, category_mask)[0]
        return total, harm

    guidance.redirection_parts = repeated
    try:
        yield
    finally:
        guidance.redirection_parts = single


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--passes", type=int, default=2, help="HGR applications per sampling step (1 = the product)")
    p.add_argument("benchmark_args", nargs=argparse.REMAINDER, help="-- then python -m benchmarks.safety flags")
    args = p.parse_args(argv)
    rest = args.benchmark_args[1:] if args.benchmark_args[:1] == ["--"] else args.benchmark_args
    from benchmarks.safety import main as benchmark

    with iterated_redirection(args.passes):
        return benchmark(rest)


if __name__ == "__main__":
    main()
