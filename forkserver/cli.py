"""The ``forkserver`` command: settings in, a running server out, user mistakes as one line.

Exit status: 0 after a clean stop (or a passing --check-config), 1 when the
server cannot start (app not importable, address not available, file not
writable), 2 for a usage mistake in a flag or FORKSERVER_* variable.
"""

from __future__ import annotations


import os
import sys

from .log import log
from .accesslog import AccessLog
from .bytecode import compiled_at_start
from .config import Settings, UsageError, load_settings
from .connection import ConnectionSettings
from .httpparser import Limits
from .listeners import METRICS, BindError, open_listeners, parse_address
from .loader import BUILTIN, AppLoadError, load_app
from . import stdstreams
from .upgrade import execute, start_with_forking_settings, take_handover


class StartupError(Exception):
    """The server cannot start; exit status 1 with this one line."""


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
    try:
        return _run(settings, handover)
    except (StartupError, AppLoadError, BindError) as exc:
        if settings.log_level == "debug" and exc.__cause__ is not None:
            import traceback  # only here: see log.py

            traceback.print_exception(exc.__cause__)
        _fall_back(handover, str(exc), environ_before)
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return 130


def _fall_back(handover, reason: str, environ_before: dict) -> None:
    """New code that cannot start after a hot upgrade: run the code that was running before.

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
        execute(handover._replace(fallen_back=reason), handover.fallback)
    except OSError as exc:
        print(f"forkserver: cannot execute {handover.fallback[0]}: {exc.strerror or exc}", file=sys.stderr)


def _run(settings: Settings, handover=None) -> int:
    stdstreams.unbuffer()  # before the app is imported: what it keeps of them is unbuffered
    app = load_app(settings.app, settings.chdir)
    if settings.check_config:
        _check_paths(settings)
        answered = _check_app(app, settings) if settings.check_path else ""
        print(f"forkserver: configuration OK: app {settings.app or BUILTIN}, "
              f"bind {', '.join(str(parse_address(b)) for b in settings.bind)}{answered}")
        return 0
    access_log = _open_access_log(settings)
    binds = [*settings.bind, *([METRICS + settings.metrics_bind] if settings.metrics_bind else [])]
    listeners = open_listeners(binds, settings.backlog, handover.listeners if handover else ())
    _write_pid_file(settings.pid_file)
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
        answered = check_app(app, settings.check_path, settings.bind[0], _connection_settings(settings))
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


def _fail(message: str, status: int) -> int:
    print(f"forkserver: {message}", file=sys.stderr)
    return status
