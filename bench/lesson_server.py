"""The classic lesson's forking server, finished, with valid HTTP.

The lesson builds a server that forks one child per connection and reaps
children in a SIGCHLD handler.  Its final, correct form is this one:

* the handler loops ``waitpid(-1, WNOHANG)`` until no exited child is left,
  because several SIGCHLDs arriving together are delivered as one;
* ``accept()`` is restarted when a signal interrupts it (EINTR);
* the listen backlog is 1024, so a burst of clients waits in the queue
  instead of being refused.

It reads the request up to the blank line and answers a valid HTTP/1.1 200
with Content-Length and ``Connection: close``, then closes: one request per
connection, no keep-alive.  It is the baseline forkserver is measured
against in bench/run.

Usage: python bench/lesson_server.py [--preload MODULE[,MODULE...]] [HOST] PORT

``--preload`` is for bench/forkcost only: the server imports the modules
before it listens and keeps them out of the collector (``gc.freeze()``), as
forkserver keeps its own, but serves exactly as without them.  Every fork
then copies an address space as large as forkserver's, so the difference
between the two runs prices what the imports cost each connection, apart
from what forkserver does per connection.
"""

import errno
import gc
import importlib
import os
import signal
import socket
import sys

BODY = b"Hello, World!"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"Connection: close\r\n"
    b"\r\n" + BODY
)
BACKLOG = 1024
MAX_HEAD = 64 * 1024  # a request head larger than this is not a hello request


def reap_children(signum, frame):
    """Reap every exited child: one SIGCHLD may stand for many exits."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # no children at all
            return
        if pid == 0:  # children left, none exited yet
            return


def read_head(conn):
    """Read until the blank line that ends the request head (or EOF)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < MAX_HEAD:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def handle(conn):
    """Child side: answer one request, close, exit without parent cleanup."""
    try:
        if read_head(conn):
            conn.sendall(RESPONSE)
    except OSError:
        pass  # the client went away; nothing to tell it
    finally:
        conn.close()
        os._exit(0)


def accept(listener):
    """accept(), restarted when a signal interrupts it.

    Python retries EINTR itself since PEP 475; the loop keeps the lesson's
    point explicit and also covers ECONNABORTED.
    """
    while True:
        try:
            return listener.accept()
        except InterruptedError:
            continue
        except OSError as exc:
            if exc.errno == errno.ECONNABORTED:
                continue
            raise


def listen(host, port):
    """The listening socket, with the backlog that lets a burst wait."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(BACKLOG)
    return listener


def serve(host, port):
    """Fork one child per connection, forever."""
    listener = listen(host, port)
    signal.signal(signal.SIGCHLD, reap_children)
    while True:
        conn, _ = accept(listener)
        pid = os.fork()
        if pid == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            handle(conn)
        conn.close()  # the child has its own copy


def preload(modules):
    """Import `modules` and freeze what they made, as a server that uses them would hold it."""
    for name in modules:
        importlib.import_module(name)
    gc.freeze()


def main(argv):
    """Parse [--preload MODULES] [HOST] PORT and serve."""
    if argv[:1] == ["--preload"]:
        preload(argv[1].split(","))
        argv = argv[2:]
    run(serve, argv)


def run(serve, argv):
    """Call serve(HOST, PORT) from [HOST] PORT until interrupted."""
    host, port = ("127.0.0.1", argv[0]) if len(argv) == 1 else argv[:2]
    try:
        serve(host, int(port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
