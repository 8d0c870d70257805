"""WSGI apps the tests serve (imported by the server process as apps:NAME)."""

import io
import json
import os
import sys
import time
from wsgiref.validate import validator


def echo(environ, start_response):
    """Returns the request body, read through wsgi.input in small pieces."""
    stream = environ["wsgi.input"]
    chunks = []
    while True:
        data = stream.read(1000)
        if not data:
            break
        chunks.append(data)
    body = b"".join(chunks)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


def environ_dump(environ, start_response):
    shown = {key: value for key, value in environ.items() if isinstance(value, (str, bool, int, tuple))}
    shown["wsgi.input.type"] = type(environ["wsgi.input"]).__name__
    shown["wsgi.errors.is_stderr"] = environ["wsgi.errors"] is sys.stderr
    shown["wsgi.file_wrapper.present"] = callable(environ.get("wsgi.file_wrapper"))
    body = json.dumps(shown).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def slow(environ, start_response):
    """Sleeps for ?SECONDS (default 1) before answering."""
    delay = float(environ.get("QUERY_STRING") or 1)
    time.sleep(delay)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"slept %g\n" % delay]


def hang(environ, start_response):
    while True:
        time.sleep(60)


def crash(environ, start_response):
    raise RuntimeError("the app broke on purpose")


def streamed(environ, start_response):
    """A generator with no Content-Length: chunked on HTTP/1.1, close-delimited on 1.0."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    for i in range(5):
        yield b"part %d\n" % i


def with_write(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    return [b"and returned"]


def exc_info(environ, start_response):
    """Starts a response, fails, and replaces it with its own error page (PEP 3333 exc_info)."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("changed my mind")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"custom error page"]


def exc_info_late(environ, start_response):
    """exc_info after the headers went out must re-raise: the server then aborts the response."""
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"partial")
    try:
        raise ValueError("too late")
    except ValueError:
        start_response("500 Internal Server Error", [], sys.exc_info())
    return [b"never sent"]


def file_wrapper(environ, start_response):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps.py")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(os.path.getsize(path)))])
    return environ["wsgi.file_wrapper"](open(path, "rb"), 4096)


def file_wrapper_unsized(environ, start_response):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps.py")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return environ["wsgi.file_wrapper"](open(path, "rb"), 4096)


CLOSED_MARKER = os.environ.get("FORKSERVER_TEST_CLOSE_MARKER", "")


class _ClosingIterable:
    def __init__(self, parts):
        self.parts = parts

    def __iter__(self):
        return iter(self.parts)

    def close(self):
        if CLOSED_MARKER:
            with open(CLOSED_MARKER, "a") as handle:
                handle.write("closed\n")


def closing(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _ClosingIterable([b"one ", b"two"])


def closing_crash(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def parts():
        yield b"one"
        raise RuntimeError("broke mid-body")

    class Wrapped(_ClosingIterable):
        def __iter__(self):
            return parts()

    return Wrapped([])


def _validated_inner(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body) + 3))])
    return [b"ok:" + body]


validated = validator(_validated_inner)


def short_body(environ, start_response):
    """Promises 20 bytes in Content-Length and delivers 5."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "20")])
    return [b"short"]


# --- apps that misbehave on purpose ---------------------------------------------

def split_status(environ, start_response):
    """Tries to inject a header through the status line or a header (?case=NAME)."""
    case = environ["QUERY_STRING"]
    status, headers = "200 OK", [("Content-Type", "text/plain")]
    if case == "status-crlf":
        status = "200 OK\r\nX-Injected: 1"
    elif case == "status-lf":
        status = "200 OK\nX-Injected: 1"
    elif case == "status-nul":
        status = "200 OK\x00"
    elif case == "name-nul":
        headers.append(("X-Evil\x00", "1"))
    elif case == "value-nul":
        headers.append(("X-Evil", "a\x00b"))
    elif case == "value-crlf":
        headers.append(("X-Evil", "a\r\nX-Injected: 1"))
    start_response(status, headers)
    return [b"should never be sent"]


def system_exit(environ, start_response):
    raise SystemExit(3)


def close_stdio_then_crash(environ, start_response):
    """Closes fds 0-2, as a careless daemonising library might, then fails."""
    for fd in (0, 1, 2):
        os.close(fd)
    raise RuntimeError("crashed after closing stdio")


def exhaust_descriptors_then_crash(environ, start_response):
    """Leaks descriptors until none is left (under a lowered limit), then fails.

    The child has then no descriptor to open a module's file with, as when an
    app leaks sockets under load and its next error is the one to read.
    """
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    raise RuntimeError(f"crashed with all {len(held)} free descriptors leaked")


def background_process(environ, start_response):
    """Starts a process that outlives the request and inherits every descriptor."""
    background = os.fork()
    if background == 0:
        time.sleep(15)
        os._exit(0)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "7"),
                              ("X-Background-Pid", str(background))])
    return [b"started"]


def pid(environ, start_response):
    """Answers with the pid of the child serving the connection."""
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def _close_listeners_in_children():
    """Makes every forked child start without the parent's listening sockets,
    as XNU starts a forked child without the parent's kqueue: forkserver's
    clean-up then closes descriptors that are not there."""
    import socket
    for name in os.listdir("/proc/self/fd") if os.path.isdir("/proc/self/fd") else []:
        fd = int(name)
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:
            listening = False
        sock.detach()
        if listening:
            os.close(fd)


if os.environ.get("FORKSERVER_TEST_LOSE_LISTENERS_IN_CHILDREN"):
    os.register_at_fork(after_in_child=_close_listeners_in_children)


def env_var(environ, start_response):
    """Answers with the process environment's value of the variable named in the query."""
    body = os.environ.get(environ["QUERY_STRING"], "(unset)").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


STDOUT_AT_IMPORT = sys.stdout  # as a logging handler made at import keeps it


def printing(environ, start_response):
    """Prints a line to stdout and to stderr, and one to the stdout kept at import
    (tagged with the query); ?TAG&hang then never answers, so the child timeout
    ends its child; ?TAG&own prints to a buffered stdout of the app's own."""
    tag = environ["QUERY_STRING"].split("&")[0]
    print(f"stdout-{tag}")
    sys.stderr.write(f"stderr-{tag}\n")
    STDOUT_AT_IMPORT.write(f"kept-{tag}\n")
    if environ["QUERY_STRING"].endswith("&own"):  # a buffered stream of the app's own, never flushed by it
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)))
        print(f"own-{tag}")
    if environ["QUERY_STRING"].endswith("&hang"):
        time.sleep(60)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def status_from_path(environ, start_response):
    """GET /status/503 answers 503 (any status 200-599): a release that is broken, or not ready yet."""
    code = int(environ["PATH_INFO"].rsplit("/", 1)[-1])
    start_response(f"{code} Status {code}", [("Content-Type", "text/plain")])
    return [b"Hello, World!\n"]


_IMPORTED_BY = os.getpid()


def served_like_a_client(environ, start_response):
    """200 only for GET /dump?x=1 served in a forked child, as a client of 127.0.0.1:8123 would
    be; else 418 with the first difference as the reason (the check's message shows it)."""
    expected = {"REQUEST_METHOD": "GET", "PATH_INFO": "/dump", "QUERY_STRING": "x=1",
                "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8123", "HTTP_HOST": "127.0.0.1:8123",
                "REMOTE_ADDR": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1"}
    wrong = [f"{key} is {environ.get(key)!r}" for key, value in expected.items() if environ.get(key) != value]
    if os.getpid() == _IMPORTED_BY:
        wrong.append("called in the process that imported the app")
    start_response("200 OK" if not wrong else f"418 {wrong[0]}", [("Content-Type", "text/plain")])
    return [b"ok"]
