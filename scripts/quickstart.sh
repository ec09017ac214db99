#!/usr/bin/env bash
# Fresh machine -> trained and evaluated tiny model: set up, then run the quickstart recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/recipe train recipes/quickstart.yaml "$@"
