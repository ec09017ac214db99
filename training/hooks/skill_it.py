"""``skill_it``: Skill-it's online data mixing over skills (Chen et al. 2023, "Skill-it! A Data-Driven
Skills Framework for Understanding and Training Language Models"; HazyResearch/skill-it
``trainer/mw_trainer.py``, methods.md section 1).

Rows carry a ``skill``; the stage's validation sets are split by skill (``validation: {by: skill}``):
the evaluation skills. The skills graph A (training skills x evaluation skills) is given
(``graph: {matrix, skills, eval_skills}``; or ``edges: [[prerequisite, skill], ...]``, a binary graph
with A_ii = 1 and the official 0.5 for each edge), or estimated by the official brute-force rule
from short runs on each skill from the stage's starting model (``estimate: {steps, lr}``;
HazyResearch/aioli ``skills_graph``):  A_ij = (L_j(f0) - L_j(f_i)) / L_j(f0)  -- cached, its cost
listed by ``recipe plan``, drawn as a heat map in the card.

Online mixture (multiplicative weights over rounds of ``update_steps`` optimizer steps):
p_1 ∝ exp(eta A 1);  p_{t+1,i} ∝ exp(eta sum_{tau in window} sum_j A_ij L_j(f_tau)), the window being
the last ``window`` (3) evaluation checkpoints (the code's ``mw_window``); with ``targets`` (fine-tuning
toward some skills) A's columns are restricted to them and the window is averaged, as the official
code; ``normalize_loss`` uses L/L(f0). Each round draws n_i rows of skill i without replacement
(cycling through the skill when it runs out), then shuffles them.

Deviations, stated: the round's total is exactly ``update_steps`` x the global batch (n_i by the
largest remainder of update_steps x batch x p_i, where the official code floors and trains a
shorter round); evaluation runs one step before each round ends (the dataloader fetches one
micro-batch ahead, so the first batch of round t+1 is drawn at the start of round t's last step:
evaluating then is the latest evaluation that can still inform it; the log says which step each
round's weights come from). ``eta_schedule``, ``dynamic_lambda`` and ``ignore_lone_nodes`` are not
implemented.
"""

from __future__ import annotations

import copy
import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.hooks import HOOKS
from training.hooks.base import Hook, HookError, broadcast
from training.hooks.samplers import StreamSampler, rng


class EstimateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: int = Field(50, ge=1, description="optimizer steps of each short run (one per training skill)")
    lr: float | None = Field(None, gt=0, description="default: the stage's lr")
    batch_size: int | None = Field(None, ge=1, description="default: the stage's batch_size")


class GraphSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matrix: list[list[float]] | None = None
    skills: list[str] | None = Field(None, description="the matrix's rows (training skills), in order")
    eval_skills: list[str] | None = Field(None, description="its columns (default: the same as skills)")
    edges: list[list[str]] | None = Field(None, description="[prerequisite, skill] pairs of a binary graph")
    estimate: EstimateSpec | None = None

    @model_validator(mode="after")
    def _one(self):
        given = sum(x is not None for x in (self.matrix, self.edges, self.estimate))
        if given != 1:
            raise ValueError("give exactly one of matrix, edges, estimate")
        if self.matrix is not None and not self.skills:
            raise ValueError("a matrix needs `skills` (its rows, in order)")
        if any(len(e) != 2 for e in self.edges or []):
            raise ValueError("each edge is [prerequisite, skill]")
        return self


class SkillItParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    graph: GraphSpec
    eta: float = Field(0.5, gt=0, description="LEGO 0.5, addition 0.1, NI fine-tuning 0.8 (official scripts)")
    update_steps: int = Field(100, ge=2, description="optimizer steps per round")
    window: int = Field(3, ge=1, description="evaluation checkpoints the update sums over (mw_window)")
    targets: list[str] | None = Field(None, description="evaluation skills to fine-tune toward (columns of A)")
    normalize_loss: bool = False


def binary_graph(skills: list[str], edges: list[list[str]]) -> np.ndarray:
    a = np.eye(len(skills))
    for pre, post in edges:
        a[skills.index(pre), skills.index(post)] = 0.5  # the official off-diagonal value for a binary edge
    return a


def largest_remainder(p: np.ndarray, total: int) -> np.ndarray:
    raw = p * total
    counts = np.floor(raw).astype(np.int64)
    short = total - counts.sum()
    if short > 0:
        counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return counts


class SkillItSampler(StreamSampler):
    """One epoch = the whole run: rounds of ``per_round`` indices, round r drawn with p_r when reached."""

    def __init__(self, hook, skill_rows: list[np.ndarray], total: int, per_round: int, seed: int, n: int):
        super().__init__(n, seed)
        self.hook, self.skill_rows, self.total, self.per_round = hook, skill_rows, total, per_round

    def round_indices(self, r: int, p: np.ndarray) -> np.ndarray:
        counts = largest_remainder(np.asarray(p), self.per_round)
        out = []
        for i, rows in enumerate(self.skill_rows):
            done = sum(int(largest_remainder(np.asarray(self.hook.history[q]), self.per_round)[i]) for q in range(r))
            take, chunks, start = int(counts[i]), [], done
            while take > 0:
                cycle, pos = divmod(start, len(rows))
                perm = rows[rng(self.seed, 31 + i, cycle).permutation(len(rows))]
                part = perm[pos:pos + take]
                chunks.append(part)
                take -= len(part)
                start += len(part)
            out.extend(chunks)
        idx = np.concatenate(out) if out else np.zeros(0, np.int64)
        return idx[rng(self.seed, 7777, r).permutation(len(idx))]

    def _rounds(self) -> int:
        return int(math.ceil(self.total / self.per_round))

    def __iter__(self):
        left = self.total
        for r in range(self._rounds()):
            idx = self.round_indices(r, self.hook.weights_for_round(r))[:left]
            left -= len(idx)
            yield from idx.tolist()

    def indices(self, epoch: int) -> np.ndarray:
        parts = [self.round_indices(r, self.hook.history[r]) for r in range(self._rounds()) if r in self.hook.history]
        return np.concatenate(parts)[: self.total] if parts else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return self.total


@HOOKS.register("skill_it")
class SkillIt(Hook):
    name = "skill_it"
    Params = SkillItParams
    stage_kinds = frozenset({"sft", "pretrain"})

    def __init__(self, params, ctx):
        super().__init__(params, ctx)
        self.history: dict[int, list[float]] = {}
        self.losses: dict[int, dict[str, float]] = {}
        self.base_losses: dict[str, float] | None = None
        self.sources: dict[int, int | None] = {}

    # ------------------------------------------------------------------ validate / prepare
    @classmethod
    def check(cls, params: SkillItParams, stage) -> str | None:
        if stage.max_steps is None:
            return "needs the stage's max_steps (the rounds are counted in optimizer steps)"
        if stage.validation is None or stage.validation.by != "skill":
            return "needs validation sets per skill: `validation: {data: ..., by: skill}` on the stage"
        if params.update_steps > stage.max_steps:
            return f"update_steps {params.update_steps} is more than the stage's max_steps {stage.max_steps}"
        return None

    @classmethod
    def check_rows(cls, params: SkillItParams, rows, validation: dict, stage) -> str | None:
        try:
            cls._resolve(params, rows, validation, estimate_with=None)
        except HookError as exc:
            return str(exc)
        return None

    @classmethod
    def _resolve(cls, params: SkillItParams, rows, validation: dict, estimate_with):
        """(A restricted to the data's skills x the validation sets, training skills, evaluation skills);
        ``estimate_with(params, rows)`` estimates a graph (None: checks only)."""
        skills = rows["skill"]
        missing = [r for r, s in zip(rows["id"], skills) if not s]
        if missing:
            raise HookError(f"skill_it: {len(missing)} of {len(rows)} rows of the stage's dataset have no "
                            f"skill (e.g. {missing[:3]}); declare `skill:` on their source or a `fields.skill` column")
        train_skills = sorted(set(skills))
        eval_skills = sorted(validation)
        g = params.graph
        if g.matrix is not None:
            a = np.asarray(g.matrix, dtype=float)
            cols = g.eval_skills or g.skills
            if a.shape != (len(g.skills), len(cols)):
                raise HookError(f"skill_it.graph.matrix is {a.shape[0]}x{a.shape[1]}, but it names {len(g.skills)} skills "
                                f"x {len(cols)} evaluation skills")
            rows_, cols_ = list(g.skills), list(cols)
        elif g.edges is not None:
            names = sorted(set(train_skills) | {s for e in g.edges for s in e})
            a, rows_, cols_ = binary_graph(names, g.edges), names, names
        else:
            if estimate_with is None:
                return None
            a, rows_, cols_ = estimate_with(params, rows), train_skills, eval_skills
        if sorted(rows_) != train_skills:
            raise HookError(f"skill_it: the graph's training skills {sorted(rows_)} are not the data's {train_skills}")
        if set(cols_) != set(eval_skills):
            missing_sets = sorted(set(cols_) - set(eval_skills))
            raise HookError(f"skill_it: the graph's evaluation skills {sorted(cols_)} do not match the validation sets "
                            f"{eval_skills}" + (f": no validation rows for {missing_sets}" if missing_sets else ""))
        for t in params.targets or []:
            if t not in eval_skills:
                raise HookError(f"skill_it.targets: {t!r} is not an evaluation skill {eval_skills}")
        keep = [cols_.index(c) for c in eval_skills]
        return a[[rows_.index(s) for s in train_skills]][:, keep], train_skills, eval_skills

    @classmethod
    def prepare(cls, params: SkillItParams, rows, ctx):
        """Resolve (or estimate) the graph and hand it to the job."""
        import json

        a, train_skills, eval_skills = cls._resolve(params, rows, ctx.validation,
                                                    estimate_with=lambda p, r: _cached_estimate(p, r, ctx))
        path = ctx.stage_dir / "hooks" / cls.name / "graph.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"matrix": a.tolist(), "rows": train_skills, "cols": eval_skills}))
        ctx.inputs["skill_it_graph"] = str(path)
        return rows

    @classmethod
    def plan_cost(cls, params: SkillItParams, stage) -> str | None:
        e = params.graph.estimate
        return None if e is None else f"skills graph: one short run of {e.steps} steps per training skill"

    # ------------------------------------------------------------------ training
    def sampler(self, trainer):
        import json

        g = json.loads(open(self.ctx.inputs["skill_it_graph"]).read())
        self.A = np.asarray(g["matrix"], dtype=float)
        self.skills, self.eval_skills = g["rows"], g["cols"]
        cols = [self.eval_skills.index(t) for t in self.params.targets] if self.params.targets else list(range(len(self.eval_skills)))
        self.cols = cols
        skill_of = trainer.train_dataset["skill"]
        rows = [np.flatnonzero(np.asarray([s == k for s in skill_of])) for k in self.skills]
        args = trainer.args
        per_update = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(1, args.world_size)
        total = args.max_steps * per_update
        return SkillItSampler(self, rows, total, self.params.update_steps * per_update, self.ctx.seed, len(skill_of))

    def weights_for_round(self, r: int) -> list[float]:
        if r in self.history:
            return self.history[r]
        a = self.A[:, self.cols]
        eta = self.params.eta
        if r == 0:
            score, source = a.sum(1), None
        else:
            steps = sorted(s for s in self.losses if s > 0)[-self.params.window:]
            if not steps:
                score, source = a.sum(1), None
            else:
                mats = []
                for s in steps:
                    L = np.asarray([self.losses[s].get(self.eval_skills[j], np.nan) for j in self.cols])
                    if self.params.normalize_loss and self.base_losses:
                        L = L / np.asarray([self.base_losses[self.eval_skills[j]] for j in self.cols])
                    mats.append(a @ L)
                score = np.mean(mats, axis=0) if self.params.targets else np.sum(mats, axis=0)
                source = steps[-1]
        z = eta * score
        p = np.exp(z - z.max())
        p = (p / p.sum()).tolist()
        p = broadcast(p)  # every rank draws with rank 0's weights
        self.history[r] = p
        self.sources[r] = source
        self.log({"round": r, "weights": dict(zip(self.skills, p)), "from_eval_at_step": source,
                  "step": getattr(getattr(self.trainer, "state", None), "global_step", None)})
        return p

    def callbacks(self):
        from transformers import TrainerCallback

        hook, U = self, self.params.update_steps

        class Rounds(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                if hook.params.normalize_loss and hook.base_losses is None:
                    hook.trainer.evaluate()  # L(f0), for normalize_loss

            def on_step_end(self, args, state, control, **kwargs):
                if (state.global_step + 1) % U == 0:  # the last evaluation that can reach the next round
                    control.should_evaluate = True
                return control

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):
                for k, v in (metrics or {}).items():
                    if k.startswith("eval_") and k.endswith("_loss") and k != "eval_loss":
                        skill = k[len("eval_"):-len("_loss")]
                        hook.losses.setdefault(int(state.global_step), {})[skill] = float(v)
                        if state.global_step == 0:
                            hook.base_losses = {**(hook.base_losses or {}), skill: float(v)}

        return [Rounds()]

    def state(self) -> dict:
        return {"history": {str(k): v for k, v in self.history.items()},
                "losses": {str(k): v for k, v in self.losses.items()}, "base_losses": self.base_losses,
                "sources": {str(k): v for k, v in self.sources.items()}}

    def load_state(self, state: dict) -> None:
        self.history = {int(k): v for k, v in (state.get("history") or {}).items()}
        self.losses = {int(k): v for k, v in (state.get("losses") or {}).items()}
        self.base_losses = state.get("base_losses")
        self.sources = {int(k): v for k, v in (state.get("sources") or {}).items()}

    def summary(self) -> dict:
        rounds = sorted(self.history)
        out = {"weights": {s: [self.history[r][i] for r in rounds] for i, s in enumerate(getattr(self, "skills", []))}}
        if hasattr(self, "A"):
            out["graph"] = {"matrix": self.A.tolist(), "rows": self.skills, "cols": self.eval_skills}
        return out


def _cached_estimate(params: SkillItParams, rows, ctx) -> np.ndarray:
    """The estimated graph, from the run's cache under the plan's key when it is there."""
    import json

    cache, key = ctx.run.cache, ctx.inputs.get("cache_key")
    if key and cache.has("hook", key):
        return np.asarray(json.loads((cache.path("hook", key) / "graph.json").read_text())["matrix"])
    a = estimate(params, rows, ctx)
    if key:
        with cache.write("hook", key, {"hook": "skill_it", "estimate": params.graph.estimate.model_dump()}) as tmp:
            (tmp / "graph.json").write_text(json.dumps({"matrix": a.tolist()}))
    return a


def estimate(params: SkillItParams, rows, ctx) -> np.ndarray:
    """A_ij = (L_j(f0) - L_j(f_i)) / L_j(f0), f_i = the start model after a short run on skill i alone
    (AdamW at the stage's lr, the stage's batch; the rows' targets as the stage trains on them)."""
    import torch

    from eval.metrics.loss import encode, score_encoded
    from training.models import load_model, load_tokenizer

    run, stage, e = ctx.run, ctx.stage, params.graph.estimate
    start = ctx.inputs["start_model"]
    with run.load_policy():
        base = load_model(start, dtype="float32")
        tok = load_tokenizer(start)
    eval_skills = sorted(ctx.validation)
    enc_val = {s: [encode(tok, r, "", stage.max_length) for r in ctx.validation[s]] for s in eval_skills}

    def losses(model):
        model.eval()
        out = []
        for s in eval_skills:
            pairs = score_encoded(model, tok, enc_val[s], stage.batch_size)
            out.append(sum(a for a, _ in pairs) / max(1, sum(c for _, c in pairs)))
        return np.asarray(out)

    l0 = losses(base)
    train_skills = sorted(set(rows["skill"]))
    bs, lr = e.batch_size or stage.batch_size, e.lr or stage.lr
    a = np.zeros((len(train_skills), len(eval_skills)))
    for i, skill in enumerate(train_skills):
        torch.manual_seed(ctx.seed + i)
        model = copy.deepcopy(base)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        data = [encode(tok, r, "", stage.max_length) for r in rows.filter(lambda x, s=skill: x["skill"] == s)]
        order = rng(ctx.seed, 91 + i).permutation(len(data))
        for step in range(e.steps):
            batch = [data[order[(step * bs + k) % len(data)]] for k in range(bs)]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((bs, width), tok.pad_token_id or 0)
            tgt = torch.zeros((bs, width), dtype=torch.bool)
            att = torch.zeros((bs, width), dtype=torch.long)
            for k, (x, m) in enumerate(batch):
                ids[k, :len(x)], tgt[k, :len(m)], att[k, :len(x)] = torch.tensor(x), torch.tensor(m, dtype=torch.bool), 1
            logits = model(input_ids=ids, attention_mask=att).logits[:, :-1]
            mask = tgt[:, 1:] & att[:, 1:].bool()
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
            loss = (ce * mask).sum() / mask.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        a[i] = (l0 - losses(model)) / l0
    return a
