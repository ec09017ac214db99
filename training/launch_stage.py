"""Entry point of a launched stage: ``python -m training.launch_stage JOB.json`` on every rank.

The runner curates the data and builds the base model once, in its own process; the stage loop
(``training.stage_loop``) prepares the stage's data and writes the job file, then launches this
module under ``accelerate launch`` / ``torchrun`` (``training.launch``). Each rank runs the job with
``training.job.run_job`` -- the same function an in-process stage runs -- and the HF Trainer does the
data-parallel/sharded part; rank 0 writes ``result.json`` next to the job. It never imports
``recipe.run`` or ``recipe.cli``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m training.launch_stage JOB.json", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from training.job import read_job, run_job

    run_job(read_job(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
