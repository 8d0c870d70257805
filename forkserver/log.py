"""The error log: level-filtered lines on stderr, one write(2) per line.

Not the stdlib ``logging`` module, on purpose: importing it imports ``threading``,
whose at-fork hook runs in every forked child and was measured to add about
0.3 ms to each connection (see bench/README.md). A line is written with a
single ``os.write`` so lines from concurrent children never interleave.
"""

from __future__ import annotations

import os
import sys
import time

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


class Log:
    def __init__(self, level: str = "info", fd: int = 2):
        self.threshold = LEVELS[level]
        self.fd = fd

    def keep_private_descriptor(self) -> None:
        """Write to a private copy of the current descriptor (not inherited by exec).

        Children inherit it, so an app that closes its fds 0-2 (or reuses fd 2)
        does not take the error log, and the next traceback, with it.
        """
        if self.fd <= 2:
            try:
                self.fd = os.dup(self.fd)
            except OSError:
                pass  # already closed: nothing to keep

    def set_level(self, level: str) -> None:
        self.threshold = LEVELS[level]

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self.threshold

    def _emit(self, level: str, message: str, args: tuple, trace: str = "") -> None:
        if LEVELS[level] < self.threshold:
            return
        if args:
            message = message % args
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %z")
        line = f"[{stamp}] [{os.getpid()}] [{level.upper()}] {message}\n{trace}"
        try:
            os.write(self.fd, line.encode("utf-8", "replace"))
        except OSError:
            pass  # nowhere left to report it

    def debug(self, message: str, *args) -> None:
        self._emit("debug", message, args)

    def info(self, message: str, *args) -> None:
        self._emit("info", message, args)

    def warning(self, message: str, *args) -> None:
        self._emit("warning", message, args)

    def error(self, message: str, *args) -> None:
        self._emit("error", message, args)

    def exception(self, message: str, *args) -> None:
        """An error with the traceback of the exception being handled."""
        self._emit("error", message, args, _format_exception(sys.exc_info()[1]))


def _format_exception(exc: BaseException | None) -> str:
    """The traceback as Python prints it.

    ``traceback`` (with linecache, tokenize and textwrap) is imported at the
    first error rather than at start: the serving parent holds no copy of it for
    every fork to copy. Should it fail to import (say, no descriptor left to
    open it with), the error still gets its type and message.
    """
    try:
        import traceback
    except Exception:
        return f"{type(exc).__name__}: {exc}\n"
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


log = Log()
