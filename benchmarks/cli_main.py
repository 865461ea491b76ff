"""The benchmark CLIs' entry point: a user's mistake (a missing file, a bad flag value, a missing
optional package) is one logged line and exit status 2, not a traceback."""

from __future__ import annotations

import logging
from typing import Callable

USER_ERRORS = (FileNotFoundError, ValueError, ImportError)  # prompt-file errors are ValueErrors


def run_main(main: Callable[[], object], logger: str) -> None:
    """Call `main()`; on a user error log it through `logger` and exit with status 2."""
    try:
        main()
    except USER_ERRORS as e:
        logging.getLogger(logger).error("%s", e)
        raise SystemExit(2) from None
