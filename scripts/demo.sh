#!/usr/bin/env bash
# README command one: set up .venv (first run only) and run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
exec .venv/bin/python scripts/tiny_demo.py "$@"
