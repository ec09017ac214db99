"""The recipe schema: pydantic v2 models, ``extra="forbid"`` at every level.

This is the truth of the recipe format (DESIGN.md sketches it). Stage kinds are a discriminated
union on ``kind``, so an SFT stage rejects DPO keys. Plug-in parameters (a generator's options, a
curation step's options) are validated by the plug-in's own ``Params`` model in ``recipe.load``,
with the same error paths.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from training.config import LoraSpec, ScheduleSpec, StageBase, Strict, ValidationSpec  # noqa: F401 (re-exported)
from training.kinds import STAGE_KINDS, load_builtin_kinds
from training.launch import LaunchSpec  # noqa: F401 (re-exported)
from eval.spec import EvalSpec, FewshotSpec  # noqa: F401 (re-exported)


class EngineSpec(Strict):
    """Where curation steps run (``curation.engine``): ``local`` (default) or ``ray`` (Ray Data; the
    extra ``recipe-kit[distributed]``). Decisions are the same on either, so the engine is in no
    cache key and not in the recipe hash. ``--engine`` / ``--ray-address`` override it."""

    name: Literal["local", "ray"] = "local"
    address: str | None = Field(None, description="a running Ray cluster: `auto` or host:port (none: start Ray here)")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a Ray started here (default: all)")
    shards: bool = Field(True, description="ray: workers read each mixture's rows from Parquet shards in the cache "
                         "and write the stage datasets (the cache and the run directory on storage every node "
                         "sees); false: the driver ships each step's rows through Ray's object store")


class ModelSpec(Strict):
    """``{path: ...}`` loads any local or Hub causal LM; ``{init: tiny}`` builds one locally."""

    path: str | None = Field(None, description="local directory or Hub id")
    revision: str | None = None
    init: Literal["tiny"] | None = None
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    trust_remote_code: bool = False
    # tiny-init options (ignored with `path`)
    vocab_size: int = Field(512, ge=64)
    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(512, ge=8)
    max_position_embeddings: int = Field(512, ge=16)

    @model_validator(mode="after")
    def _one_of(self):
        if (self.path is None) == (self.init is None):
            raise ValueError("give exactly one of `path` (a local or Hub model) or `init: tiny`")
        return self

    @field_validator("path")
    @classmethod
    def _loadable(cls, path):
        problem = None if path is None else local_model_problem(path)
        if problem:
            raise ValueError(problem)
        return path


def local_model_problem(path: str) -> str | None:
    """Why a local model path cannot load (None: a model folder, or not a local path: a Hub id)."""
    from pathlib import Path

    p = Path(path).expanduser()
    if p.is_dir():
        if not any((p / f).is_file() for f in ("config.json", "adapter_config.json")):
            return (f"{path} is a folder without config.json (nor adapter_config.json): not a Hugging Face model "
                    "directory; give the folder that save_pretrained wrote, or a Hub id")
        return None
    if p.exists():
        return f"{path} is a file, not a model folder"
    if path.startswith((".", "/", "~")) or path.count("/") > 1:
        return f"{path}: no such folder (a local model path; a Hub id has the form owner/name)"
    return None


def check_verifier(name: str, context: str = "") -> None:
    from eval.verifiers import check_verifier_name

    check_verifier_name(name, context)


RowKind = Literal["chat", "preference", "verifiable", "text"]


class FileSource(Strict):
    """A local file (jsonl/json/parquet/csv, optionally .gz), a directory, or a Hub dataset id."""

    path: str
    name: str | None = Field(None, description="Hub dataset config name")
    split: str = "train"
    revision: str | None = None
    format: str | None = Field(None, description="built-in layout: alpaca, gsm8k, hh_rlhf, sharegpt")
    kind: RowKind | None = None
    fields: dict[str, str | list[str]] = Field(default_factory=dict)
    verifier: str | None = None
    verifier_map: dict[str, str] = Field(
        default_factory=dict, description="rename values of the `fields.verifier` column to verifier names, e.g. "
        "{MATH: boxed} for Tülu 3's RLVR data, whose `dataset` column says gsm8k, MATH or ifeval")
    skill: str | None = Field(None, description="skill label for every row of this source")
    license: str | None = None
    limit: int | None = Field(None, gt=0, description="read only the first N records")

    @field_validator("verifier_map")
    @classmethod
    def _known_mapped_verifiers(cls, mapping):
        for value, name in mapping.items():
            check_verifier(name, f"{value!r} maps to ")
        return mapping

    @field_validator("format")
    @classmethod
    def _known_format(cls, name):
        from curation.formats import FORMATS
        from curation.registry import UnknownName

        if name is None:
            return name
        try:
            fmt = FORMATS.get(name)
        except UnknownName as exc:
            raise ValueError(str(exc)) from None
        if not callable(fmt):
            raise ValueError(f"format {name!r} is not a function `(record, spec) -> canonical row`")
        return name

    @model_validator(mode="after")
    def _kind_or_format(self):
        from curation.formats import DEFAULT_KIND, check_fields

        if self.format is None and self.kind is None:
            raise ValueError("give `kind` (chat, preference, verifiable, text) with `fields`, or a `format`")
        if self.format in (None, "fields"):
            problem = check_fields(self.kind or DEFAULT_KIND.get(self.format or ""), self.fields)
            if problem:
                raise ValueError(f"fields: {problem}")
        if self.kind == "verifiable" and self.format is None and not self.verifier and "verifier" not in self.fields:
            raise ValueError("a verifiable source needs `verifier` (e.g. math) or a `fields.verifier` column")
        if self.verifier_map and "verifier" not in self.fields:
            raise ValueError("`verifier_map` renames the values of a verifier column: also give `fields.verifier`")
        return self


class GeneratedSource(BaseModel):
    """``{generate: NAME, ...options}``: options are checked by the generator's own model."""

    model_config = ConfigDict(extra="allow")
    generate: str
    split: str = "train"
    license: str | None = None


def _source_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "generated" if "generate" in value else "file"
    return "generated" if isinstance(value, GeneratedSource) else "file"


from pydantic import Discriminator, Tag  # noqa: E402

SourceSpec = Annotated[
    Union[Annotated[FileSource, Tag("file")], Annotated[GeneratedSource, Tag("generated")]],
    Discriminator(_source_tag),
]


class MixShare(Strict):
    """Explicit form of a mixture entry; exactly one of fraction, upsample, count, tokens.

    ``tokens`` is OLMo-core's token mixture: a share of the mixture's tokens (<= 1.0; every entry of
    the mixture then gives one, summing to 1) or a token count (> 1), with ``max_repetition`` the
    most times a source's rows may be repeated to reach it (OLMo-core's ``max_repetition_ratio``)."""

    fraction: float | None = Field(None, gt=0, le=1)
    upsample: float | None = Field(None, ge=1)
    count: int | None = Field(None, gt=0)
    tokens: float | None = Field(None, gt=0, description="share of the mixture's tokens (<= 1) or a token count")
    max_repetition: float | None = Field(None, ge=1, description="with tokens: at most this many passes over the source")

    @model_validator(mode="after")
    def _one(self):
        if sum(v is not None for v in (self.fraction, self.upsample, self.count, self.tokens)) != 1:
            raise ValueError("give exactly one of fraction, upsample, count, tokens")
        if self.max_repetition is not None and self.tokens is None:
            raise ValueError("max_repetition applies to a `tokens` entry")
        return self


MixValue = Union[Annotated[int, Field(gt=0)], Annotated[float, Field(gt=0)], MixShare]


load_builtin_kinds()
# The stage kinds registered in training/kinds.py (one file each): the union is read off the registry.
_KIND_MODELS = tuple(STAGE_KINDS.get(name).config for name in STAGE_KINDS.names())
StageSpec = Annotated[Union[_KIND_MODELS], Field(discriminator="kind")]

from training.stages.dpo import DPOStage, PairsSpec  # noqa: E402,F401 (re-exported for callers of the schema)
from training.stages.pretrain import PretrainStage  # noqa: E402,F401
from training.stages.rlvr import RLVRStage  # noqa: E402,F401
from training.stages.sft import SFTStage  # noqa: E402,F401


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    seed: int = 0
    model: ModelSpec
    sources: dict[str, SourceSpec]
    mixtures: dict[str, dict[str, MixValue]] = Field(default_factory=dict)
    selection: dict[str, list[dict[str, dict[str, Any] | None]]] = Field(default_factory=dict)
    stages: list[StageSpec] = Field(default_factory=list)
    eval: dict[str, EvalSpec] = Field(default_factory=dict)
    launch: LaunchSpec | None = Field(None, description="multi-process launch of every stage (or `--gpus N`)")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="where curation steps run (local or ray)")

    @model_validator(mode="after")
    def _references(self):
        errors = []
        for mix, entries in self.mixtures.items():
            if not entries:
                errors.append((("mixtures", mix), "an empty mixture; give at least one `source: share` entry"))
            token_entries = [isinstance(v, MixShare) and v.tokens is not None for v in entries.values()]
            if any(token_entries) and not all(token_entries):
                errors.append((("mixtures", mix), "a token mixture gives every source as {tokens: ...}; do not mix it "
                               "with row shares"))
            elif any(token_entries):
                shares = [v.tokens for v in entries.values()]
                if all(x <= 1 for x in shares) and abs(sum(shares) - 1) > 1e-6:
                    errors.append((("mixtures", mix), f"token shares sum to {sum(shares):g}, not 1 (a share is <= 1; "
                                   "a number above 1 is a token count)"))
                elif any(x <= 1 for x in shares) and any(x > 1 for x in shares):
                    errors.append((("mixtures", mix), "give every source a token share (<= 1) or every source a token "
                                   "count (> 1), not both"))
            for src in entries:
                if src not in self.sources:
                    errors.append((("mixtures", mix, src), f"names no source; sources are {sorted(self.sources)}"))
        for mix in self.selection:
            if mix not in self.mixtures:
                errors.append((("selection", mix), f"names no mixture; mixtures are {sorted(self.mixtures)}"))
        names = []
        for i, stage in enumerate(self.stages):
            if stage.data is not None and stage.data not in self.mixtures:  # None: a kind without data (prune)
                errors.append((("stages", i, "data"), f"{stage.data!r} names no mixture; mixtures are {sorted(self.mixtures)}"))
            for key, ref in stage.model_refs().items():  # `from` and each kind's model keys (DPO's `ref`)
                if ref not in ("previous", "base") and ref not in names and "/" not in ref:
                    errors.append((("stages", i, key), f"{ref!r} names no earlier stage ({names or 'none'}), "
                                                       "nor 'previous', 'base' or a path"))
            if stage.validation is not None and stage.validation.data not in self.mixtures \
                    and stage.validation.data not in self.sources:
                errors.append((("stages", i, "validation", "data"), f"{stage.validation.data!r} names no mixture or "
                               f"source; mixtures are {sorted(self.mixtures)}, sources {sorted(self.sources)}"))
            name = stage.name or f"{i}-{stage.kind}"
            if name in names:
                errors.append((("stages", i, "name"), f"{name!r} is the name of an earlier stage; stage names are unique"))
            names.append(name)
        for ev, spec in self.eval.items():
            if spec.source is not None and spec.source not in self.sources:
                errors.append((("eval", ev, "source"), f"{spec.source!r} names no source; sources are {sorted(self.sources)}"))
            if spec.fewshot is not None and spec.fewshot.source not in self.sources:
                errors.append((("eval", ev, "fewshot", "source"), f"{spec.fewshot.source!r} names no source; sources "
                               f"are {sorted(self.sources)}"))
        if errors:
            raise ReferenceErrors(errors)
        return self

    def stage_names(self) -> list[str]:
        return [s.name or f"{i}-{s.kind}" for i, s in enumerate(self.stages)]


class ReferenceErrors(ValueError):
    """Cross-reference errors, each with its key path."""

    def __init__(self, errors: list[tuple[tuple, str]]):
        super().__init__("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in errors))
        self.errors = errors


def stage_models() -> dict[str, type]:
    """kind -> stage config model, from the registered stage kinds (training/kinds.py)."""
    from training.kinds import stage_models as registered

    return registered()


def _models_below(model: type, seen: set) -> None:
    """``model`` and every pydantic model its fields hold (recursively)."""
    import typing

    if model in seen:
        return
    seen.add(model)
    for finfo in model.model_fields.values():
        stack = [finfo.annotation]
        while stack:
            ann = stack.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                _models_below(ann, seen)
            stack.extend(typing.get_args(ann))


def all_field_names() -> set[str]:
    """Every key the schema knows (for "did you mean" when the location is ambiguous)."""
    models: set = set()
    for model in (Recipe, *stage_models().values()):
        _models_below(model, models)
    return {finfo.alias or fname for model in models for fname, finfo in model.model_fields.items()}
