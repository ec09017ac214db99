"""Load any local or Hub causal LM and its tokenizer with an explicit dtype.

A model given by name loads in float32 unless a dtype is set (TRL's and transformers' default), so
the dtype is always explicit here. A directory holding a PEFT adapter (``adapter_config.json``)
is loaded as base model + adapter.
"""

from __future__ import annotations

from pathlib import Path


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


def load_tokenizer(path: str, revision: str | None = None, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise ModelLoadError(f"cannot load a tokenizer from {path!r}: {str(exc).splitlines()[0]}. "
                             "Offline? Give a local model directory as `model.path`.") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def is_adapter_dir(path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def load_model(path: str, dtype: str = "float32", revision: str | None = None, trust_remote_code: bool = False,
               adapter: str = "frozen"):
    """Load a causal LM; a PEFT adapter directory loads as base (from its ``adapter_config.json``) +
    adapter, and ``adapter`` says what to do with it: ``frozen`` (eval), ``train`` (a LoRA stage
    continues training this adapter) or ``merge`` (merge it and return a plain model, for a stage
    that trains all weights)."""
    from transformers import AutoModelForCausalLM

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
    except OSError as exc:
        raise ModelLoadError(f"cannot load a causal LM from {path!r}: {str(exc).splitlines()[0]}. "
                             "Offline? Give a local model directory as `model.path`.") from None
