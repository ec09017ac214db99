"""Built-in source generators. Each registers itself in ``GENERATORS`` by name.

A generator is a function ``(params, *, source, split, seed) -> list[canonical row]`` with a
``Params`` pydantic model attribute and, optionally, ``row_kind(params) -> str`` (the kind of the
rows it emits, so ``recipe validate`` can check stages and evals against it before any row exists)."""

from curation.registry import Registry



def load_builtin_generators() -> None:
    from curation.generators import arithmetic, related_docs, web_text  # noqa: F401  (register themselves)


GENERATORS: Registry = Registry("generator", builtins=load_builtin_generators)
