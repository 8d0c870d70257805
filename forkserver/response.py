"""Response framing: status lines, headers, chunks and error pages as bytes, no sockets."""

from __future__ import annotations

import http
from time import gmtime, time

from . import __version__

SERVER = f"forkserver/{__version__}"

# Hop-by-hop headers belong to the server (PEP 3333); an app may only ask to close.
HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
     "te", "trailers", "transfer-encoding", "upgrade")
)

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_date_cache = [0, ""]


def http_date(now: float | None = None) -> str:
    """RFC 9110 IMF-fixdate, computed at most once a second."""
    second = int(time() if now is None else now)
    if _date_cache[0] != second:
        t = gmtime(second)
        _date_cache[:] = [second, f"{_WEEKDAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} "
                                  f"{t.tm_year} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"]
    return _date_cache[1]


def refresh_date() -> float:
    """Compute this second's Date now; the seconds until it goes stale.

    The parent calls this as a new second begins, so that a child forked
    within it finds the Date cached: formatting it costs a child about 20
    pages written (nginx keeps its cached time the same way).
    """
    now = time()
    http_date(now)
    return 1.0 - now % 1.0


def encode_head(status_line: str, headers: list[tuple[str, str]]) -> bytes:
    text = f"HTTP/1.1 {status_line}\r\n"
    for name, value in headers:  # a plain loop: a generator would be one more code object per child
        text += f"{name}: {value}\r\n"
    return (text + "\r\n").encode("latin-1")


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def error_response(status: int, detail: str = "", keep_alive: bool = False) -> bytes:
    """A small plain-text answer for a request the server itself refuses."""
    phrase = http.HTTPStatus(status).phrase
    body = f"{status} {phrase}\n{detail}\n".encode("latin-1", "replace") if detail else f"{status} {phrase}\n".encode()
    headers = [
        ("Server", SERVER),
        ("Date", http_date()),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "keep-alive" if keep_alive else "close"),
    ]
    return encode_head(f"{status} {phrase}", headers) + body
