"""``mates``: model-aware data selection with a data influence model (Yu et al. 2024, "MATES:
Model-Aware Data Selection for Efficient Pretraining with Data Influence Models", Alg. 1;
cxcscmu/MATES@5d2860c, methods.md section 2).

The stage's dataset is the candidate pool. Training runs in rounds: the first ``warmup_steps``
optimizer steps on a random selection, then a round every ``select_every`` steps, each prepared
just before its first batch is drawn (the dataloader fetches a batch ahead: the model then has
trained ``round start - 1`` steps), with the model as it is at that moment:

1. **Oracle influence by local probing** (``probe_oracle_data_influence.py``): for ``probes``
   candidates drawn from the round's pool, one optimizer step on that candidate alone -- the
   stage's own optimizer with its current state (AdamW moments, step count) at the schedule's
   current lr, gradient clipping at the stage's ``max_grad_norm`` -- from the current weights, then
   the mean token loss on the reference set (the stage's ``validation`` rows, or the set named by
   ``reference``; at most ``reference_rows`` of them, the official 1024), after which weights and
   optimizer state are restored. The label is that post-step loss (lower = a more useful
   candidate), as the official code (a constant offset from the loss change).
2. **Data influence model** (``training.influence_model``): the candidate's tokens are decoded back
   to text and fed to a MiniLM encoder with a regression head, fine-tuned on the z-scored labels
   (MSE, lr 5e-5, batch 32, 5 epochs, weight decay 0.01, best of the epochs by Spearman on a held-out
   10%, which is logged each round).
3. **Predict and select** (``select_data.py``): the model scores the round's pool of
   ``round rows / ratio`` candidates (a fresh seeded draw from the stage's rows); s = pred / tau +
   Gumbel(0, 1) with tau = ``temperature`` (0.5), and the round trains on the k **smallest** s, k =
   ``ratio`` x pool (0.2) -- exactly the code's rule, which is not the textbook Gumbel-top-k of
   exp(-s/tau) (that would take the largest of -s/tau + G); with post-step-loss labels, smaller is
   better, so the code's sign is kept.

Multi-process (``accelerate launch``, DDP only: a probe needs the whole optimizer state on one
rank, so FSDP and ZeRO are refused at ``recipe validate``): every rank probes its share of the
candidates (``rank::world``) on its own full replica and the labels are gathered; rank 0 fits
the influence model and selects; the selection is broadcast, so every rank trains on the same rows.

Recorded: per round (``hooks/mates/log.jsonl``) the probe count and seconds per probe, the
reference loss before probing, the influence model's Spearman, the pool and the rows selected per
source, and the distribution of predicted influence of selected vs dropped candidates; every pool
candidate of every round gets a ledger record (kept or ``mates_not_selected``, with the round and
its predicted influence as the score). Each round's selection, pool and predictions go into the
checkpoint's hook state (and ``hooks/mates/round-<r>.npz``, to inspect), so ``--resume`` replays
the rounds already chosen and chooses the later ones as an uninterrupted run would.

Deviations, stated: the official pool for a stage is fresh shards of a web corpus; here each round's
pool is a fresh seeded draw from the stage's own rows (so a row may be a candidate again in a later
round, as in multi-epoch training); probes are drawn from that pool rather than from separate
shards; the official run probes 80,000 candidates per round, the miniatures a few hundred; the
official reference set is LAMBADA with loss on the target word only, here the reference rows'
target tokens as the stage trains on them (``eval.metrics.loss.encode``).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from training.hooks import HOOKS
from training.hooks.base import Hook, HookError, broadcast, world
from training.hooks.samplers import StreamSampler, rng
from training.mates_rounds import ROUND_ARRAYS, gather_in_order, gumbel_select, pack_arrays, sha_of, unpack_arrays

_COLLATOR_KEYS = ("input_ids", "attention_mask", "completion_mask", "assistant_masks", "position_ids")
_MODEL_KEYS = ("input_ids", "attention_mask", "labels", "position_ids")


class InfluenceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    encoder: str = Field("all-MiniLM-L6-v2", description="a sentence-transformers / BERT folder (offline)")
    max_length: int = Field(256, ge=8)
    lr: float = Field(5e-5, gt=0)
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(5, ge=1)
    weight_decay: float = Field(0.01, ge=0)
    holdout: float = Field(0.1, gt=0, lt=1, description="share of probes held out for the Spearman check")


class MatesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    select_every: int = Field(..., ge=1, description="optimizer steps per selection round (the official 10k)")
    warmup_steps: int | None = Field(None, ge=1, description="steps on a random selection first (default select_every)")
    ratio: float = Field(0.2, gt=0, le=1, description="share of each round's pool that is trained on (k = N/5)")
    probes: int = Field(200, ge=10, description="candidates probed per round for oracle labels")
    reference: str | None = Field(None, description="which of the stage's validation sets is the reference set "
                                                    "(default: all of them)")
    reference_rows: int = Field(1024, ge=1, description="at most this many reference rows (seeded draw)")
    temperature: float = Field(0.5, gt=0, description="tau of the Gumbel selection")
    influence: InfluenceSpec = InfluenceSpec()


class MatesSampler(StreamSampler):
    """One epoch = the whole run: round 0 (warm-up) a random draw, round r >= 1 the hook's selection,
    prepared when the dataloader first reaches it."""

    def __init__(self, hook, n: int, seed: int, total: int, first: int, per_round: int):
        super().__init__(n, seed)
        self.hook, self.total, self.first, self.per_round = hook, total, first, per_round

    def bounds(self) -> list[int]:
        sizes, left = [], self.total
        while left > 0:
            size = min(left, self.first if not sizes else self.per_round)
            sizes.append(size)
            left -= size
        return sizes

    def round_indices(self, r: int, size: int) -> np.ndarray:
        if r == 0:
            reps = int(math.ceil(size / self.n))
            return np.concatenate([rng(self.seed, 5150, c).permutation(self.n) for c in range(reps)])[:size]
        return self.hook.selection(r, size)

    def __iter__(self):
        for r, size in enumerate(self.bounds()):
            yield from self.round_indices(r, size).tolist()

    def indices(self, epoch: int) -> np.ndarray:
        parts = []
        for r, size in enumerate(self.bounds()):
            if r > 0 and r not in self.hook.rounds:
                break
            parts.append(self.round_indices(r, size))
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return self.total


@HOOKS.register("mates")
class Mates(Hook):
    name = "mates"
    Params = MatesParams
    stage_kinds = frozenset({"sft", "pretrain"})
    launchers = frozenset({"ddp"})

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        # round -> {"record": its log record, "selected": indices trained on, in order; on rank 0 also
        # "pool", "pred" (predicted influence), "keep"}: all of it goes into the checkpoint's hook state
        self.rounds: dict[int, dict] = {}

    # ------------------------------------------------------------------ validate
    @classmethod
    def check(cls, params: MatesParams, stage) -> str | None:
        if stage.max_steps is None:
            return "needs the stage's max_steps (rounds are counted in optimizer steps)"
        if params.select_every >= stage.max_steps:
            return (f"select_every {params.select_every} is not below the stage's max_steps {stage.max_steps}: "
                    "no selection round would run")
        if (params.warmup_steps or params.select_every) >= stage.max_steps:
            return f"warmup_steps {params.warmup_steps} is not below the stage's max_steps {stage.max_steps}"
        if stage.validation is None:
            return "needs a reference set: declare `validation: {data: ...}` on the stage (MATES probes its loss)"
        return None

    @classmethod
    def check_rows(cls, params: MatesParams, rows, validation: dict, stage) -> str | None:
        if params.reference is not None and params.reference not in validation:
            return f"mates.reference: {params.reference!r} is not one of the stage's validation sets {sorted(validation)}"
        ref = [validation[params.reference]] if params.reference else list(validation.values())
        if not sum(len(v) for v in ref):
            return "mates: the reference set (the stage's validation data) has no rows"
        per_round = params.select_every * stage.batch_size * getattr(stage, "grad_accum", 1)
        pool = int(math.ceil(per_round / params.ratio))
        if per_round > len(rows):
            return (f"mates: a round trains on {per_round} rows (select_every x batch) but the stage's dataset has "
                    f"{len(rows)}; lower select_every or the batch, or give the stage more rows")
        if params.probes > min(pool, len(rows)):
            return f"mates.probes {params.probes} exceeds the round's pool of {min(pool, len(rows))} candidates"
        return None

    # ------------------------------------------------------------------ training
    def sampler(self, trainer):
        args = trainer.args
        per_update = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        self.per_update = per_update
        n = len(trainer.train_dataset)
        first = (self.params.warmup_steps or self.params.select_every) * per_update
        per_round = self.params.select_every * per_update
        if per_round > n:
            raise HookError(f"mates: a round trains on {per_round} rows but the stage's dataset has {n}")
        return MatesSampler(self, n, self.ctx.seed, args.max_steps * per_update, first, per_round)

    def selection(self, r: int, size: int) -> np.ndarray:
        if r not in self.rounds:
            self._select_round(r, size)
        return np.asarray(self.rounds[r]["selected"], dtype=np.int64)[:size]

    def _folder(self) -> Path:
        folder = Path(self.ctx.stage_dir) / "hooks" / self.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _select_round(self, r: int, size: int) -> None:
        import torch

        trainer, p = self.trainer, self.params
        rank, size_w = world()
        ds = trainer.train_dataset
        n = len(ds)
        pool_size = min(n, int(math.ceil(size / p.ratio)))
        pool = np.sort(rng(self.ctx.seed, 6000, r).choice(n, size=pool_size, replace=False))
        probe_ids = pool[rng(self.ctx.seed, 7000, r).choice(pool_size, size=min(p.probes, pool_size), replace=False)]
        t0 = time.perf_counter()
        mine = probe_ids[rank::size_w]
        labels_mine, ref_before = self._probe(mine)
        probe_seconds = (time.perf_counter() - t0) / max(1, len(mine))
        labels = gather_in_order(labels_mine, len(probe_ids), rank, size_w)
        record = None
        if rank == 0:
            from training.influence_model import InfluenceModel

            tok = trainer.processing_class
            tok = getattr(tok, "tokenizer", tok)
            texts = {int(i): tok.decode(ds[int(i)]["input_ids"], skip_special_tokens=True) for i in pool}
            im = p.influence
            with torch.random.fork_rng():  # the influence model's seeding leaves the trainer's RNG alone
                model = InfluenceModel(im.encoder, max_length=im.max_length, lr=im.lr, batch_size=im.batch_size,
                                       epochs=im.epochs, weight_decay=im.weight_decay, holdout=im.holdout,
                                       seed=self.ctx.seed + r)
                fit = model.fit([texts[int(i)] for i in probe_ids], labels)
                t1 = time.perf_counter()
                pred = model.predict([texts[int(i)] for i in pool])
            del model
            k = min(size, pool_size)
            chosen = gumbel_select(pred, k, p.temperature, self.ctx.seed, r)
            selected = pool[chosen]
            # trained in a seeded order (the official pipeline writes the selection, then shuffles)
            selected = selected[rng(self.ctx.seed, 8000, r).permutation(len(selected))]
            keep = np.zeros(pool_size, dtype=bool)
            keep[chosen] = True
            path = self._folder() / f"round-{r}.npz"  # for the user to inspect; the state is authoritative
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, selected=selected, pool=pool, pred=pred, keep=keep, probe_ids=probe_ids,
                     labels=np.asarray(labels))
            tmp.replace(path)
            sources = ds["source"] if "source" in ds.column_names else [None] * n
            by_source: dict[str, list[int]] = {}
            for j, i in enumerate(pool):
                by_source.setdefault(str(sources[int(i)]), [0, 0])[0 if keep[j] else 1] += 1
            record = {"round": r, "step": int(trainer.state.global_step), "probes": int(len(probe_ids)),
                      "seconds_per_probe": probe_seconds, "reference_loss_before": ref_before,
                      "label_mean": float(np.mean(labels)), "label_std": float(np.std(labels)),
                      "spearman": fit.spearman, "best_epoch": fit.best_epoch, "fit_seconds": fit.seconds,
                      "predict_seconds": time.perf_counter() - t1, "pool": int(pool_size), "selected": int(k),
                      "selected_by_source": {s: v[0] for s, v in by_source.items()},
                      "dropped_by_source": {s: v[1] for s, v in by_source.items()},
                      "probes_per_rank": [len(probe_ids[k::size_w]) for k in range(size_w)],
                      "selected_sha": sha_of(selected),
                      "predicted_selected_mean": float(pred[keep].mean()),
                      "predicted_dropped_mean": float(pred[~keep].mean()) if (~keep).any() else None}
            self.log(record)
            self.rounds[r] = {"record": record, "selected": selected, "pool": pool, "pred": pred, "keep": keep}
        shared = broadcast({"selected": selected.tolist(), "record": record} if rank == 0 else None)
        if rank != 0:
            self.rounds[r] = {"record": shared["record"], "selected": np.asarray(shared["selected"], dtype=np.int64)}
            self.log({"round": r, "probed_here": int(len(mine)), "selected_sha": sha_of(self.rounds[r]["selected"])})

    # ------------------------------------------------------------------ probing
    def _reference(self):
        from eval.metrics.loss import encode

        tok = self.trainer.processing_class
        tok = getattr(tok, "tokenizer", tok)
        sets = self.ctx.validation
        rows = [r for name in ([self.params.reference] if self.params.reference else sorted(sets)) for r in sets[name]]
        if len(rows) > self.params.reference_rows:
            pick = rng(self.ctx.seed, 9000).choice(len(rows), size=self.params.reference_rows, replace=False)
            rows = [rows[int(i)] for i in np.sort(pick)]
        return tok, [encode(tok, r, "", self.ctx.stage.max_length) for r in rows]

    def _probe(self, candidates: np.ndarray) -> tuple[list[float], float]:
        """Post-step reference loss of each candidate: one step of the stage's own optimizer, in place
        on the trainer's model, from the current weights and optimizer state, both restored after
        every probe (a deep copy of the model would not do: accelerate patches ``forward`` on the
        instance, and a copy's forward still runs the original's weights)."""
        import torch

        from eval.metrics.loss import score_encoded

        trainer = self.trainer
        if not hasattr(self, "_ref"):
            self._ref = self._reference()
        tok, ref = self._ref
        model = trainer.accelerator.unwrap_model(trainer.model)
        opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
        params = [q for q in model.parameters() if q.requires_grad]
        saved = [q.detach().clone() for q in params]
        saved_opt = copy.deepcopy(opt.state_dict())
        was_training = model.training
        clip = trainer.args.max_grad_norm
        device = params[0].device

        def reference_loss() -> float:
            model.eval()
            pairs = score_encoded(model, tok, ref, max(self.ctx.stage.batch_size, 32))
            model.train(was_training)
            return sum(a for a, _ in pairs) / max(1, sum(c for _, c in pairs))

        def restore() -> None:
            with torch.no_grad():
                for q, v in zip(params, saved):
                    q.copy_(v)
            opt.load_state_dict(copy.deepcopy(saved_opt))
            opt.zero_grad(set_to_none=True)

        out = []
        try:
            before = reference_loss()
            for i in candidates.tolist():
                row = trainer.train_dataset[int(i)]
                batch = trainer.data_collator([{k: row[k] for k in _COLLATOR_KEYS if k in row}])
                batch = {k: v.to(device) for k, v in batch.items() if k in _MODEL_KEYS}
                model.train()
                opt.zero_grad(set_to_none=True)
                model(**batch).loss.backward()
                if clip and clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, clip)
                opt.step()
                out.append(reference_loss())
                restore()
        finally:
            restore()
        return out, before

    # ------------------------------------------------------------------ recording
    def callbacks(self):
        from transformers import TrainerCallback

        hook = self

        class Ledger(TrainerCallback):
            def on_train_end(self, args, state, control, **kwargs):
                if hook.trainer.is_world_process_zero():
                    hook.write_ledger()

        return [Ledger()]

    def write_ledger(self) -> None:
        from curation import ledger as ledger_mod

        ds = self.trainer.train_dataset
        ids = ds["id"] if "id" in ds.column_names else [str(i) for i in range(len(ds))]
        sources = ds["source"] if "source" in ds.column_names else [None] * len(ds)
        tables = []
        stage = self.ctx.stage.name or Path(self.ctx.stage_dir).name
        for r in sorted(self.rounds):
            z = self.rounds[r]
            pool, keep, pred = z["pool"], z["keep"], z["pred"]
            tables.append(ledger_mod.records_table(
                f"stage:{stage}", f"mates:round{r}", r, [ids[int(i)] for i in pool], [sources[int(i)] for i in pool],
                keep.tolist(), score=pred.astype(float), reason=[None if k else "mates_not_selected" for k in keep],
                detail=[f"round={r} predicted influence={v:.4g}" for v in pred]))
        if tables:
            ledger_mod.write(tables, self._folder() / "ledger.parquet")

    def state(self) -> dict:
        return {"rounds": {str(k): {"record": v["record"], "arrays": pack_arrays({a: v[a] for a in ROUND_ARRAYS if a in v})}
                           for k, v in self.rounds.items()}}

    def load_state(self, state: dict) -> None:
        self.rounds = {int(k): {"record": v["record"], **unpack_arrays(v["arrays"])} for k, v in (state.get("rounds") or {}).items()}

    def summary(self) -> dict:
        recs = [self.rounds[r]["record"] for r in sorted(self.rounds)]
        if not recs:
            return {}
        out = {"spearman": [x["spearman"] for x in recs], "seconds_per_probe": [x["seconds_per_probe"] for x in recs],
               "probes": [x["probes"] for x in recs],
               "selected_by_source": {s: [x["selected_by_source"].get(s, 0) for x in recs]
                                      for s in sorted({s for x in recs for s in x["selected_by_source"]})}}
        z = self.rounds[max(self.rounds)]
        if "pred" in z:
            out["predicted_influence_distribution"] = {"selected": z["pred"][z["keep"]].tolist(),
                                                       "dropped": z["pred"][~z["keep"]].tolist()}
        return out
