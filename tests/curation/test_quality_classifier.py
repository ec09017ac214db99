"""quality_classifier: training from recipe sources, scoring, keep rules, model files, recipe errors, the runner."""

import json
import random

import numpy as np
import pytest
from pydantic import ValidationError

from curation.rows import make_row, rows_to_dataset
from curation.steps.base import StepContext, StepError
from curation.steps.quality_classifier import QualityClassifier, QualityClassifierParams
from tests.conftest import tiny_recipe
from curation import ledger as ledger_mod

TOPICS = ["the history of Rome", "how vaccines work", "saving money each month", "learning a new language",
          "the water cycle", "writing a clear email", "planting tomatoes", "the rules of chess"]


def _good(rng):
    t = rng.choice(TOPICS)
    return (f"Please explain {t} in simple terms.", f"Here is a clear explanation of {t}. First, consider the main idea; "
            f"then look at an example. In short, {t} is easier than it seems.")


def _web(rng):
    words = ["click", "here", "buy", "now", "cheap", "login", "cookie", "banner", "free", "offer", "menu", "share",
             "subscribe", "terms", "privacy", "win", "deal", "home"]
    return " ".join(rng.choice(words) for _ in range(rng.randint(12, 30)))


def _sources(n=60, seed=0):
    rng = random.Random(seed)
    good = rows_to_dataset([make_row("chat", "good", messages=[{"role": "user", "content": u}, {"role": "assistant", "content": a}])
                            for u, a in (_good(rng) for _ in range(n))])
    web = rows_to_dataset([make_row("text", "web", text=_web(rng)) for _ in range(n)])
    return {"good": good, "web": web}


def _pool(seed=1):
    import datasets

    src = _sources(30, seed)
    return datasets.concatenate_datasets([src["good"], src["web"]]), np.array([True] * 30 + [False] * 30)


def _ctx(tmp_path, sources):
    return StepContext(seed=0, workdir=tmp_path / "work", source_loader=lambda name: sources[name])


def test_trains_from_sources_scores_and_saves_classifier(tmp_path):
    pool, good = _pool()
    params = QualityClassifierParams(positive=["good"], negative=["web"], epoch=25)
    d = QualityClassifier(params, _ctx(tmp_path, _sources())).decide(pool)
    assert d.score.min() >= 0 and d.score.max() <= 1
    assert d.score[good].mean() > 0.8 and d.score[~good].mean() < 0.2
    assert d.keep[good].all() and not d.keep[~good].any()
    assert all(r.startswith("low_quality:") for r, k in zip(d.reason, d.keep) if not k)
    assert (tmp_path / "work" / "quality.bin").is_file()
    info = json.loads((tmp_path / "work" / "classifier.json").read_text())
    assert info["train_rows"] == {"positive": 60, "negative": 60} and info["validation"]["accuracy"] >= 0.9
    assert d.extras["threshold"] == 0.5 and sum(d.extras["score_histogram"]["counts"]) == len(pool)


def test_model_path_reuses_trained_classifier_and_top_fraction(tmp_path):
    pool, good = _pool()
    QualityClassifier(QualityClassifierParams(positive=["good"], negative=["web"], epoch=25),
                      _ctx(tmp_path, _sources())).decide(pool)
    bin_path = tmp_path / "work" / "quality.bin"
    params = QualityClassifierParams(model_path=str(bin_path), top_fraction=0.25)
    d = QualityClassifier(params, StepContext()).decide(pool)
    assert d.keep.sum() == 15 and good[d.keep].all()
    assert d.score[d.keep].min() >= d.score[~d.keep].max()
    assert all(r.startswith("low_quality_rank:") for r, k in zip(d.reason, d.keep) if not k)
    assert QualityClassifier.cache_inputs(params)["model_path"][0][1] == bin_path.stat().st_size


def test_missing_and_corrupt_model_files_are_step_errors(tmp_path):
    pool, _ = _pool()
    with pytest.raises(StepError, match="fastText model not found.*model_path"):
        QualityClassifier(QualityClassifierParams(model_path=str(tmp_path / "nope.bin")), StepContext()).decide(pool)
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"definitely not a fasttext model" * 10)
    with pytest.raises(StepError, match="not a fastText model"):
        QualityClassifier(QualityClassifierParams(model_path=str(garbage)), StepContext()).decide(pool)
    QualityClassifier(QualityClassifierParams(positive=["good"], negative=["web"], bucket=5000),
                      _ctx(tmp_path, _sources())).decide(pool)
    data = (tmp_path / "work" / "quality.bin").read_bytes()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(data[: len(data) - 1000])  # loads without complaint in fasttext itself
    with pytest.raises(StepError, match="corrupt or truncated"):
        QualityClassifier(QualityClassifierParams(model_path=str(truncated)), StepContext()).decide(pool)
    with pytest.raises(StepError, match="positive_label"):
        QualityClassifier(QualityClassifierParams(model_path=str(tmp_path / "work" / "quality.bin"),
                                                  positive_label="__label__hq"), StepContext()).decide(pool)


def test_params_validation():
    with pytest.raises(ValidationError, match="model_path"):
        QualityClassifierParams()
    with pytest.raises(ValidationError, match="not both"):
        QualityClassifierParams(positive=["a"], negative=["b"], threshold=0.5, top_fraction=0.2)
    with pytest.raises(ValidationError, match="both positive and negative"):
        QualityClassifierParams(positive=["a"], negative=["a"])
    with pytest.raises(ValidationError):
        QualityClassifierParams(model_path="m.bin", threshold=1.5)


def _files(tmp_path, n=40):
    rng = random.Random(0)
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"instruction": u, "input": "", "output": a}) + "\n" for u, a in (_good(rng) for _ in range(n))))
    web = tmp_path / "web.jsonl"
    web.write_text("".join(json.dumps({"text": _web(rng)}) + "\n" for _ in range(n)))
    return good, web


def _qc_recipe(tmp_path, options):
    good, web = _files(tmp_path)
    r = tiny_recipe(stages=[])  # curation only: the mixture holds chat and text rows
    r["sources"]["good"] = {"path": str(good), "format": "alpaca"}
    r["sources"]["web"] = {"path": str(web), "kind": "text", "fields": {"text": "text"}}
    r["mixtures"]["sft"] = {"good": 1.0, "web": 1.0}
    r["selection"]["sft"] = [{"quality_classifier": options}]
    return r


def test_threshold_out_of_range_is_a_recipe_error_with_key_path(cli, write_recipe, tmp_path):
    res = cli("validate", write_recipe(_qc_recipe(tmp_path, {"positive": ["good"], "negative": ["web"], "threshold": 1.5})))
    assert res.exit_code == 2
    assert "selection.sft[0].quality_classifier.threshold" in res.output and "less than or equal to 1" in res.output


def test_unknown_source_name_is_a_recipe_error_at_its_option(cli, write_recipe, tmp_path):
    res = cli("validate", write_recipe(_qc_recipe(tmp_path, {"positive": ["good"], "negative": ["wbe"]})))
    assert res.exit_code == 2
    assert "selection.sft[0].quality_classifier.negative[0]: names no source" in res.output
    assert "did you mean 'web'" in res.output


def test_corrupt_model_through_the_cli_is_one_clear_line(cli, write_recipe, tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00" * 64)
    res = cli("curate", write_recipe(_qc_recipe(tmp_path, {"model_path": str(bad)})), "--out", tmp_path / "run")
    assert res.exit_code == 1 and "not a fastText model" in res.output and "Traceback" not in res.output


def test_runner_records_scores_in_the_ledger_and_caches_the_classifier(cli, write_recipe, tmp_path):
    path = write_recipe(_qc_recipe(tmp_path, {"positive": ["good"], "negative": ["web"], "epoch": 25, "bucket": 20000}))
    out = tmp_path / "run"
    res = cli("curate", path, "--out", out)
    assert res.exit_code == 0, res.output
    led = ledger_mod.read(out / "ledger").to_pandas()
    step = led[led.step == "0:quality_classifier"]
    assert len(step) == 80 and step.score.notna().all()
    assert (step[step.source == "web"].decision == "drop").mean() > 0.9
    assert (step[step.source == "good"].decision == "keep").mean() > 0.9
    assert set(step[step.decision == "drop"].reason_code) == {"low_quality"}
    bins = list((out / "cache" / "step").glob("*/work/quality.bin"))
    assert len(bins) == 1
    mtime = bins[0].stat().st_mtime_ns
    res = cli("curate", path, "--out", out)
    assert res.exit_code == 0 and "cached" in res.output
    assert bins[0].stat().st_mtime_ns == mtime  # not retrained


def test_replacing_the_model_file_reruns_the_step(cli, write_recipe, tmp_path):
    import os

    pool, _ = _pool()
    QualityClassifier(QualityClassifierParams(positive=["good"], negative=["web"], bucket=5000),
                      _ctx(tmp_path, _sources())).decide(pool)
    model = tmp_path / "work" / "quality.bin"
    path = write_recipe(_qc_recipe(tmp_path, {"model_path": str(model)}))
    out = tmp_path / "run"
    assert cli("curate", path, "--out", out).exit_code == 0
    step_line = lambda text: next(l for l in text.splitlines() if "quality_classifier" in l)
    assert "cached" in step_line(cli("plan", path, "--out", out).output)
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new classifier at the same path
    assert "will run" in step_line(cli("plan", path, "--out", out).output)


def test_training_survives_a_dirty_heap(tmp_path):
    """fastText 0.9.3's trainer reads heap memory it never initialised; after torch and an encoder ran in
    the same process, freed chunks hold NaN bytes and in-process training "Encountered NaN" at every
    lr (the CI failure this reproduces). ``fasttext_util.train`` trains in a fresh process instead."""
    import ctypes
    import struct

    from curation import fasttext_util as ft

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    nan = struct.pack("f", float("nan"))
    chunks = []
    for size in (64, 256, 1024, 4096, 16384, 65536, 100000):
        for _ in range(200):
            ptr = libc.malloc(size)
            ctypes.memmove(ptr, nan * (size // 4), size)
            chunks.append(ptr)
    for ptr in chunks:
        libc.free(ctypes.c_void_p(ptr))
    rng = random.Random(0)
    texts = [" ".join(_good(rng)) for _ in range(60)] + [_web(rng) for _ in range(60)]
    n = ft.write_training_file(tmp_path / "train.txt", texts, ["__label__1"] * 60 + ["__label__0"] * 60)
    model, lr_used = ft.train(tmp_path / "train.txt", tmp_path / "m.bin", epoch=25, lr=0.1, word_ngrams=2, dim=100,
                              bucket=20000, seed=0)
    assert n == 120 and lr_used == 0.1 and (tmp_path / "m.bin").is_file()
    prob = ft.positive_probability(model, texts, "__label__1")
    assert prob[:60].mean() > 0.8 and prob[60:].mean() < 0.2
