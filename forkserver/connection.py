"""One connection, served start to finish inside a forked child.

The loop reads a request head, runs the app through the WSGI bridge, and goes
round again while the connection may be kept alive. Every wait on the client
is bounded: ``header_timeout`` for a request's headers (slowloris gets a 408),
``keepalive`` for the idle gap between requests.
"""

import os
import sys
# By name: reading a module's attribute writes the module object, one more page
# each forked child would copy.
from os import _exit
from socket import SHUT_RDWR, SHUT_WR
from time import monotonic
from typing import NamedTuple  # annotations evaluated, not strings: see bytecode.py

from .log import log
from . import proxyprotocol
from .httpparser import END, HTTPError, Limits, RequestHead, RequestParser
from .response import CONTINUE, error_response
from .wsgi import ClientDisconnected, Response, base_environ, request_environ



RECV_SIZE = 64 * 1024
DRAIN_LIMIT = 1024 * 1024  # unread body we skip to keep a connection alive; more and we close


class ConnectionSettings(NamedTuple):
    header_timeout: float = 10.0
    keepalive: float = 5.0
    child_timeout: float = 30.0
    limits: Limits = Limits()
    # Networks of the balancers whose connections must begin with a PROXY
    # protocol header; empty: no peer may send one.
    proxy_protocol_from: tuple = ()


class RequestBody:
    """wsgi.input: the body streamed from the socket as the app reads it."""

    __slots__ = ("_connection", "_buffer", "_continue_pending", "done")

    def __init__(self, connection: "Connection", head: RequestHead):
        self._connection = connection
        self._buffer = bytearray()
        self._continue_pending = head.expect_continue
        self.done = False

    def _fill(self) -> None:
        if self._continue_pending:
            self._continue_pending = False
            self._connection.send(CONTINUE)
        event = self._connection.next_body_event()
        if event is END:
            self.done = True
        else:
            self._buffer += event

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while not self.done:
                self._fill()
            size = len(self._buffer)
        while len(self._buffer) < size and not self.done:
            self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                take = end + 1
                break
            if self.done or (limit is not None and len(self._buffer) >= limit):
                take = len(self._buffer)
                break
            self._fill()
        if limit is not None:
            take = min(take, limit)
        data = bytes(self._buffer[:take])
        del self._buffer[:take]
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        while line := self.readline():
            yield line

    @property
    def untouched_continue(self) -> bool:
        """The client awaits 100 Continue that was never sent: it may never send the body."""
        return self._continue_pending

    def skip_received(self) -> bool:
        """Skip the body already received, reading nothing more; True if it was all there."""
        while not self.done:
            event = self._connection.parser.next_event()
            if event is None:
                return False
            self.done = event is END
        return True

    def drain(self, limit: int) -> bool:
        """Skip what the app left unread; True when the next request can be parsed."""
        self._buffer.clear()
        skipped = 0
        while not self.done:
            event = self._connection.next_body_event()
            if event is END:
                self.done = True
            else:
                skipped += len(event)
                if skipped > limit:
                    return False
        return True


class Connection:
    """One client connection, built in two steps so the parent can do the first.

    The parent builds a Connection for each listener before it forks (the
    parser, the environ every request on it shares, the settings, the request
    counter), and never touches it again: every child starts with a pristine
    copy, and calls ``serve`` with its socket, client and counter slot. So what
    does not depend on the client costs a child nothing but the pages it then
    writes.

    ``parent`` is (a byte shared with the parent, the parent's pid). The
    connection is kept alive only while the byte is 0 (the parent sets it
    when it stops or hands over to new code) and the parent is still this
    process's parent: otherwise the current response is the last.
    """

    __slots__ = ("parent", "app", "settings", "access_log", "parser", "_base", "sock", "counter", "remote",
                 "started", "ends_child", "_stdout", "_stderr")

    def __init__(self, server_address, app, settings: ConnectionSettings, access_log=None, parent=None,
                 counter=None, ends_child=None):
        self.parent = parent
        # The unbuffered (stdout, stderr) pair when serving this connection is a
        # forked child's last work; then ``serve`` ends the child itself.
        self.ends_child = ends_child is not None
        self._stdout, self._stderr = ends_child or (None, None)
        self.app = app
        self.settings = settings
        self.access_log = access_log
        self.parser = RequestParser(settings.limits)
        self._base = base_environ(_server_strings(server_address), ("", ""))
        self.sock = None
        self.counter = counter  # stats.SlotCounter: what this child served, for /metrics
        self.remote = ""
        self.started = 0.0

    # --- the loop ---

    def serve(self, sock, peer, slot: int = 0) -> None:
        """Serve the client at `peer` on `sock`, counting into `slot` of the counter, then close."""
        self.sock = sock
        self.started = monotonic()
        if isinstance(peer, tuple) and peer:  # a unix socket's peer has no address
            self.remote = self._base["REMOTE_ADDR"] = peer[0]
            self._base["REMOTE_PORT"] = str(peer[1])
        if self.counter is not None:
            self.counter.slot = slot
        lingering = False
        try:
            if self.settings.proxy_protocol_from and not self._take_proxy_header():
                return
            first = True
            while True:
                head = self._read_head(first)
                if head is None:
                    break
                first = False
                body = self._handle(head)
                if body is not None:
                    # Input the app left unread: drain it briefly, or the close
                    # could reset the connection before the client reads the answer.
                    lingering = not body.skip_received()
                    break
        except HTTPError as exc:
            self._refuse(exc)
            lingering = True
        except (ClientDisconnected, ConnectionError):
            pass
        finally:
            self._close(lingering or self.parser.unread)
        if self.ends_child:
            # The child ends here: returning would free the request's objects,
            # writing pages only to exit then. Written out, not called: calling
            # code the parent never ran costs each child pages of its own.
            # Streams of the app's own may hold output. (The unbuffered pair is
            # kept in two slots here: a page the child writes anyway.)
            try:
                if sys.stdout is not self._stdout or sys.stderr is not self._stderr:
                    sys.stdout.flush()
                    sys.stderr.flush()
            finally:
                _exit(0)

    def _read_head(self, first: bool) -> RequestHead | None:
        """The next request head; None when the client is gone or was idle too long."""
        if first:  # due header_timeout after the connection began, a PROXY header included
            deadline = self.started + self.settings.header_timeout
        else:
            deadline = monotonic() + self.settings.keepalive
        head_deadline = deadline if first else None
        while True:
            event = self.parser.next_event()
            if isinstance(event, RequestHead):
                return event
            if head_deadline is None and self.parser.in_message:
                head_deadline = monotonic() + self.settings.header_timeout
            try:
                data = self._recv(head_deadline or deadline)
            except TimeoutError:
                if head_deadline is not None:
                    raise HTTPError(408, f"headers not received within {self.settings.header_timeout:g}s") from None
                return None  # an idle keep-alive connection: close quietly
            if not data:
                return None
            self.parser.feed(data)

    def _take_proxy_header(self) -> bool:
        """From a configured balancer: read its PROXY header, and take the client's
        address from it. False (the connection is to be closed) when the header is
        bad, missing or late. Any other peer sends plain HTTP, where such a header
        is a malformed request (400).
        """
        if not proxyprotocol.trusted(self.remote, self.settings.proxy_protocol_from):
            return True
        deadline = self.started + self.settings.header_timeout
        data = b""
        try:
            while (header := proxyprotocol.parse(data)) is None:
                chunk = self._recv(deadline)
                if not chunk:
                    log.info("PROXY header from %s: connection closed before it", self.remote)
                    return False
                data += chunk
        except proxyprotocol.ProxyProtocolError as exc:
            log.info("PROXY header from %s refused: %s", self.remote, exc)
            return False
        except TimeoutError:
            log.info("PROXY header from %s not received within %gs", self.remote, self.settings.header_timeout)
            return False
        if header.source is not None:
            self.remote = header.source[0]
            self._base["REMOTE_ADDR"] = header.source[0]
            self._base["REMOTE_PORT"] = str(header.source[1])
        if len(data) > header.length:
            self.parser.feed(data[header.length:])
        return True

    def _handle(self, head: RequestHead) -> RequestBody | None:
        """Serve one request; None when the connection may carry another, else its body."""
        body = RequestBody(self, head)
        started = monotonic()
        keep_alive = (head.keep_alive and not self.parser.upgraded
                      and started - self.started < self.settings.child_timeout / 2
                      and not self._told_to_close())
        response = Response(head, self.send, self._sendfile, keep_alive)
        environ = request_environ(self._base, head, body)
        try:
            response.run(self.app, environ)
        except HTTPError as exc:  # raised by wsgi.input: body over the limit, or too slow
            if response.headers_sent:
                raise ClientDisconnected from None
            response.send_error(exc.status, exc.detail)
        except (ClientDisconnected, ConnectionError):
            raise
        except BaseException:  # SystemExit too: the client still gets its answer
            log.exception("error in app handling %s %s", head.method, environ["RAW_URI"])
            if response.headers_sent:
                raise ClientDisconnected from None  # a half-sent response cannot be repaired
            response.send_error(500)
        if self.access_log:
            self._log_access(head, environ, response)
        if self.counter is not None:
            self.counter.request(head.method, response.status_code, monotonic() - started, response.body_bytes)
        if not response.keep_alive or body.untouched_continue:
            return body
        try:
            return None if body.drain(DRAIN_LIMIT) else body
        except HTTPError:
            return body  # the answer is already sent: just close, without a second one

    def _refuse(self, exc: HTTPError) -> None:
        log.info("%s from %s: %s", exc.status, self.remote or "unix socket", exc.detail)
        answer = error_response(exc.status, exc.detail)
        try:
            self.send(answer)
        except (ClientDisconnected, ConnectionError):
            pass
        if self.counter is not None:
            self.counter.refusal(exc.status, len(answer))
        if self.access_log:
            self.access_log.write(self.remote, "-", exc.status, 0, None, None)

    # --- I/O, used by the body reader and the response ---

    def next_body_event(self):
        """The next body chunk or END of the current request, reading the socket as needed."""
        while True:
            event = self.parser.next_event()
            if event is not None:
                return event
            try:
                data = self._recv(monotonic() + self.settings.header_timeout)
            except TimeoutError:
                raise HTTPError(408, f"body stalled for {self.settings.header_timeout:g}s") from None
            if not data:
                raise ClientDisconnected("client closed the connection mid-body")
            self.parser.feed(data)

    def _recv(self, deadline: float) -> bytes:
        remaining = deadline - monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        return self.sock.recv(RECV_SIZE)

    def send(self, data: bytes) -> None:
        self.sock.settimeout(None)
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ClientDisconnected(str(exc)) from None

    def _sendfile(self, file, count: int) -> int:
        """sendfile(2) from the file's start; the bytes sent (fewer if the file is shorter)."""
        self.sock.settimeout(None)
        out_fd, in_fd, sent = self.sock.fileno(), file.fileno(), 0
        try:
            while sent < count:
                done = os.sendfile(out_fd, in_fd, sent, count - sent)
                if not done:
                    break  # end of file
                sent += done
        except OSError as exc:
            raise ClientDisconnected(str(exc)) from None
        return sent

    def _told_to_close(self) -> bool:
        """Whether the parent has gone, stopped or handed over: then this is the last response."""
        if self.parent is None:
            return False
        retired, parent_pid = self.parent
        return retired[0] != 0 or os.getppid() != parent_pid

    def _close(self, lingering: bool) -> None:
        """Close; with unread input, drain briefly so the client reads our answer, not a reset.

        The shutdown sends the FIN even when another process (one the app
        started) still holds the socket, so the client is never kept waiting.
        """
        try:
            if lingering:
                self.sock.shutdown(SHUT_WR)
                self.sock.settimeout(1.0)
                for _ in range(16):
                    if not self.sock.recv(RECV_SIZE):
                        break
            self.sock.shutdown(SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _log_access(self, head: RequestHead, environ: dict, response: Response) -> None:
        self.access_log.write(self.remote, f"{head.method} {environ['RAW_URI']} {head.version}",
                              response.status_code, response.body_bytes,
                              environ.get("HTTP_REFERER"), environ.get("HTTP_USER_AGENT"))


def _server_strings(server_address) -> tuple[str, str]:
    if isinstance(server_address, tuple):
        return str(server_address[0]), str(server_address[1])
    return "localhost", ""  # a unix socket has no host or port
