"""The WSGI bridge (PEP 3333): build the environ, run the app, frame what it returns.

The bridge never touches a socket itself: it is given a ``send`` callable (and
optionally ``sendfile``) by the connection, so framing rules are testable alone.
"""

from __future__ import annotations


import re
import sys
from urllib.parse import unquote_to_bytes

import httptools

from .log import log
from .response import (HOP_BY_HOP, LAST_CHUNK, SERVER, encode_chunk,
                       encode_head, error_response, http_date)




_STATUS = re.compile(r"[1-9][0-9][0-9] [^\x00-\x08\x0a-\x1f\x7f]*")
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_FIELD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class ClientDisconnected(Exception):
    """The client went away mid-request; nothing more can be sent."""


class FileWrapper:
    """wsgi.file_wrapper: iterates a file in blocks, or lets the server sendfile() it."""

    def __init__(self, filelike, blksize: int = 64 * 1024):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        read = self.filelike.read
        while True:
            data = read(self.blksize)
            if not data:
                return
            yield data


def base_environ(server: tuple[str, str], remote: tuple[str, str], url_scheme: str = "http") -> dict:
    """What every request on one connection shares; copied per request."""
    return {
        "SERVER_NAME": server[0],
        "SERVER_PORT": server[1],
        "REMOTE_ADDR": remote[0],
        "REMOTE_PORT": remote[1],
        "SCRIPT_NAME": "",
        "SERVER_SOFTWARE": SERVER,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
    }


def request_environ(base: dict, head, body_stream) -> dict:
    environ = base.copy()
    path, query = _split_target(head.target)
    environ["REQUEST_METHOD"] = head.method
    environ["PATH_INFO"] = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["RAW_URI"] = head.target.decode("latin-1")
    environ["SERVER_PROTOCOL"] = head.version
    environ["wsgi.input"] = body_stream
    if head.chunked:
        environ["wsgi.input_terminated"] = True
    for name, value in head.headers:
        key = name.decode("latin-1").upper()
        if "_" in key:
            continue  # would be indistinguishable from its dashed twin (as gunicorn does)
        key = key.replace("-", "_")
        if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
            environ[key] = value.decode("latin-1")
            continue
        key = "HTTP_" + key
        text = value.decode("latin-1")
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    if target.startswith(b"/"):
        path, _, query = target.partition(b"?")
        return path, query.partition(b"#")[0]
    if target == b"*":
        return b"*", b""
    try:  # absolute-form, as sent to proxies
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        return target, b""
    return url.path or b"/", url.query or b""


class Response:
    """start_response and write() for one request, and the framing of its body.

    The body is framed by Content-Length when the app gives it or when the whole
    body is known up front, by chunked encoding otherwise (HTTP/1.1), and by
    closing the connection as a last resort (HTTP/1.0).
    """

    __slots__ = ("head", "_send", "_sendfile", "keep_alive", "status", "status_code", "headers",
                 "headers_sent", "body_bytes", "_length", "_chunked", "_no_body")

    def __init__(self, head, send, sendfile=None, keep_alive: bool = True):
        self.head = head
        self._send = send
        self._sendfile = sendfile
        self.keep_alive = keep_alive
        self.status: str | None = None
        self.status_code = 0
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False
        self.body_bytes = 0
        self._length: int | None = None  # Content-Length promised
        self._chunked = False
        self._no_body = False

    # --- PEP 3333 callables ---

    def start_response(self, status, headers, exc_info=None):
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        # What the app sends is checked as strictly as what clients send: a CR,
        # LF or NUL in the status or a header would split the response.
        # The usual case is decided by str methods, without the regular expressions:
        # a printable string has none of the control characters refused.
        if not isinstance(status, str) or not (
                status[3:4] == " " and status[:3].isdigit() and status.isascii() and status[0] != "0"
                and status.isprintable() or _STATUS.fullmatch(status)):
            raise AssertionError(f"invalid status line {status!r}")
        for name, value in headers:
            if not isinstance(name, str) or not isinstance(value, str):
                raise AssertionError(f"header {name!r}: {value!r} must be a pair of str")
            if not (name.isascii() and name.replace("-", "").isalnum() or _FIELD_NAME.fullmatch(name)) \
                    or not value.isprintable() and _BAD_FIELD_VALUE.search(value):
                raise AssertionError(f"header {name!r}: {value!r} is not a valid field (control character?)")
        self.status = status
        self.status_code = int(status[:3])
        self.headers = list(headers)
        return self.write

    def write(self, data: bytes) -> None:
        if self.status is None:
            raise AssertionError("write() before start_response()")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"WSGI body chunks must be bytes, not {type(data).__name__}")
        if not self.headers_sent:
            self._send_head(bytes(data), known_length=None)
        elif data:
            self._send_body(bytes(data))

    # --- driving the app ---

    def run(self, app, environ) -> None:
        """Call the app, send what it returns; always close() its iterable."""
        result = app(environ, self.start_response)
        try:
            if isinstance(result, FileWrapper) and self._sendfile and self._try_sendfile(result):
                return
            if isinstance(result, (list, tuple)) and len(result) == 1 and not self.headers_sent:
                # The whole body is known: one send, framed by its length.
                if self.status is None:
                    self._not_started()
                self._send_head(bytes(result[0]), known_length=len(result[0]))
            else:
                for data in result:
                    if data:
                        self.write(data)
            self.finish()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def finish(self) -> None:
        if self.status is None:
            self._not_started()
        if not self.headers_sent:
            self._send_head(b"", known_length=0)
        elif self._chunked:
            self._send(LAST_CHUNK)
        if self._length is not None and self.body_bytes < self._length and not self._no_body:
            log.warning("app sent %d of the %d bytes it promised in Content-Length; closing the connection",
                        self.body_bytes, self._length)
            self.keep_alive = False

    def send_error(self, status: int, detail: str = "") -> None:
        """Answer with an error page instead of the app's response, and close."""
        self.status_code = status
        self.keep_alive = False
        data = error_response(status, detail)
        self.body_bytes = len(data) - data.index(b"\r\n\r\n") - 4
        self.headers_sent = True
        self._send(data)

    # --- framing ---

    @staticmethod
    def _not_started() -> None:
        # Called only when self.status is None: the test stays with the caller,
        # since a call is pages written in every child.
        raise AssertionError("the app returned without calling start_response()")

    def _send_head(self, first: bytes, known_length: int | None) -> None:
        head = self.head
        status = self.status_code
        # 1xx, 204 and 304 responses, and every answer to HEAD, carry no body.
        self._no_body = head.method == "HEAD" or status < 200 or status == 204 or status == 304
        headers = []
        has_date = has_server = False
        for name, value in self.headers:
            lname = name.lower()
            if lname in HOP_BY_HOP:
                if lname == "connection" and value.strip().lower() == "close":
                    self.keep_alive = False
                    continue
                raise AssertionError(f"hop-by-hop header {name!r} is the server's to send")
            if lname == "content-length":
                self._length = int(value)
            elif lname == "date":
                has_date = True
            elif lname == "server":
                has_server = True
            headers.append((name, value))
        if not has_server:
            headers.append(("Server", SERVER))
        if not has_date:
            headers.append(("Date", http_date()))
        if self._length is None and known_length is not None and self.status_code not in (204, 304) \
                and self.status_code >= 200:
            self._length = known_length
            headers.append(("Content-Length", str(known_length)))
        if self._length is None and not self._no_body:
            if head.version == "HTTP/1.1":
                self._chunked = True
                headers.append(("Transfer-Encoding", "chunked"))
            else:
                self.keep_alive = False
        if not self.keep_alive:
            headers.append(("Connection", "close"))
        elif head.version == "HTTP/1.0":
            headers.append(("Connection", "keep-alive"))
        data = encode_head(self.status, headers)
        self.headers_sent = True
        if first and not self._no_body:
            data += self._frame(first)
        self._send(data)

    def _send_body(self, data: bytes) -> None:
        if self._no_body:
            return
        self._send(self._frame(data))

    def _frame(self, data: bytes) -> bytes:
        if self._length is not None:
            room = self._length - self.body_bytes
            if len(data) > room:
                log.warning("app sent more than its Content-Length of %d; the rest is dropped", self._length)
                data = data[:max(room, 0)]
                self.keep_alive = False
        self.body_bytes += len(data)
        return encode_chunk(data) if self._chunked else data

    def _try_sendfile(self, wrapper: FileWrapper) -> bool:
        """Zero-copy path for a file with a fileno and a Content-Length the app set."""
        filelike = wrapper.filelike
        if not hasattr(filelike, "fileno") or self.headers_sent:
            return False
        if self.status is None:
            self._not_started()
        if not any(name.lower() == "content-length" for name, _ in self.headers):
            return False
        try:
            filelike.fileno()
        except (OSError, ValueError):
            return False
        self._send_head(b"", known_length=None)
        if not self._no_body and self._length:
            sent = self._sendfile(filelike, self._length)
            self.body_bytes += sent
            if sent < self._length:
                self.keep_alive = False
        return True

