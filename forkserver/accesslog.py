"""The access log: one line per request in Common or combined Log Format.

Each child writes its own lines with a single ``os.write`` on a descriptor the
parent opened with O_APPEND, so lines from concurrent children never interleave.
"""

from __future__ import annotations

import os
import time


class AccessLog:
    def __init__(self, target: str, fmt: str = "combined"):
        self.target = target
        self.combined = fmt == "combined"
        self.fd = -1
        self.reopen()

    def reopen(self) -> None:
        """Open (again, after log rotation) the file; '-' means stdout."""
        if self.target == "-":
            self.fd = 1
            return
        fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        if self.fd > 2:
            os.close(self.fd)
        self.fd = fd

    def to_nowhere(self) -> AccessLog:
        """The same log written to /dev/null: the parent's warm-up runs its code without logging."""
        return AccessLog(os.devnull, "combined" if self.combined else "common")

    def close(self) -> None:
        if self.fd > 2:
            os.close(self.fd)
        self.fd = -1

    def format(self, remote: str, request_line: str, status: int, size: int,
               referer: str | None, user_agent: str | None, now: float | None = None) -> str:
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
        line = f'{remote or "-"} - - [{stamp}] "{_quote(request_line)}" {status} {size or "-"}'
        if self.combined:
            line += f' "{_quote(referer or "-")}" "{_quote(user_agent or "-")}"'
        return line + "\n"

    def write(self, *args, **kwargs) -> None:
        try:
            os.write(self.fd, self.format(*args, **kwargs).encode("utf-8", "replace"))
        except OSError:
            pass  # a full disk must not fail the request


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
