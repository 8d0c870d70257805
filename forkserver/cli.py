"""The ``forkserver`` command: settings in, a running server out, user mistakes as one line.

Exit status: 0 after a clean stop (or a passing --check-config), 1 when the
server cannot start (app not importable, address not available, file not
writable), 2 for a usage mistake in a flag or FORKSERVER_* variable.
"""

from __future__ import annotations

import os
import sys

from .log import log
from .config import UsageError, load_settings
from .upgrade import execute, start_with_forking_settings, take_handover


def main(argv=None) -> int:
    if argv is None:
        start_with_forking_settings()
    handover = take_handover()  # set when this program was started by a hot upgrade
    environ_before = dict(os.environ)  # the previous code's settings, should it have to run again
    try:
        settings = load_settings(
            argv, previous_env_keys=frozenset(handover.env_keys) if handover else frozenset(),
            # the previous code, run again, keeps the settings it ran with
            read_env_file=not (handover and handover.fallen_back))
    except UsageError as exc:
        _fall_back(handover, str(exc), environ_before)
        return _fail(f"{exc} (see forkserver --help)", 2)
    log.set_level(settings.log_level)
    # Imported only now: what serves takes the memory the command-line parser
    # held (config._parse_flags), and is not added on top of it.
    from . import startup

    try:
        return startup.run(settings, handover)
    except startup.ERRORS as exc:
        if settings.log_level == "debug" and exc.__cause__ is not None:
            import traceback  # only here: see log.py

            traceback.print_exception(exc.__cause__)
        _fall_back(handover, str(exc), environ_before, closed=getattr(exc, "closed_inherited", ()))
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130


def _fall_back(handover, reason: str, environ_before: dict, closed=()) -> None:
    """New code that cannot start after a hot upgrade: run the code that was running before.

    It gets the listening sockets this code inherited, but for those `closed`
    (to free their port for another address): it listens on those afresh.
    Returns only when there is nothing to go back to (no upgrade, or this is
    already the previous code), and the caller then exits with the error.
    """
    if handover is None or handover.fallen_back:
        return
    print(f"forkserver: the new code cannot start ({reason}); going back to {handover.fallback[0]}",
          file=sys.stderr)
    os.environ.clear()
    os.environ.update(environ_before)
    try:
        execute(handover._replace(fallen_back=reason,
                                  listeners=[pair for pair in handover.listeners if pair[1] not in closed]),
                handover.fallback)
    except OSError as exc:
        print(f"forkserver: cannot execute {handover.fallback[0]}: {exc.strerror or exc}", file=sys.stderr)


def _fail(message: str, status: int) -> int:
    print(f"forkserver: {message}", file=sys.stderr)
    return status
