"""The HTTP parser: bytes in, request events out, no sockets.

llhttp (through httptools) does the parsing; this module turns its callbacks into
a queue of events (a ``RequestHead``, body ``bytes``, ``END``) and enforces the
limits that keep a forked child from being tied up or flooded: request-line and
header sizes, header count, body size, and the request-smuggling rules. Keeping
it free of I/O means every rule is testable with plain byte strings.

httptools was chosen over h11 by measurement: bench/parser.py shows llhttp parsing
requests several times faster, and it is the parser of Node.js and uvicorn.
"""

from __future__ import annotations

import collections
import http
from typing import NamedTuple

import httptools


class HTTPError(Exception):
    """The request cannot be served; ``status`` is the 4xx to answer with."""

    def __init__(self, status: int, detail: str = ""):
        super().__init__(detail or http.HTTPStatus(status).phrase)
        self.status = status
        self.detail = detail or http.HTTPStatus(status).phrase


class Limits(NamedTuple):
    # gunicorn's names and values, so operators know what to expect.
    max_request_line: int = 8190
    max_header_fields: int = 100
    max_field_size: int = 8190
    max_body: int = 10 * 1024 * 1024


class RequestHead(NamedTuple):
    method: str
    target: bytes
    version: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    content_length: int | None
    chunked: bool
    expect_continue: bool

    def header(self, name: bytes) -> bytes | None:
        """The first value of a header, by case-insensitive name."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class _End:
    def __repr__(self) -> str:
        return "END"


END = _End()  # marks the end of one request's body


class RequestParser:
    """Feed it bytes as they arrive; take events with ``next_event``.

    Pipelined requests are queued in order. After an upgrade request (or
    CONNECT) the rest of the stream is not HTTP, so ``upgraded`` is set and the
    connection should close after answering.
    """

    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self._parser = httptools.HttpRequestParser(self)
        self._events: collections.deque = collections.deque()
        self._in_head = False
        self._in_message = False
        self._url = bytearray()
        self._headers: list[tuple[bytes, bytes]] = []
        self._partial_line = 0
        self._body_seen = 0
        self.upgraded = False

    # --- the I/O side calls these ---

    @property
    def in_message(self) -> bool:
        """True from a request's first byte until its end: a timeout then means a slow client."""
        return self._in_message

    def feed(self, data: bytes) -> None:
        if self.upgraded:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.upgraded = True
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HTTPError):
                raise exc.__context__ from None
            raise
        except httptools.HttpParserError as exc:
            raise HTTPError(400, str(exc)) from None
        self._check_partial_line(data)

    def next_event(self):
        """The next RequestHead, bytes chunk or END; None when more input is needed."""
        return self._events.popleft() if self._events else None

    # --- limits that llhttp does not know about ---

    def _check_partial_line(self, data: bytes) -> None:
        """A header line that never ends would otherwise grow without bound inside llhttp.

        (An endless request line is caught by on_url, which llhttp calls at the
        end of every feed.)
        """
        if not self._in_head:
            return
        newline = data.rfind(b"\n")
        self._partial_line = self._partial_line + len(data) if newline < 0 else len(data) - newline - 1
        if self._partial_line > self.limits.max_field_size + 2:
            raise HTTPError(431, f"header field over {self.limits.max_field_size} bytes")

    # --- llhttp callbacks ---

    def on_message_begin(self) -> None:
        self._in_head = self._in_message = True
        self._url.clear()
        self._headers = []
        self._partial_line = 0
        self._body_seen = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_request_line:
            raise HTTPError(414, f"request line over {self.limits.max_request_line} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self._headers) >= self.limits.max_header_fields:
            raise HTTPError(431, f"more than {self.limits.max_header_fields} header fields")
        if len(name) + len(value) + 2 > self.limits.max_field_size:
            raise HTTPError(431, f"header field over {self.limits.max_field_size} bytes")
        self._headers.append((name, value.strip(b" \t")))

    def on_headers_complete(self) -> None:
        self._in_head = False
        head = self._make_head()
        if head.content_length is not None and head.content_length > self.limits.max_body:
            raise HTTPError(413, f"body of {head.content_length} bytes is over the {self.limits.max_body} byte limit")
        self._events.append(head)

    def on_body(self, body: bytes) -> None:
        self._body_seen += len(body)
        if self._body_seen > self.limits.max_body:
            raise HTTPError(413, f"body is over the {self.limits.max_body} byte limit")
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._events.append(END)

    def _make_head(self) -> RequestHead:
        content_length = None
        chunked = False
        expect_continue = False
        for name, value in self._headers:
            lname = name.lower()
            if lname == b"content-length":
                # llhttp already refuses duplicates and Content-Length with Transfer-Encoding.
                content_length = int(value)
            elif lname == b"transfer-encoding":
                chunked = value.lower().rstrip().endswith(b"chunked")
            elif lname == b"expect":
                if value.lower() != b"100-continue":
                    raise HTTPError(417, f"unsupported expectation {value.decode('latin-1')!r}")
                expect_continue = True
        version = self._parser.get_http_version()
        if version == "1.1" and not any(name.lower() == b"host" for name, _ in self._headers):
            raise HTTPError(400, "HTTP/1.1 request without a Host header")
        return RequestHead(
            method=self._parser.get_method().decode("ascii"),
            target=bytes(self._url),
            version="HTTP/" + version,
            headers=self._headers,
            keep_alive=self._parser.should_keep_alive(),
            content_length=content_length,
            chunked=chunked,
            expect_continue=expect_continue,
        )
