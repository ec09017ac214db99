"""The compiled kernels (curation.kernels) give exactly the numpy references' values: word hashes,
string hashes, n-gram shingles and MinHash signatures, band keys, on awkward inputs (empty and
one-word texts, texts shorter than the n-gram, long words, non-ASCII, sliced Arrow arrays)."""

import random

import numpy as np
import pyarrow as pa
import pytest

from curation import kernels
from curation.minhash import MinHasher, band_keys
from curation.shingles import hash_strings, ngram_hashes, tokenize

pytestmark = pytest.mark.skipif(not kernels._numba_available(), reason="numba not installed (pip install 'recipe-kit[fast]')")


def _texts(seed: int = 0, n: int = 400) -> list[str]:
    rng = random.Random(seed)
    vocab = ["a", "bb", "word", "x_y", "42", "Café", "naïve", "ﬁne", "日本語", "ß", "A" * 300, "émigré", "z" * 33000,
             "y" * 32767]
    texts = ["", " ", ",,, !!", "one", "two words", "a b c d", "a b c d e", "  lead and trail  ", "x" * 34000]
    for _ in range(n):
        k = rng.randint(0, 60)
        sep = rng.choice([" ", ", ", "\n", " -- ", "\t"])
        pool = vocab if rng.random() < 0.3 else vocab[:5]
        texts.append(sep.join(rng.choice(pool) for _ in range(k)))
    return texts


def _both(monkeypatch, fn):
    """``fn()`` with the numpy references, then with the kernels at any size."""
    monkeypatch.setenv(kernels.ENV, "numpy")
    ref = fn()
    monkeypatch.setenv(kernels.ENV, "numba")
    return ref, fn()


@pytest.mark.parametrize("ascii_only", [True, False])
def test_tokenize_and_word_hashes_match(monkeypatch, ascii_only):
    texts = [t for t in _texts() if t.isascii()] if ascii_only else _texts()
    ref, fast = _both(monkeypatch, lambda: tokenize(texts, "word"))
    assert np.array_equal(ref.counts, fast.counts) and np.array_equal(ref.hashes, fast.hashes)
    assert ref.counts.sum() > 1000


def test_tokenize_many_tiny_texts(monkeypatch):
    """As many words as bytes (one-letter texts, no separator between texts): the kernel's output
    holds them all (numba does not check bounds)."""
    texts = ["a", "b c", "d"] * 700 + ["", "e", "f g h"]
    ref, fast = _both(monkeypatch, lambda: tokenize(texts, "word"))
    assert np.array_equal(ref.counts, fast.counts) and np.array_equal(ref.hashes, fast.hashes)
    assert int(ref.counts.sum()) == 2804


def test_hash_strings_match_on_slices_and_large_strings(monkeypatch):
    strings = _texts(1)
    arr = pa.array(strings)
    for value in (arr, arr.slice(7, 200), pa.array(strings, pa.large_string()), pa.chunked_array([arr.slice(0, 5), arr.slice(5)])):
        ref, fast = _both(monkeypatch, lambda: hash_strings(value))
        assert np.array_equal(ref, fast)
    ref, fast = _both(monkeypatch, lambda: hash_strings(pa.array(["recipe-kit"])))
    assert int(fast[0]) == 3383153136370873239 == int(ref[0])  # the pinned value of test_exact_dedup_hash


@pytest.mark.parametrize("ngram", [1, 3, 5, 13])
@pytest.mark.parametrize("unit", ["word", "char"])
def test_signatures_match(monkeypatch, ngram, unit):
    texts = _texts(2, 300)
    hasher = MinHasher(64, seed=7)
    ref, fast = _both(monkeypatch, lambda: hasher.signatures(texts, ngram, unit, batch=97))
    assert ref.dtype == fast.dtype == np.uint32 and np.array_equal(ref, fast)
    assert (ref == 0xFFFFFFFF).all(axis=1).sum() >= 3  # the texts with no tokens: EMPTY rows


def test_signatures_from_shingles_and_band_keys_match(monkeypatch):
    texts = _texts(3, 300)
    h, owner = ngram_hashes(tokenize(texts, "word"), 5)
    hasher = MinHasher(128, seed=1)
    ref, fast = _both(monkeypatch, lambda: hasher.signatures_from_shingles(h, owner, len(texts), chunk=512))
    assert np.array_equal(ref, fast)
    ref_keys, fast_keys = _both(monkeypatch, lambda: band_keys(ref, 9, 13))
    assert np.array_equal(ref_keys, fast_keys)


def test_off_switch_and_start_rule(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "numpy")
    assert not kernels.enabled() and not kernels.use(10**6)
    monkeypatch.setenv(kernels.ENV, "numba")
    assert kernels.use(0.0)  # forced: any size
    monkeypatch.delenv(kernels.ENV)
    kernels.compiled.cache_clear()  # as in a process that has not started them
    assert kernels.enabled() and not kernels.use(kernels.START_SECONDS / 2)
    assert kernels.use(kernels.START_SECONDS)  # worth their start: started
    assert kernels.use(0.0)  # once started, any input


@pytest.mark.parametrize("lower", [True, False])
def test_exact_dedup_normalised_hashes_match(monkeypatch, lower):
    """exact_dedup's pass 1: ASCII rows normalised and hashed in one compiled pass, the others in
    Python; the same hashes as normalising every row (columns.normalised) and hashing the result."""
    from curation.steps.exact_dedup import normalised_hashes

    odd = ["  Lead", "trail \t\n", "\x1c\x1dsep\x1e\x1fmid\x0b\x0c", "MiXeD   CaSe", "", "\r\n", "a\u00a0b", "Straße  X"]
    texts = pa.chunked_array([pa.array(odd + _texts(4, 300) + [None, "tab\there"]), pa.array(["ONE more", None])])
    ref, fast = _both(monkeypatch, lambda: normalised_hashes(texts, lower))
    assert np.array_equal(ref, fast)


@pytest.mark.parametrize("options", [{}, {"min_words": 12}, {"top_ngram_char_frac": {1: 0.3}},
                                     {"top_ngram_char_frac": {}, "dup_ngram_char_frac": {}},
                                     {"top_ngram_char_frac": {3: 0.0}, "dup_ngram_char_frac": {5: 0.0}}])
def test_repetition_prefilter_gives_the_same_decisions(monkeypatch, options):
    """repetition: the rows the compiled prefilter clears (ASCII, with too few words, or with no
    newline and no repeated n-gram of the smallest n the options name: every signal 0) get what the
    per-row loop gives them; the decisions, scores and reasons are the same."""
    from curation.steps.base import StepContext
    from curation.steps.repetition import Repetition, RepetitionParams

    rng = random.Random(9)
    vocab = [f"w{i}" for i in range(12)] + ["café", "x\x1cy"]
    texts = ["", "one", "a a", "a b\nc d", "line\nline\nline\nline", "x y z " * 20, "\x1c a \x1f a",
             "the cat and the dog", "a b\r\na b\r\na b", "w1 w2 w1 w2 w1 w2 w1 w2 w1 w2"]
    texts += [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 30))) + rng.choice(["", "\n", "\n\nx"]) for _ in range(500)]
    table = pa.table({"kind": ["text"] * len(texts), "text": texts})
    step = Repetition(RepetitionParams(field="all", **options), StepContext(seed=0))
    ref, fast = _both(monkeypatch, lambda: step.decide_batch(table))
    assert fast.keep.tolist() == ref.keep.tolist() and fast.reason == ref.reason
    assert np.array_equal(fast.score, ref.score) and (~ref.keep).sum() < len(texts)


def test_repetition_thresholds_are_fractions():
    """A negative n-gram threshold would drop rows whose signals are all 0, which neither the loop's
    own shortcut nor the prefilter looks at: refused, as the line and paragraph thresholds are."""
    from pydantic import ValidationError

    from curation.steps.repetition import RepetitionParams

    for bad in ({"top_ngram_char_frac": {2: -0.1}}, {"dup_ngram_char_frac": {5: 1.5}}):
        with pytest.raises(ValidationError):
            RepetitionParams(**bad)


def test_expect_weighs_the_start_against_every_shard_a_worker_will_take(monkeypatch):
    """A Ray worker told it takes 10 shards starts the kernels for a shard worth a tenth of their start."""
    from types import SimpleNamespace

    from curation import kernels

    started = []
    fake = SimpleNamespace(cache_info=lambda: SimpleNamespace(currsize=len(started)))
    monkeypatch.setattr(kernels, "compiled", lambda: started.append(1) or fake)
    monkeypatch.setattr(kernels.compiled, "cache_info", fake.cache_info, raising=False)
    monkeypatch.setattr(kernels, "_numba_available", lambda: True)
    monkeypatch.delenv(kernels.ENV, raising=False)
    monkeypatch.setattr(kernels, "_expected", 1.0)
    shard = kernels.START_SECONDS / 10 * 1.5
    assert not kernels.use(shard) and not started
    kernels.expect(10)
    assert kernels.use(shard) and started
    kernels.expect(0)  # never below one input
    assert kernels._expected == 1.0
