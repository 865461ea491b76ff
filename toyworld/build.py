"""Rebuild a toy world's weights from scratch (seeded): v2, the default world, or v1.

    python -m toyworld.build                   # toy world v2 into toyworld/v2/weights (toyworld/v2/build.py)
    python -m toyworld.build --design --out runs/world_v2   # v2's codec + judge + design gate only
    python -m toyworld.build --world v1        # toy world v1 into toyworld/weights (toyworld/build_v1.py)

Every other flag belongs to the chosen world's build; `--help` lists them.
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> None:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--world", choices=("v1", "v2"), default="v2")
    args, rest = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    if "-h" in rest or "--help" in rest:
        print(f"python -m toyworld.build [--world {{v1,v2}}] ...: the flags of the {args.world} build follow\n")
    if args.world == "v1":
        from .build_v1 import main as build
    else:
        from .v2.build import main as build
    build(rest)


if __name__ == "__main__":
    main()
