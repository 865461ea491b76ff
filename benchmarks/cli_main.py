"""The benchmark CLIs' entry point (a user's mistake: a missing file, a bad flag value, a missing
optional package, is one logged line and exit status 2, not a traceback) and the flags they share."""

from __future__ import annotations

import logging
from typing import Callable

USER_ERRORS = (FileNotFoundError, ValueError, ImportError)  # prompt-file errors are ValueErrors


def add_passes_flag(parser, applies_to: str, default: int = 1) -> None:
    """`--passes N`: SafeCFG's HGR applications per step (SafeCFGApply's `passes`); `applies_to` ends
    the help text with what the flag changes in this CLI."""
    from hgr_core import MAX_PASSES

    parser.add_argument("--passes", type=int, default=default, choices=range(1, MAX_PASSES + 1), metavar="N",
                        help=f"SafeCFG's HGR applications per step (SafeCFGApply's 'passes', 1-{MAX_PASSES}): "
                             f"{applies_to}")


def run_main(main: Callable[[], object], logger: str) -> None:
    """Call `main()`; on a user error log it through `logger` and exit with status 2."""
    try:
        main()
    except USER_ERRORS as e:
        logging.getLogger(logger).error("%s", e)
        raise SystemExit(2) from None
