"""forkserver-burst: hit an HTTP server with many simultaneous connections.

A forking server that reaps with one wait() per SIGCHLD leaks zombies when
many children exit at once, because pending SIGCHLDs merge into one.  The
way to provoke that is a burst: many clients connecting at the same instant.
This tool starts ``--max-clients`` client threads, holds them at a barrier,
releases them together, and checks every reply properly (status line,
status code, complete body) so that a server which drops or truncates
replies under load is caught as well.

Usage::

    forkserver-burst http://127.0.0.1:8000/hello --max-clients 128
    forkserver-burst http://127.0.0.1:8000/ --max-clients 1024 --max-conns 4 --json

Exit status: 0 when every request succeeded, 1 when any failed, 2 for a
usage error.  Only the standard library is used, so the tool runs from the
package's virtualenv on any deploy target.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

try:  # Unix only; on other systems the descriptor limit is left alone.
    import resource
except ImportError:  # pragma: no cover - Windows is not a target
    resource = None

PROG = "forkserver-burst"
DEFAULT_TIMEOUT = 10.0
# Descriptors the process needs besides one socket per client thread
# (stdio, the interpreter's own files, a margin for the resolver).
FD_MARGIN = 64
# Client threads only run a small http.client exchange: a small stack keeps
# 1024 of them cheap.
THREAD_STACK = 512 * 1024


class UsageError(Exception):
    """A mistake in the command line: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line, not usage plus message."""

    def error(self, message):
        raise UsageError(message)


@dataclass(frozen=True)
class Target:
    """Where the requests go, split out of the URL once."""

    host: str
    port: int
    path: str


@dataclass
class Results:
    """Outcome of every request, shared by the client threads."""

    latencies_ms: list = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, latency_ms):
        with self.lock:
            self.latencies_ms.append(latency_ms)

    def fail(self, reason):
        with self.lock:
            self.errors[reason] += 1


class CheckFailed(Exception):
    """A reply arrived but is not the one expected; the message is the reason."""


def parse_url(url):
    """Split an http:// URL into a Target, or raise UsageError saying why."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        raise UsageError("https is not supported: give an http:// URL")
    if parts.scheme != "http":
        raise UsageError(f"bad URL {url!r}: expected http://HOST:PORT/PATH")
    try:
        port = parts.port or 80
    except ValueError:
        raise UsageError(f"bad port in URL {url!r}") from None
    if not parts.hostname:
        raise UsageError(f"bad URL {url!r}: no host")
    if parts.username or parts.password:
        raise UsageError(f"bad URL {url!r}: credentials are not supported")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.hostname, port, path)


def build_parser():
    """The command line; see the module docstring."""
    p = _Parser(prog=PROG, description="Burst of simultaneous HTTP requests.")
    p.add_argument("url", help="http://HOST:PORT/PATH")
    p.add_argument("--max-clients", type=int, default=128,
                   help="simultaneous clients, released together (default 128)")
    p.add_argument("--max-conns", type=int, default=1,
                   help="connections each client makes in turn (default 1)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds per socket operation (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--expect-status", type=int, default=200,
                   help="status every reply must have (default 200)")
    p.add_argument("--expect-body", metavar="TEXT",
                   help="body every reply must equal exactly (UTF-8)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object instead of text")
    return p


def parse_args(argv):
    """Parse and validate argv; every mistake becomes a UsageError."""
    args = build_parser().parse_args(argv)
    if args.max_clients < 1:
        raise UsageError("--max-clients must be at least 1")
    if args.max_conns < 1:
        raise UsageError("--max-conns must be at least 1")
    if not args.timeout > 0:
        raise UsageError("--timeout must be positive")
    if not 100 <= args.expect_status <= 999:
        raise UsageError("--expect-status must be a three-digit HTTP status")
    args.target = parse_url(args.url)
    return args


def ensure_fd_limit(needed):
    """Raise the soft RLIMIT_NOFILE so every client can hold a socket.

    The soft limit is often 1024 (256 on macOS), too low for 1024 clients.
    We raise it only as far as needed, not to an unlimited hard limit,
    because macOS refuses a soft limit above its per-process maximum.
    """
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise UsageError(f"--max-clients needs {needed} file descriptors but the "
                         f"hard limit is {hard}: lower --max-clients")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (ValueError, OSError) as exc:
        raise UsageError(f"cannot raise the file descriptor limit to {needed}: {exc}") from None


def reason_for(exc):
    """A short, stable name for a failure, used as the key in the error counts."""
    if isinstance(exc, CheckFailed):
        return str(exc)
    # RemoteDisconnected is both BadStatusLine and ConnectionResetError:
    # test it first, it means the server closed without replying.
    if isinstance(exc, http.client.RemoteDisconnected):
        return "closed without reply"
    if isinstance(exc, http.client.IncompleteRead):
        return "incomplete body"
    if isinstance(exc, (http.client.BadStatusLine, http.client.LineTooLong)):
        return "bad status line"
    if isinstance(exc, http.client.HTTPException):
        return "bad reply: " + type(exc).__name__
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, socket.gaierror):
        return "cannot resolve host"
    if isinstance(exc, OSError):
        return f"socket error: {exc.strerror or type(exc).__name__}"
    return "error: " + type(exc).__name__


def check_reply(resp, body, args):
    """Raise CheckFailed unless the parsed reply is the one expected."""
    if resp.version not in (10, 11):
        raise CheckFailed("bad status line")
    if resp.status != args.expect_status:
        raise CheckFailed(f"status {resp.status}")
    if args.expect_body is not None and body != args.expect_body.encode("utf-8"):
        raise CheckFailed("body mismatch")


def one_request(args, barrier):
    """Connect when the barrier opens, GET the URL, check the whole reply.

    The connection object is made before the barrier and connect() is called
    right after it, so that the TCP handshakes hit the server together.
    Returns the latency in ms, from connect to the last body byte.
    """
    t = args.target
    conn = http.client.HTTPConnection(t.host, t.port, timeout=args.timeout)
    try:
        barrier.wait()
        start = time.perf_counter()
        conn.connect()
        conn.request("GET", t.path, headers={
            "Connection": "close", "User-Agent": PROG})
        resp = conn.getresponse()
        # read() honours Content-Length, chunked encoding or close-delimited
        # bodies, and raises IncompleteRead when the body is cut short.
        body = resp.read()
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        check_reply(resp, body, args)
        return elapsed_ms
    finally:
        conn.close()


def client(args, barrier, results):
    """One client: --max-conns requests in turn, each round started together."""
    for _ in range(args.max_conns):
        try:
            results.ok(one_request(args, barrier))
        except threading.BrokenBarrierError:
            results.fail("not started")
            return
        except Exception as exc:  # every failure is counted, none escapes
            results.fail(reason_for(exc))


def run_burst(args):
    """Start the clients, release them together, wait for all; return Results."""
    results = Results()
    # Every round waits for all clients, so a round's connects are
    # simultaneous, like the lesson's client forking all at once.
    barrier = threading.Barrier(args.max_clients)
    old_stack = threading.stack_size(THREAD_STACK)
    threads = []
    try:
        for _ in range(args.max_clients):
            th = threading.Thread(target=client, args=(args, barrier, results), daemon=True)
            th.start()
            threads.append(th)
    except RuntimeError as exc:  # "can't start new thread"
        barrier.abort()
        for th in threads:
            th.join()
        raise UsageError(f"cannot start {args.max_clients} client threads "
                         f"({exc}): lower --max-clients") from None
    finally:
        threading.stack_size(old_stack)
    for th in threads:
        th.join()
    return results


def percentile(sorted_values, pct):
    """Nearest-rank percentile of an already sorted list, or None if empty."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil without floats
    return sorted_values[int(rank) - 1]


def summarize(results, total):
    """The report as a dict; latencies cover successful requests only."""
    lat = sorted(results.latencies_ms)
    r2 = lambda v: None if v is None else round(v, 2)  # noqa: E731
    return {
        "total": total,
        "ok": len(lat),
        "failed": total - len(lat),
        "p50_ms": r2(percentile(lat, 50)),
        "p99_ms": r2(percentile(lat, 99)),
        "max_ms": r2(lat[-1] if lat else None),
        "errors": dict(results.errors.most_common()),
    }


def print_text(summary, out, err):
    """Two lines on stdout; the failure reasons, if any, on stderr."""
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"ok {summary['ok']}/{summary['total']} failed {summary['failed']}", file=out)
    print(f"latency ms p50 {fmt(summary['p50_ms'])} p99 {fmt(summary['p99_ms'])} "
          f"max {fmt(summary['max_ms'])}", file=out)
    if summary["errors"]:
        reasons = ", ".join(f"{r} x{n}" for r, n in summary["errors"].items())
        print(f"errors: {reasons}", file=err)


def main(argv=None):
    """Entry point of the forkserver-burst console script; returns the exit status."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        ensure_fd_limit(args.max_clients + FD_MARGIN)
        results = run_burst(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    summary = summarize(results, args.max_clients * args.max_conns)
    if args.json:
        print(json.dumps(summary))
    else:
        print_text(summary, sys.stdout, sys.stderr)
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
