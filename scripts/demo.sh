#!/usr/bin/env bash
# README command one: set up .venv (first run only), then train an HGR for the toy world with the
# real training CLI and benchmark it (picture grid + metrics table). Flags go to scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/python scripts/demo.py "$@"
