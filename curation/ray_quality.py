"""``quality_classifier`` on Ray Data: the classifier trained (or loaded) once on the driver, rows
scored per shard in an actor pool, the keep rule over all scores on the driver.

The step is not row-local: it may train on the recipe's sources, and ``top_fraction`` ranks every
row against every other. Only the scoring -- fastText's ``predict`` per row, the part that grows
with the pool -- is per row, so that is what runs distributed. The driver reads the classifier's
``.bin`` file (trained into the step's work folder, or ``model_path``) and puts its bytes in Ray's
object store; each actor writes them to a private temporary file and loads the classifier once, so
no node needs the driver's filesystem. A row's score depends on its text and the classifier only,
so the scores, and the decisions the step's own ``finish`` makes from them, are the local ones.

What one process holds: an actor, the classifier (about 80 MB at the step's default ``bucket``) and
one shard of texts; the driver, the classifier and one score per row.
"""

from __future__ import annotations

import pyarrow as pa

from curation.steps.base import Decisions, Step


def quality_classifier(engine, step: Step, inp) -> Decisions:
    """``inp``: a :class:`curation.ray_input.StepInput`; the workers cut the texts from their shards."""
    import ray

    from curation.ray_engine import gathered
    from curation.rows import dataset_of

    n = inp.num_rows
    if not n:
        return step.decide(dataset_of(inp.table()))
    p = step.params
    model, info, path = step.classifier()
    model_ref = ray.put(path.read_bytes())
    ds = inp.texts(p.field)
    out = ds.map_batches(_Scorer, fn_constructor_kwargs={"model": [model_ref], "positive_label": p.positive_label},
                         batch_format="pyarrow", batch_size=None, compute=ray.data.ActorPoolStrategy(size=engine.cpus))
    score = gathered(out, n, "scores").column("score").to_numpy()
    engine.say(f"quality_classifier: classifier {'trained' if info.get('trained') else 'loaded'} on the driver, "
               f"rows scored in an actor pool of {engine.cpus}")
    return step.finish(score, info, list(model.get_labels()))


class _Scorer:
    """One fastText classifier per actor, from the bytes the driver put in the object store."""

    def __init__(self, model: list, positive_label: str):
        import os
        import tempfile

        import ray

        from curation import fasttext_util as ft

        fd, name = tempfile.mkstemp(suffix=".bin")
        with os.fdopen(fd, "wb") as fh:
            fh.write(ray.get(model[0]))
        try:
            self.model = ft.load_classifier(name, positive_label)
        finally:
            os.unlink(name)
        self.positive_label = positive_label

    def __call__(self, batch: pa.Table) -> pa.Table:
        from curation import fasttext_util as ft
        from curation.ray_engine import _fault_for_tests

        _fault_for_tests()
        score = ft.positive_probability(self.model, batch.column("text").to_pylist(), self.positive_label)
        return pa.table({"_index": batch.column("_index"), "score": pa.array(score, pa.float64())})
