"""Load any local or Hub causal LM and its tokenizer with an explicit dtype.

A model given by name loads in float32 unless a dtype is set (TRL's and transformers' default), so
the dtype is always explicit here. A directory holding a PEFT adapter (``adapter_config.json``)
is loaded as base model + adapter.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from pathlib import Path

# The run's model-loading policy: which revision a (Hub) path is pinned to, and whether the model's
# own code may run (``model.revision`` / ``model.trust_remote_code``). Set once by the runner or a
# launched job around everything that loads a model (stages, a DPO reference, eval).
_POLICY: contextvars.ContextVar[dict] = contextvars.ContextVar("model_load_policy", default={})


@contextmanager
def load_policy(revisions: dict[str, str | None] | None = None, trust_remote_code: bool = False):
    token = _POLICY.set({"revisions": {str(k): v for k, v in (revisions or {}).items() if v},
                         "trust_remote_code": bool(trust_remote_code)})
    try:
        yield
    finally:
        _POLICY.reset(token)


def _policy(path: str, revision: str | None, trust_remote_code: bool | None) -> tuple[str | None, bool]:
    policy = _POLICY.get()
    if revision is None:
        revision = policy.get("revisions", {}).get(str(path))
    if trust_remote_code is None:
        trust_remote_code = policy.get("trust_remote_code", False)
    return revision, bool(trust_remote_code)


def torch_dtype(name: str):
    import torch

    return "auto" if name == "auto" else {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def bf16_available() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


class ModelLoadError(Exception):
    pass


def load_tokenizer(path: str, revision: str | None = None, trust_remote_code: bool | None = None):
    from transformers import AutoTokenizer

    revision, trust_remote_code = _policy(path, revision, trust_remote_code)
    try:
        tok = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a folder of the wrong files raises any of these
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(f"cannot load a tokenizer from {path!r}: {first}. "
                             "Offline? Give a local model directory as `model.path`.") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def is_adapter_dir(path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def load_model(path: str, dtype: str = "float32", revision: str | None = None, trust_remote_code: bool | None = None,
               adapter: str = "frozen"):
    """Load a causal LM; a PEFT adapter directory loads as base (from its ``adapter_config.json``) +
    adapter, and ``adapter`` says what to do with it: ``frozen`` (eval), ``train`` (a LoRA stage
    continues training this adapter) or ``merge`` (merge it and return a plain model, for a stage
    that trains all weights). ``revision`` and ``trust_remote_code`` default to the run's
    :func:`load_policy`."""
    from transformers import AutoModelForCausalLM

    revision, trust_remote_code = _policy(path, revision, trust_remote_code)
    kwargs = dict(dtype=torch_dtype(dtype), revision=revision, trust_remote_code=trust_remote_code)
    try:
        if is_adapter_dir(path):
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, is_trainable=adapter == "train", **kwargs)
            if adapter != "merge":
                return model
            merged = model.merge_and_unload()
            merged.requires_grad_(True)  # PEFT froze the base weights; a full fine-tuning stage trains them all
            return merged
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(f"cannot load a causal LM from {path!r}: {first}. "
                             "Offline? Give a local model directory as `model.path`.") from None
