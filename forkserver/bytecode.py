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
"""

from __future__ import annotations

import os
import sys


def compiled_at_start() -> dict[str, str]:
    """Loaded modules whose source had no bytecode at least as new beside it: {name: source}.

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
            source_time = os.stat(source).st_mtime
        except OSError:
            continue  # gone or unreadable: nothing to say about it
        try:
            if os.stat(cached).st_mtime >= source_time:
                continue
        except OSError:
            pass  # no bytecode at all
        found[name] = source
    return dict(sorted(found.items()))
