"""Learning-rate schedules of a stage: transformers' where it has them, our ``LambdaLR`` where not.

Names (``lr_scheduler`` in a stage) and where their formula comes from:

* ``linear``, ``cosine``, ``constant``, ``constant_with_warmup``, ``cosine_with_min_lr``:
  ``transformers.get_scheduler`` as it is (``schedule.min_lr_ratio`` -> ``min_lr_rate`` of
  ``cosine_with_min_lr``).
* ``wsd`` (warmup-stable-decay; MiniCPM, Hu et al. 2024; Hägele et al. 2024, "Scaling Laws and
  Compute-Optimal Training Beyond Fixed Training Durations"): transformers'
  ``warmup_stable_decay`` (``get_wsd_schedule``). With W warm-up steps, D = ⌈decay_ratio·T⌉ decay
  steps and S = T − W − D stable steps, and p = (t − W − S)/D the decay progress:
  η = η_max·t/W, then η_max, then η_min + (η_max − η_min)·f(p) with f = 1 − p (``linear``),
  ½(1 + cos πp) (``cosine``) or 1 − √p (``1-sqrt``). Deviation we inherit from transformers: with
  ``min_lr_ratio`` > 0 its warm-up rises from η_min rather than from 0.
* ``infinite`` (Singh et al. 2025, "Beyond Cosine Decay: On the effectiveness of Infinite Learning
  Rate Schedule for Continual Pre-training"; methods.md §8): transformers has no such schedule,
  so :func:`infinite_lambda` is ours. Phases over T steps with W = warmup, T_cd = cooldown_ratio·T,
  T_c = constant_ratio·T:
  warm-up η = η_max·t/W; cosine cooldown η = η_c + (η_max − η_c)/2·(1 + cos πp) with
  p = (t − W)/(T_cd − W); constant η_c; exponential anneal
  η = η_c·exp(−ln(η_c/η_min)·(t − T_c)/(T − T_c)), which reaches η_min at t = T.

**Re-warming** (Gupta et al. 2023, "Continual Pre-Training of Large Language Models: How to
(re)warm your model?"; Ibrahim et al. 2024): when a stage starts from an earlier stage's output,
``schedule.rewarm`` (default on, except for ``infinite``) keeps the warm-up but starts it from
``rewarm_from``·η_max instead of 0: factor = r + (1 − r)·t/W. ``rewarm: false`` drops the warm-up;
for ``infinite`` it also skips the cooldown, so a later stage stays at η_c and then anneals, as the
paper prescribes for later tasks (the shape is computed over this stage's own steps).

How it reaches the trainer: every TRL trainer is a ``transformers.Trainer``, whose documented hook
for a custom schedule is ``create_scheduler``; :func:`install` overrides it on the trainer instance
(so the stage runners keep using TRL's classes unchanged) and writes the whole schedule to
``lr_schedule.json`` and ``lr_schedule.png`` in the stage directory once the step count is known.
"""

from __future__ import annotations

import contextvars
import json
import math
from contextlib import contextmanager
from functools import partial
from pathlib import Path

HF_NATIVE = {"linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr"}

# Whether the stage being run starts from an earlier stage's output (set by training.stages.run_stage).
_CONTINUED: contextvars.ContextVar[bool] = contextvars.ContextVar("stage_continued", default=False)


@contextmanager
def stage_context(continued: bool):
    token = _CONTINUED.set(bool(continued))
    try:
        yield
    finally:
        _CONTINUED.reset(token)


def hf_scheduler_type(name: str) -> str:
    """The ``TrainingArguments.lr_scheduler_type`` to pass (ours are replaced by :func:`install`)."""
    return {"wsd": "warmup_stable_decay", "infinite": "constant"}.get(name, name)


def rewarm_enabled(name: str, schedule, continued: bool) -> bool | None:
    """None: not a continued stage (plain warm-up from 0); else whether to warm up again."""
    if not continued:
        return None
    if schedule.rewarm is not None:
        return schedule.rewarm
    return name != "infinite"


def infinite_lambda(step: int, *, total: int, warmup: int, cooldown_end: int, constant_end: int,
                    constant_ratio: float, min_ratio: float, skip_cooldown: bool = False) -> float:
    """The infinite schedule of Singh et al. (2025) as a factor of η_max (see module docstring)."""
    if step < warmup:
        return step / max(1, warmup)
    if skip_cooldown:
        if step < constant_end:
            return constant_ratio
    else:
        if step < cooldown_end:
            p = (step - warmup) / max(1, cooldown_end - warmup)
            return constant_ratio + (1.0 - constant_ratio) / 2.0 * (1.0 + math.cos(math.pi * p))
        if step < constant_end:
            return constant_ratio
    p = min(1.0, (step - constant_end) / max(1, total - constant_end))
    return constant_ratio * math.exp(-math.log(constant_ratio / min_ratio) * p)


def _compose(base, warmup, start, step):  # module-level so the LambdaLR stays picklable
    return start + (1.0 - start) * step / warmup if step < warmup else base(step)


def make_scheduler(optimizer, stage, num_training_steps: int, num_warmup_steps: int, *, continued: bool = False):
    """A ``LambdaLR`` for ``stage.lr_scheduler`` over ``num_training_steps`` optimizer steps."""
    from torch.optim.lr_scheduler import LambdaLR
    from transformers import get_scheduler

    name, sched = stage.lr_scheduler, stage.schedule
    rewarm = rewarm_enabled(name, sched, continued)
    warmup = 0 if rewarm is False else num_warmup_steps
    total = max(1, num_training_steps)
    if name == "infinite":
        min_ratio = sched.min_lr_ratio if sched.min_lr_ratio is not None else 0.01
        if min_ratio <= 0 or min_ratio >= sched.constant_lr_ratio:
            raise ValueError("infinite schedule: schedule.min_lr_ratio must be in (0, constant_lr_ratio)")
        cooldown_end = max(warmup, round(sched.cooldown_ratio * total))
        constant_end = max(cooldown_end, round(sched.constant_ratio * total))
        fn = partial(infinite_lambda, total=total, warmup=warmup, cooldown_end=cooldown_end,
                     constant_end=constant_end, constant_ratio=sched.constant_lr_ratio, min_ratio=min_ratio,
                     skip_cooldown=rewarm is False)
        scheduler = LambdaLR(optimizer, fn)
    else:
        kwargs: dict = {}
        if name == "wsd":
            kwargs = {"num_decay_steps": max(1, math.ceil(sched.decay_ratio * total)), "decay_type": sched.decay,
                      "min_lr_ratio": sched.min_lr_ratio or 0.0}
            warmup = min(warmup, total - kwargs["num_decay_steps"])
        elif name == "cosine_with_min_lr":
            kwargs = {"min_lr_rate": sched.min_lr_ratio or 0.0}
        scheduler = get_scheduler(hf_scheduler_type(name), optimizer, num_warmup_steps=warmup,
                                  num_training_steps=total, scheduler_specific_kwargs=kwargs)
    if rewarm and warmup > 0 and sched.rewarm_from > 0:
        scheduler.lr_lambdas = [partial(_compose, f, warmup, sched.rewarm_from) for f in scheduler.lr_lambdas]
        for group, base_lr, f in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base_lr * f(scheduler.last_epoch)
    return scheduler


def schedule_values(stage, num_training_steps: int, num_warmup_steps: int, *, continued: bool = False) -> list[float]:
    """The lr at every optimizer step 0..T-1 (built on a throwaway optimizer)."""
    import torch

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=stage.lr)
    sched = make_scheduler(opt, stage, num_training_steps, num_warmup_steps, continued=continued)
    return [stage.lr * sched.lr_lambdas[0](t) for t in range(num_training_steps)]


def plot_schedule(values: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(range(len(values)), values, lw=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_schedule(stage, stage_dir: Path, num_training_steps: int, num_warmup_steps: int, continued: bool) -> None:
    values = schedule_values(stage, num_training_steps, num_warmup_steps, continued=continued)
    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    info = {"lr_scheduler": stage.lr_scheduler, "schedule": stage.schedule.model_dump(), "steps": num_training_steps,
            "warmup_steps": num_warmup_steps, "continued": continued,
            "rewarm": rewarm_enabled(stage.lr_scheduler, stage.schedule, continued), "lr": values}
    (stage_dir / "lr_schedule.json").write_text(json.dumps(info))
    extra = f", re-warm from {stage.schedule.rewarm_from:g}" if info["rewarm"] else (", no re-warm" if continued else "")
    plot_schedule(values, stage_dir / "lr_schedule.png", f"{stage.lr_scheduler} (peak {stage.lr:g}, {num_training_steps} steps{extra})")


def install(trainer, stage, stage_dir: Path | None = None, continued: bool | None = None) -> None:
    """Make ``trainer`` build its scheduler with :func:`make_scheduler` and record it.

    ``continued`` defaults to the value set by ``training.stages.run_stage`` for this stage."""
    if continued is None:
        continued = _CONTINUED.get()
    out = Path(stage_dir or trainer.args.output_dir)

    def create_scheduler(num_training_steps: int, optimizer=None):
        if trainer.lr_scheduler is None:
            warmup = trainer.args.get_warmup_steps(num_training_steps)
            trainer.lr_scheduler = make_scheduler(optimizer or trainer.optimizer, stage, num_training_steps, warmup,
                                                  continued=continued)
            trainer._created_lr_scheduler = True
            if trainer.is_world_process_zero():
                write_schedule(stage, out, num_training_steps, warmup, continued)
        return trainer.lr_scheduler

    trainer.create_scheduler = create_scheduler
