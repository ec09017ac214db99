"""``meco``: Metadata Conditioning then Cooldown (Gao et al. 2025, "Metadata Conditioning
Accelerates Language Model Pre-training"; princeton-pli/MeCo, methods.md section 3).

**Format** (``datatools/mds_pack_data.py`` with ``--add_url --add_metadata_prefix "URL: "
--add_metadata_suffix "\\n\\n" --use_short_url --add_metadata_mask``): each document becomes
``"URL: " + host + "\\n\\n" + document``, where host is the URL without ``http(s)://``, cut at the
first ``/`` (``en.wikipedia.org`` stays whole); the metadata tokens are context only -- their
labels are masked, the loss is on the document's tokens (its first token is still predicted).
Here the metadata is a key of the rows' ``metadata`` (``field``, default ``url``) and ``template``
frames it. Rows without the key are dropped with a ledger record (``no_metadata:<field>``); if no
row has it, the stage stops with an error.

**Cooldown** (``run_configs/dclm_1.6b_160b_meco_stage{1,2}.yaml``): the last ``cooldown`` share of
the training samples (0.1: stage 2 resumes checkpoint 36000 of 40000) are plain documents, on the
same learning-rate schedule with the optimizer state kept -- one stage here, not two: the stage's
dataset holds each document with and without its prefix, and the sampler switches from the one to
the other at that point of the index stream (logged with its step).

Deviations, stated: the documents are not packed (``packing: false``, checked at validate): MeCo
packs to 8192 tokens but with variable-length attention, so no document attends to another, which
is what one sequence per document gives (at the cost of padding); MeCo's cooldown reads a separate
no-URL split of new documents, here the stage's own documents continue, without their prefix.
Conditional inference is the eval's ``prefix:``.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from training.hooks import HOOKS
from training.hooks.base import Hook, HookError
from training.hooks.samplers import FunctionSampler, rng

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class MeCoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cooldown: float = Field(0.1, ge=0, lt=1, description="share of the training samples, at the end, without metadata")
    field: str = Field("url", description="the metadata key that conditions each document")
    template: str = Field("URL: {value}\n\n", description="how the metadata is written before the document")
    short_url: bool = Field(True, description="keep the host only (scheme removed, cut at the first '/')")


def host(url: str) -> str:
    """``https://en.wikipedia.org/wiki/X`` -> ``en.wikipedia.org``."""
    return _SCHEME.sub("", url.strip()).split("/", 1)[0]


def prefix_of(metadata: str | None, p: MeCoParams) -> str | None:
    value = json.loads(metadata or "{}").get(p.field)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    value = str(value)
    return p.template.format(value=host(value) if p.short_url and p.field == "url" else value)


@HOOKS.register("meco")
class MeCo(Hook):
    name = "meco"
    Params = MeCoParams
    stage_kinds = frozenset({"pretrain"})
    row_kinds = frozenset({"text"})

    @classmethod
    def check_rows(cls, params: MeCoParams, rows, validation: dict, stage) -> str | None:
        if not any(prefix_of(m, params) is not None for m in rows["metadata"]):
            return (f"meco: no row of dataset {stage.data!r} has the metadata key {params.field!r} "
                    f"(e.g. {{\"{params.field}\": \"https://en.wikipedia.org/wiki/X\"}}); declare it with the "
                    "source's `fields: {metadata: [...]}`")
        return None

    @classmethod
    def prepare(cls, params: MeCoParams, rows, ctx):
        """The stage's rows, twice: first with their metadata prefix, then plain (the cooldown)."""
        from curation import ledger as ledger_mod
        from curation.rows import rows_to_dataset

        keep, drop_ids, drop_src = [], [], []
        for r in rows:
            pre = prefix_of(r["metadata"], params)
            if pre is None:
                drop_ids.append(r["id"])
                drop_src.append(r["source"])
            else:
                keep.append((r, pre))
        folder = ctx.stage_dir / "hooks" / cls.name
        folder.mkdir(parents=True, exist_ok=True)
        stage_name = ctx.stage.name or ctx.stage_dir.name
        ledger_mod.write([ledger_mod.records_table(f"stage:{stage_name}", "meco", 0, drop_ids, drop_src,
                                                   [False] * len(drop_ids), reason=[f"no_metadata:{params.field}"] * len(drop_ids))],
                         folder / "ledger.parquet")
        if not keep:
            raise HookError(f"meco: no row of dataset {ctx.stage.data!r} has the metadata key {params.field!r} "
                            f"(e.g. {{\"{params.field}\": \"https://en.wikipedia.org/wiki/X\"}}); declare it with the "
                            "source's `fields: {metadata: [...]}`")
        out = []
        for phase_prefix in ("meta", "plain"):
            for r, pre in keep:
                meta = json.loads(r["metadata"] or "{}")
                meta["meco_prefix"] = pre if phase_prefix == "meta" else ""
                out.append({**r, "metadata": json.dumps(meta, sort_keys=True)})
        ds = rows_to_dataset([])
        ds = ds.from_list(out, features=ds.features)
        (folder / "prepared.json").write_text(json.dumps({"documents": len(keep), "dropped": len(drop_ids)}))
        return ds

    def sampler(self, trainer):
        args = trainer.args
        n_rows = len(trainer.train_dataset)
        n = n_rows // 2
        per_update = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        total = args.max_steps * per_update if args.max_steps and args.max_steps > 0 else int(math.ceil(args.num_train_epochs * n))
        switch = int(math.floor((1 - self.params.cooldown) * total))
        self.switch_sample, self.switch_step = switch, switch // per_update
        seed = self.ctx.seed

        def epoch_indices(epoch: int):
            order = rng(seed, epoch).permutation(n)
            position = epoch * n + np.arange(n)
            return np.where(position < switch, order, order + n)

        self.log({"documents": n, "planned_samples": total, "cooldown_from_sample": switch,
                  "cooldown_from_step": self.switch_step})
        return FunctionSampler(n_rows, seed, epoch_indices, length=lambda e: n)

    def summary(self) -> dict:
        return {"cooldown_from_step": getattr(self, "switch_step", None)}
