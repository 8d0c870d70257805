"""How a child's connection ends its process, in a real forked child over a real socket pair."""

import os
import socket
import sys

import pytest

from forkserver.app import hello_app
from forkserver.connection import Connection, ConnectionSettings

REQUEST = b"GET /hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"


def _serve_in_child(ends_child):
    """Fork; the child serves one request on a socket pair, and exits 3 if serve returns."""
    client, server = socket.socketpair()
    connection = Connection(("127.0.0.1", 8888), hello_app, ConnectionSettings(), ends_child=ends_child)
    pid = os.fork()
    if pid == 0:
        try:
            client.close()
            connection.serve(server, ("127.0.0.1", 50000))
        finally:
            os._exit(3)
    server.close()
    with client:
        client.sendall(REQUEST)
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
    _, status = os.waitpid(pid, 0)
    return reply, os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("ends_child, exit_code", [((sys.stdout, sys.stderr), 0), (None, 3)])
def test_a_childs_connection_ends_the_child_once_closed(ends_child, exit_code):
    reply, code = _serve_in_child(ends_child)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"\r\n\r\nHello, World!"), reply
    assert code == exit_code
