"""The HTTP parser: bytes in, request events out, no sockets.

llhttp (through httptools) parses. This module decides what llhttp is given and
when, and checks what llhttp lets through, so that the result is right by
RFC 9110/9112 and by other servers' test corpora:

* llhttp is given one message at a time (the head, then exactly its body), so
  an error in a pipelined request is reported after the requests before it,
  and nothing after a message that closes the connection is parsed at all;
* llhttp knows a fixed list of methods, while any token is a method: a method
  llhttp does not know is shown to it as GET and reported as sent;
* chunk extensions may have whitespace around ``;`` and ``=`` (RFC 9112
  section 7.1.1), which llhttp refuses: extensions are checked here and
  removed before llhttp sees the chunk-size line (nothing uses them);
* field lines are measured whole (name, colon, value, CRLF), as gunicorn does;
* the request target's form must fit the method, Host must be there once and
  valid, HTTP/1.0 may not use Transfer-Encoding, only HTTP/1.0 and 1.1 are
  served, and trailer fields never reach the request's header fields.

Errors are events too: ``next_event`` raises ``HTTPError`` when it reaches
one, after every event that came before it. Keeping this free of I/O means
every rule is testable with plain byte strings.
"""

import collections
import http
import re
from typing import NamedTuple  # annotations evaluated, not strings: see bytecode.py

import httptools


class HTTPError(Exception):
    """The request cannot be served; ``status`` is the 4xx (or 501, 505) to answer with."""

    def __init__(self, status: int, detail: str = ""):
        super().__init__(detail or http.HTTPStatus(status).phrase)
        self.status = status
        self.detail = detail or http.HTTPStatus(status).phrase


class Limits(NamedTuple):
    # gunicorn's names and values, so operators know what to expect.
    max_request_line: int = 4094
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
_new_tuple = tuple.__new__
_VERSIONS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_METHOD = re.compile(_TOKEN)
# Methods llhttp is shown as sent; any other token is shown as GET.
_LLHTTP_METHODS = frozenset((b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT"))
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*" + _TOKEN
                         + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*\r\n")
_MAX_CHUNK_LINE = 4096
# uri-host [":" port] (RFC 3986): IP-literal, or reg-name without "," (a list is never one host).
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+;=]+)(?::[0-9]*)?")
_PORT = re.compile(rb":[0-9]+$")
# absolute-form: scheme "://" [userinfo "@"] host [":" port] ...
_ABSOLUTE = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*://(?:[A-Za-z0-9\-._~%!$&'()*+,;=:]*@)?([^/?#@]*)")
# RFC 9110 section 6.5.1: fields that frame, route, authenticate or modify a
# request cannot come late, in a trailer section.
_FORBIDDEN_TRAILERS = frozenset((
    b"host", b"content-length", b"transfer-encoding", b"trailer", b"te", b"authorization",
    b"proxy-authorization", b"expect", b"max-forwards", b"cache-control", b"range", b"if-match",
    b"if-none-match", b"if-modified-since", b"if-unmodified-since", b"if-range", b"content-encoding",
    b"content-range",
))
_SINGLETONS = (b"host", b"content-type")  # RFC 9110 section 5.3: never combined into a list
_FRAMING_FIELDS = frozenset((*_SINGLETONS, b"content-length", b"transfer-encoding", b"expect"))

# What the parser is waiting for.
_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _CLOSED = range(6)


class RequestParser:
    """Feed it bytes as they arrive; take events with ``next_event``.

    Pipelined requests are queued in order. After a request that does not keep
    the connection alive, an upgrade request or CONNECT, or an error, the rest
    of the stream is not parsed (``unread`` tells whether there was any).
    """

    __slots__ = ("limits", "_llhttp", "_events", "_error", "_valid_host", "_pending", "_stage", "_body_left",
                 "_method", "_url", "_headers", "_in_trailers", "_body_seen", "_keep_alive", "upgraded", "unread")

    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self._llhttp = httptools.HttpRequestParser(self)
        self._events: collections.deque = collections.deque()
        self._error: HTTPError | None = None
        self._valid_host = None      # the last Host found valid: a kept-alive client repeats it
        self._pending = b""          # received, not yet given to llhttp
        self._stage = _HEAD
        self._body_left = 0          # bytes llhttp still expects in this body or chunk
        self._method = ""
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_trailers = False
        self._body_seen = 0
        self._keep_alive = True
        self.upgraded = False
        self.unread = False

    # --- the I/O side calls these ---

    @property
    def in_message(self) -> bool:
        """True from a request's first byte until its end: a timeout then means a slow client."""
        return self._stage != _HEAD or bool(self._pending)

    def feed(self, data: bytes) -> None:
        if self._stage == _CLOSED:
            self.unread = self.unread or bool(data)
            return
        self._pending = self._pending + data if self._pending else data
        try:
            self._advance()
        except HTTPError as exc:
            self._close_stream()
            self._error = exc  # comes after every event queued so far, and nothing comes after it

    def next_event(self):
        """The next RequestHead, bytes chunk or END; None when more input is needed.

        Raises HTTPError when the next thing in the stream is a request that
        cannot be served.
        """
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return None

    # --- deciding what llhttp sees ---

    def _advance(self) -> None:
        while self._pending and self._stage != _CLOSED:
            if self._stage == _HEAD:
                if not self._take_head():
                    return
            elif self._stage in (_BODY, _CHUNK_DATA):
                count = min(self._body_left, len(self._pending))
                self._body_left -= count
                if self._stage == _CHUNK_DATA and not self._body_left:
                    self._stage = _CHUNK_SIZE
                self._give(count)
            elif self._stage == _CHUNK_SIZE:
                if not self._take_chunk_line():
                    return
            elif not self._take_trailers():
                return

    def _give(self, count: int, replacement: bytes | None = None) -> None:
        """Hand the first `count` pending bytes (or a replacement for them) to llhttp."""
        pending = self._pending
        data = (pending if count == len(pending) else pending[:count]) if replacement is None else replacement
        self._pending = pending[count:] if count < len(pending) else b""
        try:
            self._llhttp.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.upgraded = True
            self._close_stream()
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HTTPError):
                raise exc.__context__ from None
            raise HTTPError(400, str(exc)) from None
        except httptools.HttpParserError as exc:
            raise HTTPError(400, str(exc)) from None

    def _close_stream(self) -> None:
        self._stage = _CLOSED
        self.unread = self.unread or bool(self._pending)
        self._pending = b""

    def _take_head(self) -> bool:
        pending = self._pending
        while pending[:2] == b"\r\n":  # empty lines before a request line (RFC 9112 section 2.2)
            pending = self._pending = pending[2:]
        end = pending.find(b"\r\n\r\n")
        if end < 0:
            self._check_partial_head()
            return False
        line_end = pending.find(b"\r\n")
        if line_end > self.limits.max_request_line:
            raise HTTPError(414, f"request line over {self.limits.max_request_line} bytes")
        if end + 4 > self.limits.max_field_size:
            self._check_field_lines(pending[line_end + 2:end + 2])
        space = pending.find(b" ", 0, line_end)
        method = pending[:space]
        replacement = None
        if method not in _LLHTTP_METHODS:
            if space < 0 or not _METHOD.fullmatch(method):
                raise HTTPError(400, "malformed request line")
            if method.upper() != method:
                raise HTTPError(501, f"method {method.decode('ascii')!r} is not implemented")
            replacement = b"GET" + pending[space:end + 4]
        self._method = method.decode("ascii")
        # What llhttp's on_message_begin would reset, reset here: one Python call less per request.
        self._url = b""
        self._headers = []
        self._in_trailers = False
        self._body_seen = 0
        self._give(end + 4, replacement)
        return True

    def _check_partial_head(self) -> None:
        """A head still arriving must stay within the limits, use CRLF, and begin with a method.

        The method is checked as soon as it arrives, so that a client speaking
        another protocol (an ssh banner, a redis command) hears 400 at once,
        not 408 after the header timeout. (A TLS ClientHello already holds a
        bare LF, refused below.)
        """
        pending = self._pending
        space = pending.find(b" ")
        method = pending if space < 0 else pending[:space]
        if method not in (b"", b"\r") and not _METHOD.fullmatch(method):  # b"\r": a CRLF half there
            raise HTTPError(400, "malformed request line")
        line_start = pending.rfind(b"\n") + 1
        if line_start == 0:
            if len(pending) > self.limits.max_request_line:
                raise HTTPError(414, f"request line over {self.limits.max_request_line} bytes")
        elif len(pending) - line_start > self.limits.max_field_size:
            raise HTTPError(431, f"header field over {self.limits.max_field_size} bytes")
        if line_start and pending.count(b"\n") != pending.count(b"\r\n"):
            raise HTTPError(400, "line ending without CR")
        if pending.count(b"\n") > self.limits.max_header_fields + 1:
            raise HTTPError(431, f"more than {self.limits.max_header_fields} header fields")

    def _check_field_lines(self, fields: bytes) -> None:
        for line in fields.split(b"\r\n"):
            if len(line) + 2 > self.limits.max_field_size:
                raise HTTPError(431, f"header field over {self.limits.max_field_size} bytes")

    def _take_chunk_line(self) -> bool:
        pending = self._pending
        end = pending.find(b"\r\n", 0, _MAX_CHUNK_LINE)
        if end < 0:
            if len(pending) >= _MAX_CHUNK_LINE:
                raise HTTPError(400, "chunk-size line too long")
            return False
        match = _CHUNK_LINE.fullmatch(pending, 0, end + 2)
        if match is None:
            raise HTTPError(400, "invalid chunk-size line")
        size = int(match.group(1), 16)
        if size == 0:
            self._stage = _TRAILERS
        else:
            self._stage = _CHUNK_DATA
            self._body_left = size + 2  # the data and its CRLF, which llhttp checks
        self._give(end + 2, match.group(1) + b"\r\n")
        return True

    def _take_trailers(self) -> bool:
        pending = self._pending
        end = 0 if pending.startswith(b"\r\n") else pending.find(b"\r\n\r\n")
        if end < 0:
            if len(pending) > self.limits.max_field_size:
                raise HTTPError(431, f"trailer section over {self.limits.max_field_size} bytes")
            return False
        self._give(end + (2 if end == 0 else 4))
        return True

    # --- llhttp callbacks ---

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_trailers:
            if name.lower() in _FORBIDDEN_TRAILERS:
                raise HTTPError(400, f"{name.decode('latin-1')} is not allowed in a trailer section")
            return  # trailers never change the request's header fields (RFC 9110 section 6.5.1)
        if len(self._headers) >= self.limits.max_header_fields:
            raise HTTPError(431, f"more than {self.limits.max_header_fields} header fields")
        self._headers.append((name, value.rstrip(b" \t")))  # llhttp strips the leading whitespace

    def on_headers_complete(self) -> None:
        self._in_trailers = True
        head = self._make_head()
        if head.content_length is not None and head.content_length > self.limits.max_body:
            raise HTTPError(413, f"body of {head.content_length} bytes is over the {self.limits.max_body} byte limit")
        self._keep_alive = head.keep_alive
        if head.chunked:
            self._stage = _CHUNK_SIZE
        elif head.content_length:
            self._stage = _BODY
            self._body_left = head.content_length
        self._events.append(head)

    def on_body(self, body: bytes) -> None:
        self._body_seen += len(body)
        if self._body_seen > self.limits.max_body:
            raise HTTPError(413, f"body is over the {self.limits.max_body} byte limit")
        self._events.append(body)

    def on_message_complete(self) -> None:
        self._events.append(END)
        if self._keep_alive:
            self._stage = _HEAD
        else:
            self._close_stream()  # nothing after a request that closes is read (RFC 9112 section 9.6)

    # --- what llhttp lets through ---

    def _make_head(self) -> RequestHead:
        version = self._llhttp.get_http_version()
        if version != "1.1" and version != "1.0":
            raise HTTPError(505, f"HTTP/{version} is not supported")
        content_length = None
        chunked = expect_continue = False
        host = None
        seen = set()
        for name, value in self._headers:
            lname = name.lower()
            if lname not in _FRAMING_FIELDS:
                continue
            if lname in _SINGLETONS:
                if lname in seen:
                    raise HTTPError(400, f"more than one {name.decode('latin-1')} field")
                seen.add(lname)
                if lname == b"host":
                    host = value
            elif lname == b"content-length":
                # llhttp already refuses duplicates and Content-Length with Transfer-Encoding.
                content_length = int(value)
            elif lname == b"transfer-encoding":
                if version == "1.0":
                    raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
                chunked = value.lower().rstrip().endswith(b"chunked")
            elif value.lower() != b"100-continue":  # Expect
                raise HTTPError(417, f"unsupported expectation {value.decode('latin-1')!r}")
            else:
                expect_continue = version == "1.1"  # an HTTP/1.0 client does not wait for it
        if host is not None:
            if host != self._valid_host:
                # A name or IPv4 address with an optional port is checked with bytes
                # methods (a regular expression costs each child more pages); the rest
                # by _HOST.
                name, colon, port = host.partition(b":")
                usual = ((not colon or not port or port.isdigit())
                         and name.replace(b".", b"").replace(b"-", b"").isalnum())
                if not usual and not _HOST.fullmatch(host):
                    raise HTTPError(400, f"invalid Host {host.decode('latin-1')!r}")
                self._valid_host = host
        elif version == "1.1":
            raise HTTPError(400, "HTTP/1.1 request without a Host header")
        if self._url[:1] != b"/" or self._method == "CONNECT":
            self._check_target()
        # tuple.__new__ directly: RequestHead's generated __new__ would be one more Python call
        return _new_tuple(RequestHead, (self._method, self._url, _VERSIONS[version], self._headers,
                                        self._llhttp.should_keep_alive(), content_length, chunked, expect_continue))

    def _check_target(self) -> None:
        """The four forms of request target (RFC 9112 section 3.2), each where it belongs."""
        target, method = self._url, self._method
        if target[:1] == b"/":
            pass
        elif target == b"*":
            if method == "OPTIONS":
                return
        elif method == "CONNECT":
            if _HOST.fullmatch(target) and _PORT.search(target):
                return
        else:
            absolute = _ABSOLUTE.match(target)
            if absolute and _HOST.fullmatch(absolute.group(1)):
                return
        raise HTTPError(400, f"request target {target.decode('latin-1')!r} is not valid for {method}")
