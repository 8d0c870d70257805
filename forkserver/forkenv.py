"""The C runtime settings a forking parent starts with on Linux: symbols bound, no fastbins.

Two settings are read once, when a process starts, and each makes every fork
cheaper when the parent runs with it, so on Linux the server runs itself
again once at start with both in its environment (a hot upgrade passes them
to the new code directly), then takes them out of its environment at once, so
the app and the programs it starts never inherit them:

* ``LD_BIND_NOW=1``: the dynamic linker binds every symbol at start. Otherwise
  it binds each on its first call, writing a GOT page, and after a fork that
  write copies the page in each child that calls the function first
  (about 10 page faults per connection).
* ``GLIBC_TUNABLES=glibc.malloc.mxfast=0``: no fastbins in glibc's malloc.
  Small blocks the parent frees wait in fastbins, and a child's first large
  malloc or free (a 64 KiB receive buffer) merges them all
  (``malloc_consolidate``), writing chunk headers across the heap it shares
  with the parent: with 32 clients at once that was 34 of a child's ~296
  page faults. CPython's own allocator serves small objects, so the parent
  loses little without fastbins.

A GLIBC_TUNABLES the user set is kept after ours (the last setting of a
tunable wins) and given back to the app unchanged. FORKSERVER_BIND_NOW=0
turns both off (say, for an extension module that only loads with lazy
binding). Other C libraries (musl) ignore GLIBC_TUNABLES.
"""

from __future__ import annotations

import os
import sys

BIND_NOW = "LD_BIND_NOW"
TUNABLES = "GLIBC_TUNABLES"
NO_FASTBINS = "glibc.malloc.mxfast=0"
_MARK = "FORKSERVER_BOUND_NOW"          # set only in the environment of the program run again
_USER_TUNABLES = "FORKSERVER_GLIBC_TUNABLES"  # the user's own GLIBC_TUNABLES, while ours is set


def wanted() -> bool:
    return sys.platform.startswith("linux") and os.environ.get("FORKSERVER_BIND_NOW") != "0"


def forking_environment(environ) -> dict:
    """`environ` with both settings added, marked so the program started with it knows."""
    environment = {**environ, BIND_NOW: "1", _MARK: "1", TUNABLES: NO_FASTBINS}
    if environ.get(TUNABLES):
        environment[_USER_TUNABLES] = environ[TUNABLES]
        environment[TUNABLES] = f"{NO_FASTBINS}:{environ[TUNABLES]}"
    return environment


def start_with_forking_settings(command: list[str]) -> None:
    """Run `command` (this program) again with the settings, unless this is that program.

    In the program run again, take the settings back out of the environment
    and return. Returns at once where they do not apply.
    """
    if os.environ.pop(_MARK, None) == "1":  # first, so they go even where now turned off
        os.environ.pop(BIND_NOW, None)
        user_tunables = os.environ.pop(_USER_TUNABLES, None)
        if os.environ.get(TUNABLES, "").split(":")[0] == NO_FASTBINS:  # ours (not so from an older release)
            if user_tunables is None:
                del os.environ[TUNABLES]
            else:
                os.environ[TUNABLES] = user_tunables
        return
    if wanted():
        os.execve(command[0], command, forking_environment(os.environ))
