"""tqdm progress bars that stay readable when stderr goes to a log file (CI, nohup, torchrun)."""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


def progress(iterable, **kwargs) -> tqdm:
    """A tqdm bar; when stderr is not a terminal it redraws about every 30 s (mininterval) instead of at every update."""
    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
    return tqdm(iterable, **kwargs)
