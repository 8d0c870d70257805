"""Replay an HTTP request corpus against a real server and judge every case.

Two corpus formats are understood, both read-only third-party data that stays
outside this repository:

* gunicorn's ``tests/requests`` layout: ``valid/NAME.http`` with ``NAME.py``
  saying what the request must parse to, and ``invalid/NAME.http`` that must be
  refused. Cases whose ``.py`` sets a non-default gunicorn option test options
  forkserver does not have and are not scored.
* Http11Probe's ``cases.json``: single requests that must not be served.

Judgement rules (printed by ``--help`` and described in the README):

* valid: every expected request is answered ``200`` by the echo app below
  with exactly the expected method, raw target, path, query (both split as
  gunicorn's tests split them; not for CONNECT, whose authority-form target
  has neither), version, header fields (as WSGI keys, duplicates joined with
  ``,``, names with ``_`` dropped) and body, in order, and nothing more is
  answered (a request sent after ``Connection: close`` must not be). HTTP/1.1 requests without a
  ``Host`` are sent with ``Host: corpus.test`` added, since HTTP/1.1 requires
  one (RFC 9112 section 3.2).
* invalid: no answer is a success (2xx/3xx); the server answers with a 4xx,
  501 or 505, or closes without answering.
* after every case the server must still answer a plain GET.

The last line is ``valid X/Y invalid-refused A/B``.
"""

from __future__ import annotations

import argparse
import builtins
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import unquote_to_bytes, urlsplit

import httptools

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = b"corpus.test"
REFUSAL_STATUSES = set(range(400, 500)) | {501, 505}
TRUNCATED = {"valid/099"}  # see the corpus's README


# --- the echo app the server runs ---------------------------------------------

def echo_app(environ, start_response):
    """Answers with what the server parsed, as JSON."""
    body = environ["wsgi.input"].read()
    parsed = {
        "method": environ["REQUEST_METHOD"],
        "raw_uri": environ.get("RAW_URI", ""),
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "version": environ["SERVER_PROTOCOL"],
        "headers": {key: value for key, value in environ.items()
                    if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH")},
        "body": body.decode("latin-1"),
    }
    data = json.dumps(parsed).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


# --- loading the corpus -------------------------------------------------------

def decode_http_file(raw: bytes) -> bytes:
    """gunicorn's encoding: drop real LFs, then turn the escapes into bytes."""
    data = raw.replace(b"\n", b"").replace(b"\\r\\n", b"\r\n").replace(b"\\0", b"\0")
    data = data.replace(b"\\n", b"\n").replace(b"\\t", b"\t")
    return re.sub(rb"\\x([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), data)


class _Anything:
    """Stands for any name a case's .py imports from gunicorn."""

    def __init__(self, name="gunicorn"):
        self.__name__ = name

    def __getattr__(self, name):
        return _Anything(name)

    def __call__(self, *args, **kwargs):
        return self


class _Config:
    def __init__(self):
        self.changed = []

    def set(self, name, value):
        self.changed.append((name, value))


def _gunicorn_uri(raw: str) -> dict:
    """As gunicorn's tests split a target (a leading // is a path, not an authority)."""
    if raw.startswith("//"):
        parts = urlsplit("." + raw)
        parts = parts._replace(path=parts.path[1:])
    else:
        parts = urlsplit(raw)
    return {"raw": raw, "path": parts.path, "query": parts.query, "fragment": parts.fragment}


def load_case_py(path: str) -> tuple[object, list]:
    """Run a case's .py with stand-ins for gunicorn; return (request, options it changes)."""
    config = _Config()
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] == "gunicorn":
            module = _Anything(name)
            module.Config = lambda: config
            return module
        return real_import(name, *args, **kwargs)

    scope = {"__builtins__": dict(vars(builtins), __import__=fake_import),
             "uri": _gunicorn_uri, "cfg": config, "Config": lambda: config}
    with open(path) as handle:
        exec(compile(handle.read(), path, "exec"), scope)
    return scope.get("request"), config.changed


class Case:
    def __init__(self, name: str, kind: str, data: bytes, expected=None, note: str = ""):
        self.name = name
        self.kind = kind            # "valid" or "invalid"
        self.data = data
        self.expected = expected    # valid: list of expected requests
        self.note = note


def load_gunicorn(directory: str) -> tuple[list[Case], list[str]]:
    cases, unscored = [], []
    for kind in ("valid", "invalid"):
        folder = os.path.join(directory, kind)
        for entry in sorted(os.listdir(folder)):
            if not entry.endswith(".http"):
                continue
            name = f"{kind}/{entry[:-5]}"
            with open(os.path.join(folder, entry), "rb") as handle:
                data = decode_http_file(handle.read())
            request, options = load_case_py(os.path.join(folder, entry[:-5] + ".py"))
            if options:
                unscored.append(f"{name} (sets {', '.join(option for option, _ in options)})")
                continue
            if name in TRUNCATED:
                unscored.append(f"{name} (truncated on purpose: its body is shorter than its Content-Length)")
                continue
            if kind == "valid":
                expected = request if isinstance(request, list) else [request]
                data, expected = _add_host(data, expected)
                cases.append(Case(name, kind, data, expected))
            else:
                cases.append(Case(name, kind, data, note=getattr(request, "__name__", "")))
    return cases, unscored


def _add_host(data: bytes, expected: list[dict]) -> tuple[bytes, list[dict]]:
    """Give every HTTP/1.1 request without Host a Host field, in the bytes and the expectation."""
    fixed = []
    for request in expected:
        names = [name.upper() for name, _ in request["headers"]]
        if request["version"] == (1, 1) and "HOST" not in names:
            line = f"{request['method']} {request['uri']['raw']} HTTP/1.1\r\n".encode("latin-1")
            at = data.find(line)
            if at >= 0:
                at += len(line)
                data = data[:at] + b"Host: " + HOST + b"\r\n" + data[at:]
                request = dict(request, headers=[("HOST", HOST.decode())] + list(request["headers"]))
        fixed.append(request)
    return data, fixed


def load_http11probe(directory: str) -> tuple[list[Case], list[str]]:
    with open(os.path.join(directory, "cases.json")) as handle:
        corpus = json.load(handle)
    cases = [Case(case["id"], "invalid", case["request_latin1"].encode("latin-1"), note=case.get("description", ""))
             for case in corpus["cases"]]
    return cases, []


def load_corpus(directory: str) -> tuple[list[Case], list[str]]:
    if os.path.exists(os.path.join(directory, "cases.json")):
        return load_http11probe(directory)
    if os.path.isdir(os.path.join(directory, "valid")) and os.path.isdir(os.path.join(directory, "invalid")):
        return load_gunicorn(directory)
    raise SystemExit(f"http-corpus: {directory}: neither gunicorn's valid/ and invalid/ nor a cases.json")


# --- talking to the server ----------------------------------------------------

class Responses:
    """Parses a stream of HTTP responses with llhttp; collects (status, headers, body)."""

    def __init__(self):
        self.done: list[tuple[int, dict, bytes]] = []
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict = {}
        self._body = bytearray()
        self.broken = False

    def on_header(self, name, value):
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body):
        self._body += body

    def on_message_complete(self):
        self.done.append((self._parser.get_status_code(), self._headers, bytes(self._body)))
        self._headers, self._body = {}, bytearray()

    def feed(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.broken = True


def exchange(port: int, data: bytes, want: int, timeout: float = 3.0) -> tuple[Responses, bool]:
    """Send the bytes at once; read until close, or until `want` answers and a short quiet spell.

    A server still waiting for more of an incomplete request after `timeout`
    is told there is no more (the write side is shut down), as a client that
    gave up would, and gets a little longer to close.
    """
    responses = Responses()
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        half_closed = False
        while True:
            if time.monotonic() >= deadline:
                if half_closed or responses.done:
                    break
                half_closed = True
                deadline = time.monotonic() + 2.0
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            quiet = len(responses.done) >= want
            sock.settimeout(0.3 if quiet else max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                if quiet:
                    break
                continue
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            responses.feed(chunk)
    return responses, closed


def judge_valid(case: Case, responses: Responses, closed: bool) -> str | None:
    """None when right, else why not."""
    answers = responses.done
    if len(answers) < len(case.expected):
        statuses = [status for status, _, _ in answers]
        return f"answered {len(answers)} of {len(case.expected)} requests (statuses {statuses}{', closed' if closed else ''})"
    if len(answers) > len(case.expected):
        return f"answered {len(answers)} requests, expected {len(case.expected)}"
    for index, ((status, _, body), want) in enumerate(zip(answers, case.expected), 1):
        if status != 200:
            return f"request {index}: status {status}"
        try:
            got = json.loads(body)
        except ValueError:
            return f"request {index}: not the echo app's answer: {body[:80]!r}"
        wrong = _compare(got, want)
        if wrong:
            return f"request {index}: {wrong}"
    return None


def _compare(got: dict, want: dict) -> str | None:
    path = unquote_to_bytes(want["uri"]["path"]).decode("latin-1")
    version = "HTTP/%d.%d" % want["version"]
    headers: dict[str, str] = {}
    for name, value in want["headers"]:
        key = name.upper()
        if "_" in key:
            continue
        key = key.replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    body = want["body"] if isinstance(want["body"], bytes) else want["body"].encode()
    checks = [("method", got["method"], want["method"]), ("raw uri", got["raw_uri"], want["uri"]["raw"]),
              ("version", got["version"], version), ("headers", got["headers"], headers),
              ("body", got["body"].encode("latin-1"), body)]
    if want["method"] != "CONNECT":  # an authority-form target has no path or query
        checks += [("path", got["path"], path), ("query", got["query"], want["uri"]["query"])]
    for what, value, expected in checks:
        if value != expected:
            return f"{what} {_short(value)} != expected {_short(expected)}"
    return None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 160 else text[:157] + "..."


def judge_invalid(responses: Responses, closed: bool) -> str | None:
    statuses = [status for status, _, _ in responses.done]
    served = [status for status in statuses if status not in REFUSAL_STATUSES]
    if served:
        return f"served: statuses {statuses}"
    if not statuses and not closed:
        return "no answer and the connection stayed open"
    return None


# --- the servers ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(kind: str, port: int) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if kind == "forkserver":
        return [sys.executable, "-m", "forkserver", "--chdir", HERE, "http_corpus:echo_app", "--bind", bind,
                "--log-level", "critical"]
    if kind.startswith("gunicorn"):
        worker = "gthread" if kind == "gunicorn-gthread" else "sync"  # sync closes after every answer
        return [sys.executable, "-m", "gunicorn", "--chdir", HERE, "--bind", bind, "--workers", "1",
                "--worker-class", worker, "--log-level", "critical", "http_corpus:echo_app"]
    if kind == "waitress":
        return [sys.executable, "-m", "waitress", f"--listen={bind}", "http_corpus:echo_app"]
    raise SystemExit(f"http-corpus: unknown server {kind!r}")


class Server:
    def __init__(self, kind: str):
        self.kind = kind
        self.port = free_port()
        self.proc = subprocess.Popen(server_command(kind, self.port), cwd=HERE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=HERE))
        deadline = time.monotonic() + 15
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"http-corpus: {kind} did not start")
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            responses, _ = exchange(self.port, b"GET /alive HTTP/1.1\r\nHost: corpus.test\r\nConnection: close\r\n\r\n",
                                    want=1, timeout=2)
        except OSError:
            return False
        return bool(responses.done) and responses.done[0][0] == 200

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --- the run ------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="http-corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", help="gunicorn's tests/requests directory, or a directory with Http11Probe's cases.json")
    parser.add_argument("--server", default="forkserver", choices=("forkserver", "gunicorn", "gunicorn-gthread", "waitress"),
                        help="the server to judge (default forkserver); the others for comparison")
    parser.add_argument("--quiet", action="store_true", help="print only the cases that fail, and the last line")
    args = parser.parse_args(argv)

    cases, unscored = load_corpus(args.corpus)
    server = Server(args.server)
    right = {"valid": 0, "invalid": 0}
    total = {"valid": 0, "invalid": 0}
    try:
        for case in cases:
            total[case.kind] += 1
            want = len(case.expected) if case.kind == "valid" else 1
            responses, closed = exchange(server.port, case.data, want)
            why = (judge_valid(case, responses, closed) if case.kind == "valid"
                   else judge_invalid(responses, closed))
            if why is None and not server.answers():
                why = "the server stopped answering afterwards"
            if why is None:
                right[case.kind] += 1
                if not args.quiet:
                    statuses = ",".join(str(status) for status, _, _ in responses.done) or "closed"
                    print(f"ok    {case.name} ({statuses})")
            else:
                print(f"WRONG {case.name}: {why}")
            if server.proc.poll() is not None:
                print(f"http-corpus: {args.server} exited; restarting it")
                server = Server(args.server)
    finally:
        server.stop()
    for name in unscored:
        print(f"not scored: {name}")
    print(f"valid {right['valid']}/{total['valid']} invalid-refused {right['invalid']}/{total['invalid']}")
    return 0 if right == total else 1


if __name__ == "__main__":
    sys.exit(main())
