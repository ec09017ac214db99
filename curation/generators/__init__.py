"""Built-in source generators. Each registers itself in ``GENERATORS`` by name."""

from curation.registry import Registry



def load_builtin_generators() -> None:
    from curation.generators import arithmetic  # noqa: F401  (registers itself)


GENERATORS: Registry = Registry("generator", builtins=load_builtin_generators)
