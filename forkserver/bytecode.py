"""Modules compiled from source at this start, and why the parent should have none.

Python compiles a module's source when it finds no up-to-date bytecode for
it, and the compiler's freed memory stays resident in the process. In the
parent, that is memory every fork copies the page tables of and every
child's exit unmaps: 1.3 MB for forkserver's own package, measured as a
slower server (bench/README.md, "Compiled, as installed"). It happens where
the bytecode cannot be written back: a read-only directory (an app's, under
systemd's ProtectSystem=strict), PYTHONDONTWRITEBYTECODE set (as many
container images do), or files changed since. pip writes the bytecode of
what it installs; an app's own directory needs ``python -m compileall``.

The first ``compile()`` in a process also builds every class of the ``ast``
module, about 210 kB that stay. Importing from source calls it, and so does
``typing.NamedTuple`` for each field annotation it is given as a string. So
the modules that define NamedTuples leave ``from __future__ import
annotations`` out: their annotations are evaluated, and a compiled serving
parent never builds those classes.

``python -m forkserver.bytecode DIR...`` compiles the modules under each
directory whose bytecode the import system would not read, and only those:
what the Ansible role runs for an app's directory. ``compileall`` without
``-f`` passes over a source replaced by one of another size but the same time;
with ``-f`` it compiles every module at every run, so the role could not tell
a deploy that changed nothing.
"""

from __future__ import annotations

import os
import sys
from importlib.util import MAGIC_NUMBER, cache_from_source, source_hash


def compiled_at_start() -> dict[str, str]:
    """Loaded modules whose bytecode the import system could not use: {name: source}.

    A module whose bytecode was written by this very import has it now, and is
    not counted: the next start reads it.
    """
    found = {}
    for name, module in list(sys.modules.items()):
        spec = getattr(module, "__spec__", None)
        source, cached = getattr(spec, "origin", None), getattr(spec, "cached", None)
        if not (source and cached and source.endswith(".py")):
            continue  # built in, an extension, frozen, or bytecode only
        try:
            if bytecode_is_current(source, cached):
                continue
        except OSError:
            continue  # the source is gone or unreadable: nothing to say about it
        found[name] = source
    return dict(sorted(found.items()))


def bytecode_is_current(source: str, cached: str) -> bool:
    """Whether the import system would read `cached` for `source` rather than compile it (PEP 552).

    It reads a timestamp-based .pyc only when the source's modification time
    (in whole seconds) and size are the ones recorded in it: a file replaced
    by one of another size but the same time (a copy that keeps times, a
    build that sets them all alike) is compiled again, though its .pyc is the
    newer file. A hash-based .pyc is read unless its source is checked and
    has changed. Raises OSError when the source cannot be read.
    """
    try:
        with open(cached, "rb") as handle:
            header = handle.read(16)
    except OSError:
        return False  # no bytecode at all
    if len(header) < 16 or header[:4] != MAGIC_NUMBER:
        return False  # another Python's, or cut short
    flags = int.from_bytes(header[4:8], "little")
    if not flags & 0b1:  # timestamp-based
        status = os.stat(source)
        return (header[8:12] == (int(status.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
                and header[12:16] == (status.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
    # --check-hash-based-pycs is published only in _imp, the import system's own module
    import _imp

    option = getattr(_imp, "check_hash_based_pycs", "default")
    if not (option == "always" or (flags & 0b10 and option != "never")):
        return True  # unchecked: read whatever the source says
    with open(source, "rb") as handle:
        return header[8:16] == source_hash(handle.read())


class _CurrentBytecode:
    """compileall's ``rx`` (any object with a ``search`` method): skip the modules whose bytecode is current."""

    @staticmethod
    def search(path: str) -> bool:
        if not path.endswith(".py"):
            return False  # compileall ignores it anyway
        try:
            return bytecode_is_current(path, cache_from_source(path))
        except OSError:
            return False  # compileall says what is wrong with it


def compile_stale(directory: str) -> bool:
    """Compile the modules under `directory` whose bytecode is not current; False if one failed.

    Prints ``Compiling '...'...`` for each, as compileall does. The bytecode is
    written as ``py_compile`` would by default (hash-based when
    SOURCE_DATE_EPOCH is set).
    """
    import compileall  # only here: the serving parent never needs it

    return bool(compileall.compile_dir(directory, force=True, rx=_CurrentBytecode(), quiet=0))


def main(argv: list[str] | None = None) -> int:
    """``python -m forkserver.bytecode DIR...``: exit 0 if everything compiled, 1 if a module did not."""
    directories = sys.argv[1:] if argv is None else argv
    if not directories:
        print("usage: python -m forkserver.bytecode DIR...", file=sys.stderr)
        return 2
    missing = [d for d in directories if not os.path.isdir(d)]
    if missing:
        print(f"forkserver.bytecode: not a directory: {missing[0]}", file=sys.stderr)
        return 2
    results = [compile_stale(d) for d in directories]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
