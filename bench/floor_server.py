"""The floor: the least a fork-per-connection WSGI server must do per connection.

A reference for bench/run and bench/forkcost, not a server to deploy.  It is
shaped for one job and skips everything forkserver does besides: no poll
loop, no cap on children, no timeouts kept by the parent, no keep-alive, no
graceful stop, no metrics, no logging.  What it keeps is what any server that
speaks HTTP/1.1 and PEP 3333 must do for each connection, and nothing more:

* the parent blocks in ``accept()``, forks, closes its copy of the
  connection, and reaps with the lesson server's SIGCHLD handler, which loops
  ``waitpid(-1, WNOHANG)``; it takes the accepted descriptor as it is and
  builds no socket object for it;
* symbols are bound eagerly (``LD_BIND_NOW=1``, set by one re-exec at start
  and not passed on), so that no child resolves one lazily and writes the
  tables it would fill, and what the imports built is frozen out of the
  collector (``gc.freeze()``);
* the child resets the signals the parent handles, closes the listener, sets
  ``TCP_NODELAY`` and a timeout, parses the head with httptools (400 for a
  malformed head or URL, or for HTTP/1.1 without Host), builds a PEP 3333
  environ, calls the app through ``start_response`` (500 and the traceback on
  stderr if it fails), writes one response with ``Connection: close``, and
  exits with ``os._exit``.

If forkserver costs what this costs per connection, what it does besides is
free; what this costs beyond the lesson server is the price of speaking
HTTP/1.1 and WSGI from a forked Python child.

Usage: python bench/floor_server.py [HOST] PORT   (serves bench/hello_app.py)
"""

import gc
import io
import os
import signal
import socket
import sys
from urllib.parse import unquote_to_bytes

import httptools

import lesson_server
from hello_app import app

TIMEOUT = 30.0  # seconds a child waits on its client
BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
               b"Connection: close\r\n\r\nBad Request")
SERVER_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
                b"Connection: close\r\n\r\nInternal Server Error")


class Head:
    """What httptools reports of one request."""

    __slots__ = ("url", "headers", "body", "complete")

    def __init__(self):
        self.url = b""
        self.headers = []
        self.body = []
        self.complete = False

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_body(self, chunk):
        self.body.append(chunk)

    def on_message_complete(self):
        self.complete = True


def environ_for(head, parser, peer, server):
    """The PEP 3333 environ of one parsed request."""
    url = httptools.parse_url(head.url)
    environ = {
        "REQUEST_METHOD": parser.get_method().decode("latin-1"),
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(url.path or b"/").decode("latin-1"),
        "QUERY_STRING": (url.query or b"").decode("latin-1"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/" + parser.get_http_version(),
        "REMOTE_ADDR": peer[0],
        "REMOTE_PORT": str(peer[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b"".join(head.body)),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in head.headers:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        text = value.decode("latin-1")
        environ[key] = environ[key] + "," + text if key in environ else text
    return environ


def respond(conn, environ):
    """Call the app and send its response, framed with Content-Length."""
    status_line, response_headers, body_parts = [], [], []

    def start_response(status, headers, exc_info=None):
        status_line[:] = [status]
        response_headers[:] = headers
        return body_parts.append  # write(): kept until the head has gone out

    try:
        chunks = app(environ, start_response)
        try:
            body_parts.extend(chunks)
            body = b"".join(body_parts)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
    except Exception:  # the app failed: a 500 for the client, the traceback for the operator
        import traceback  # only here: the parent need not hold it
        traceback.print_exc()
        conn.sendall(SERVER_ERROR)
        return
    lines = ["HTTP/1.1 " + status_line[0]]
    lines += [f"{name}: {value}" for name, value in response_headers if name.lower() != "connection"]
    if not any(name.lower() == "content-length" for name, _ in response_headers):
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def handle(fd, peer, listener):
    """Child side: one request on the accepted descriptor, then exit without the parent's cleanup."""
    try:
        for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        listener.close()
        conn = socket.socket(fileno=fd)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(TIMEOUT)
        head = Head()
        parser = httptools.HttpRequestParser(head)
        try:
            while not head.complete:
                data = conn.recv(65536)
                if not data:
                    return
                parser.feed_data(data)
            if parser.get_http_version() == "1.1" and not any(n.lower() == b"host" for n, _ in head.headers):
                raise httptools.HttpParserError("HTTP/1.1 without Host")
            environ = environ_for(head, parser, peer, conn.getsockname())
        except httptools.HttpParserError:  # a malformed head or URL, or no Host
            conn.sendall(BAD_REQUEST)
            return
        respond(conn, environ)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the client went away or timed out; nothing to tell it
    finally:
        os._exit(0)  # the kernel closes the connection with the process


def serve(host, port):
    """Fork one child per connection, forever."""
    listener = lesson_server.listen(host, port)
    signal.signal(signal.SIGCHLD, lesson_server.reap_children)
    # The raw accept gives a descriptor, not a socket object: the parent,
    # which only forks and closes it, builds nothing per connection.
    accept = listener._accept
    gc.freeze()
    while True:
        try:
            fd, peer = accept()  # EINTR is retried by Python itself (PEP 475)
        except ConnectionAbortedError:
            continue
        if os.fork() == 0:
            handle(fd, peer, listener)
        os.close(fd)


def main(argv):
    """Re-exec once with eager binding, then serve on [HOST] PORT."""
    if os.environ.get("LD_BIND_NOW") != "1":
        os.execve(sys.executable, [sys.executable, __file__, *argv], {**os.environ, "LD_BIND_NOW": "1"})
    del os.environ["LD_BIND_NOW"]  # the app's own subprocesses bind as usual
    lesson_server.run(serve, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
