"""The check request: ask the app for one path, served as a child serves a client.

``--check-config`` proves that the app imports and the settings are sound,
but an app can import and still answer every request with 500. With
``--check-path``, the check also asks the app for that path before it
passes. A hot upgrade runs the new code's ``--check-config`` while the old
code keeps serving, so code whose app fails the request never takes a
client: the server keeps the code it runs and says why.

The request goes through the parts a real request goes through: a forked
child runs the same ``Connection`` over one end of a socket pair, so the
parser, the WSGI bridge and the app's own behaviour after a fork are all
part of the check. Only the bytes on the wire are read back, not the
server's own idea of how it went.
"""

from __future__ import annotations

import os
import signal
import socket
import time

from .connection import Connection, ConnectionSettings
from .listeners import parse_address

FAILING_STATUS = 400  # this or above fails the check: the app could not serve the path
RESPONSE_LIMIT = 64 * 1024  # the status line is all the check needs; the rest is read and dropped


class AppCheckError(Exception):
    """The app did not answer the check request well: one line for the operator."""


def check_app(app, path: str, bind: str, settings: ConnectionSettings, host: str | None = None) -> str:
    """GET `path` from `app` as a client of `bind` would, naming `host` in the Host
    header (default: the address of `bind`); returns the status line's code and
    reason (``200 OK``), or raises AppCheckError."""
    server_address, address_host = _addressed_as(bind)
    host = host or address_host
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: forkserver-check\r\n"
               "Connection: close\r\n\r\n").encode("latin-1")
    ours, theirs = socket.socketpair()
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        raise
    if pid == 0:  # the child: serve the one connection, as a forked child serves a client
        try:
            ours.close()
            connection = Connection(server_address, app, settings._replace(proxy_protocol_from=()))
            connection.serve(theirs, ("127.0.0.1", 0))
        finally:
            os._exit(0)
    theirs.close()
    try:
        answer = _exchange(ours, request, settings.child_timeout)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        raise AppCheckError(f"the app did not answer GET {path} within {settings.child_timeout:g}s "
                            "(--child-timeout)") from None
    finally:
        ours.close()
        status = _reap(pid)
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, code_reason = status_line.partition(" ")
    code = code_reason[:3]
    if not version.startswith("HTTP/") or not code.isdigit():
        raise AppCheckError(f"the app gave no answer to GET {path} ({_how_child_ended(status)})")
    if int(code) >= FAILING_STATUS:
        raise AppCheckError(f"the app answered GET {path} with {code_reason}")
    return code_reason


def _addressed_as(bind: str):
    """SERVER_NAME/SERVER_PORT and the Host header a client of this listener would send."""
    address = parse_address(bind)
    if address.family == socket.AF_UNIX:
        return address.path, "localhost"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(address.host, address.host)
    shown = f"[{host}]" if ":" in host else host
    return (address.host, address.port), f"{shown}:{address.port}"


def _exchange(sock, request: bytes, timeout: float) -> bytes:
    """Send the request and read the answer to its end (the child closes), within `timeout`."""
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    try:
        sock.sendall(request)
    except ConnectionError:  # the child is gone already: read what it left
        pass
    answer = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        answer += data[:max(0, RESPONSE_LIMIT - len(answer))]
    return bytes(answer)


def _reap(pid: int) -> int:
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


def _how_child_ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"its process was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    if os.WIFEXITED(status) and os.WEXITSTATUS(status):
        return f"its process exited with status {os.WEXITSTATUS(status)}"
    return "the connection closed without a response"
