"""Exposure accounting: for every row of a stage's dataset, how many times the trainer consumed it.

Why our own code: no trainer reports it, and it is what epochs, upsampled copies and samplers
(Skill-it rounds, RS2 subsets, MeCo phases) actually did to the data. Every sampler of a stage
(``training.hooks.samplers``) regenerates epoch ``e``'s stream from (seed, e, state); this callback
records the global step at which each epoch began (kept in ``checkpoint-N/hooks.json`` across a
resume) and, when training ends, counts the consumed prefix of each epoch's stream:
``min(len(stream_e), updates_e x grad_accum x per-device batch x processes)`` indices (a last
partial batch of an epoch is counted whole; accelerate's wrap-around padding of uneven last
batches is not). Rows map to ids through the trainer dataset's ``id`` column (kept by every stage
kind's converter). Written, rank 0: ``<stage_dir>/exposure.parquet`` (``row_id``, ``source``,
``skill``, ``exposures``) and ``<stage_dir>/exposure_ledger.parquet`` (ledger records: dataset
``stage:<name>``, step ``exposure``, score = the count), which the stage loop joins to the run's
ledger, so ``recipe audit R ID`` shows it and the card plots its distribution. Not recorded for
packed stages (a block holds several rows) and GRPO (TRL's own repeat sampler).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np


class ExposureRecorder:
    def __init__(self, sampler, stage_name: str, stage_dir: Path):
        self.sampler, self.stage_name, self.stage_dir = sampler, stage_name, Path(stage_dir)
        self.epoch_begin: dict[int, int] = {}

    def state(self) -> dict:
        return {"epoch_begin": {str(k): v for k, v in self.epoch_begin.items()}}

    def load_state(self, state: dict) -> None:
        for k, v in (state.get("epoch_begin") or {}).items():
            self.epoch_begin.setdefault(int(k), int(v))

    def on_epoch_begin(self, state) -> None:
        epoch = int(math.floor((state.epoch or 0.0) + 1e-9))
        self.epoch_begin.setdefault(epoch, int(state.global_step))

    def counts(self, global_step: int, per_update: int) -> np.ndarray:
        counts = np.zeros(self.sampler.n, dtype=np.int64)
        epochs = sorted(self.epoch_begin)
        for i, e in enumerate(epochs):
            end = self.epoch_begin[epochs[i + 1]] if i + 1 < len(epochs) else global_step
            stream = self.sampler.indices(e)
            take = min(len(stream), max(0, end - self.epoch_begin[e]) * per_update)
            np.add.at(counts, stream[:take], 1)
        return counts

    def write(self, trainer) -> dict:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from curation import ledger as ledger_mod

        args = trainer.args
        per_update = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        counts = self.counts(trainer.state.global_step, per_update)
        ds = trainer.train_dataset
        cols = ds.column_names
        ids = ds["id"] if "id" in cols else [str(i) for i in range(len(ds))]
        skills = ds["skill"] if "skill" in cols else [None] * len(ds)
        sources = ds["source"] if "source" in cols else [None] * len(ds)
        per_id: dict[str, list] = {}
        for rid, src, c in zip(ids, sources, counts.tolist()):
            entry = per_id.setdefault(rid, [src, 0])
            entry[1] += c
        if trainer.is_world_process_zero():
            self.stage_dir.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table({"row_id": ids, "source": sources, "skill": skills, "exposures": counts}),
                           self.stage_dir / "exposure.parquet")
            rid = list(per_id)
            n = [per_id[r][1] for r in rid]
            records = ledger_mod.records_table(f"stage:{self.stage_name}", "exposure", 0, rid, [per_id[r][0] for r in rid],
                                               [True] * len(rid), score=np.asarray(n, dtype=float),
                                               detail=[f"consumed {c} times" for c in n])
            ledger_mod.write([records], self.stage_dir / "exposure_ledger.parquet")
        hist = Counter(counts.tolist())
        return {"rows": int(len(counts)), "consumed": int(counts.sum()), "never": int((counts == 0).sum()),
                "max": int(counts.max()) if len(counts) else 0, "histogram": {str(k): v for k, v in sorted(hist.items())}}
