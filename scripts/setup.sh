#!/usr/bin/env bash
# Create .venv and install recipe-kit with everything its tests and recipes use.
# torch is installed first as the pinned CPU build (2.13.0); the project's own range admits it,
# so the editable install that follows pulls no CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
# setuptools warns on every editable install ("Editable installation ... be careful"): not ours to act on,
# so the set-up prints only its own progress
echo "installing recipe-kit and its dependencies into .venv ..."
PYTHONWARNINGS=ignore python -m pip install -q -e ".[curation,eval,umap,fast,test]"
