"""From settings to a running server: the app loaded, the listeners open, the arbiter serving.

Imported by the command (cli.py) only once the settings are read, so that
the serving process loads it into the memory the command-line parser freed.
A problem found here is the user's to fix (an app that does not import, an
address in use, a file that cannot be written): one of ERRORS, which the
command reports as one line with exit status 1.
"""

from __future__ import annotations

import os

from .log import log
from .accesslog import AccessLog
from .bytecode import compiled_at_start
from .config import Settings
from .connection import ConnectionSettings
from .httpparser import Limits
from .listeners import (METRICS, BindError, check_listeners, close_dropped, open_listeners, parse_address,
                        release_listeners)
from .loader import BUILTIN, AppLoadError, load_app
from . import stdstreams, upgrade


class StartupError(Exception):
    """The server cannot start; exit status 1 with this one line."""


ERRORS = (StartupError, AppLoadError, BindError)


def run(settings: Settings, handover=None) -> int:
    stdstreams.unbuffer()  # before the app is imported: what it keeps of them is unbuffered
    app = load_app(settings.app, settings.chdir)
    binds = [*settings.bind, *([METRICS + settings.metrics_bind] if settings.metrics_bind else [])]
    if settings.check_config:
        _check_paths(settings)
        if upgrade.LISTENING_VARIABLE in os.environ:  # checked by a running server, before its upgrade
            check_listeners(binds, held=os.environ[upgrade.LISTENING_VARIABLE].split("\n"))
        answered = _check_app(app, settings) if settings.check_path else ""
        print(f"forkserver: configuration OK: app {settings.app or BUILTIN}, "
              f"bind {', '.join(str(parse_address(b)) for b in settings.bind)}{answered}")
        return 0
    access_log = _open_access_log(settings)
    inherited = handover.listeners if handover else ()
    listeners, closed = open_listeners(binds, settings.backlog, inherited)
    try:
        _write_pid_file(settings.pid_file)
    except StartupError as exc:
        release_listeners(listeners)  # the code that ran before may run again on those inherited
        exc.closed_inherited = closed
        raise
    close_dropped(inherited, listeners, closed)
    from .arbiter import Arbiter

    _warn_of_compiled_modules()
    try:
        return Arbiter(
            app, listeners,
            max_children=settings.max_children,
            child_timeout=settings.child_timeout,
            graceful_timeout=settings.graceful_timeout,
            connection_settings=_connection_settings(settings),
            access_log=access_log,
            handover=handover,
            state_file=settings.state_file,
            env_keys=settings.env_keys,
        ).run()
    finally:
        _remove_pid_file(settings.pid_file)


def _warn_of_compiled_modules() -> None:
    """Say so when this start compiled modules from source (see bytecode.py): every fork pays for it."""
    compiled = compiled_at_start()
    if not compiled:
        return
    names = list(compiled)
    directories = sorted({os.path.dirname(source) for source in compiled.values()})
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    log.warning("compiled from source at this start, with no up-to-date bytecode to read: %s. The "
                "compiler's leftovers stay in this process and every fork copies them; write the "
                "bytecode once: python -m compileall -f %s", shown,
                " ".join(directories[:3]) + (" ..." if len(directories) > 3 else ""))


def _connection_settings(settings: Settings) -> ConnectionSettings:
    return ConnectionSettings(
        header_timeout=settings.header_timeout,
        keepalive=settings.keepalive,
        child_timeout=settings.child_timeout,
        limits=Limits(max_request_line=settings.limit_request_line,
                      max_header_fields=settings.limit_request_fields,
                      max_field_size=settings.limit_request_field_size,
                      max_body=settings.max_body),
        proxy_protocol_from=settings.proxy_protocol_from,
    )


def _check_app(app, settings: Settings) -> str:
    """--check-path: the app's answer to GET PATH, or StartupError (see appcheck.py)."""
    from .appcheck import AppCheckError, check_app  # only a check needs it, never the server

    try:
        answered = check_app(app, settings.check_path, settings.bind[0], _connection_settings(settings),
                             settings.check_host)
    except AppCheckError as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:
        raise StartupError(f"cannot run the check request: {exc.strerror or exc}") from None
    return f"; GET {settings.check_path} answered {answered}"


def _check_paths(settings: Settings) -> None:
    for what, path in (("access log", settings.access_log), ("pid file", settings.pid_file),
                       ("state file", settings.state_file)):
        if path and path != "-":
            directory = os.path.dirname(os.path.abspath(path))
            if not os.access(directory, os.W_OK):
                raise StartupError(f"{what} {path!r}: directory {directory!r} is missing or not writable")
            if os.path.isdir(path):
                raise StartupError(f"{what} {path!r}: is a directory, not a file")


def _open_access_log(settings: Settings):
    if not settings.access_log:
        return None
    try:
        return AccessLog(settings.access_log, settings.access_log_format)
    except OSError as exc:
        raise StartupError(f"cannot open access log {settings.access_log!r}: {exc.strerror.lower()}") from None


def _write_pid_file(path: str | None) -> None:
    if not path:
        return
    try:
        with open(path, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    except OSError as exc:
        raise StartupError(f"cannot write pid file {path!r}: {exc.strerror.lower()}") from None


def _remove_pid_file(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass
