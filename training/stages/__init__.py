"""Stage kinds, one file each: the kind's config model next to its runner, registered in
``training.kinds.STAGE_KINDS`` when the module is imported. Every module of this package is a kind
and is imported by ``training.kinds.load_builtin_kinds`` (found by listing the package), so adding
a stage kind is one file here plus its test."""
