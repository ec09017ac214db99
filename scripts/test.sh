#!/usr/bin/env bash
# Fresh machine -> test results: set up, then run the whole test suite.
# The data card's page test drives Debian's chromium (tests/curation/card/test_card_page.py); when it
# is missing and this runs as root with apt-get, it is installed first (set RECIPE_KIT_NO_APT=1 to
# skip that; the page test then skips and says why).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the Ray engine's tests (tests/curation/test_ray_engine.py) need the `distributed` extra
.venv/bin/python -c "import ray.data" 2>/dev/null || PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q -e ".[distributed]"
if [ -z "${RECIPE_KIT_NO_APT:-}" ] && ! command -v chromium >/dev/null 2>&1 \
   && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing chromium (Debian) for the data-card page test ..."
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "could not install chromium; the page test will skip"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python -m pytest -q "$@"
