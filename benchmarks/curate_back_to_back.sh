#!/usr/bin/env bash
# `recipe curate` of card_scale's pool (exact_dedup -> length -> repetition -> garbage), an older
# commit against this tree, back to back, fresh cache each run, each side run from its own tree (the
# current directory is first on sys.path, so the older side imports its own code):
#
#   bash benchmarks/curate_back_to_back.sh OLD_COMMIT [ROWS=1000000] [ROUNDS=3]
#
# Prints wall time and peak RSS (GNU time) and the phase and decide seconds (curation.json) per run.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?give the older commit}; rows=${2:-1000000}; rounds=${3:-3}
py=$PWD/.venv/bin/python; new=$PWD
tmp=$(mktemp -d); trap 'git worktree remove --force "$tmp/old" >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT
git worktree add -q "$tmp/old" "$old"
"$py" -c "
import sys, yaml; sys.path.insert(0, 'benchmarks')
from pathlib import Path
from card_scale import make_source, recipe
make_source(Path('$tmp/pool.jsonl'), $rows)
Path('$tmp/r.yaml').write_text(yaml.safe_dump(recipe(Path('$tmp/pool.jsonl')), sort_keys=False))"
for round in $(seq "$rounds"); do
  for side in old new; do
    dir=$([ "$side" = old ] && echo "$tmp/old" || echo "$new")
    rm -rf "$tmp/run_$side"
    (cd "$dir" && /usr/bin/time -v "$py" -c "import sys; sys.argv=['recipe','curate','$tmp/r.yaml','--out','$tmp/run_$side']; from recipe.cli import app; app()" \
      > "$tmp/log_$side" 2>&1)
    wall=$(grep Elapsed "$tmp/log_$side" | awk '{print $NF}'); peak=$(grep Maximum "$tmp/log_$side" | awk '{print $NF}')
    phase=$("$py" -c "import json; t=json.load(open('$tmp/run_$side/curation.json'))['timing']; print(t['seconds'], round(sum(s['decide_seconds'] for s in t['steps']), 2))")
    echo "round $round $side: wall $wall, peak ${peak} kB, phase and decide seconds: $phase"
  done
done
