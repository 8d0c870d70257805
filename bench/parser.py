"""Micro-benchmark: httptools (llhttp, C) against h11 (pure Python) parsing requests.

forkserver parses requests with httptools.  This measures why: how many
request heads per second each parser gets through, for a typical browser-ish
GET and for a GET with 20 headers, with a fresh parser per request (a forked
child parses its connection's first request with a new parser) and with the
headers collected into a list, as a server must.

Usage: python bench/parser.py [--seconds S]   (h11 must be installed: bench/run does it)
"""

from __future__ import annotations

import argparse
import sys
import time

import httptools

try:
    import h11
except ImportError:  # pragma: no cover - explained to the user
    sys.exit("bench/parser.py: h11 is not installed (pip install h11, or use bench/run)")

TYPICAL = (
    b"GET /hello?name=world HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8000\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)

TWENTY_HEADERS = (
    b"GET /api/v1/items/42?fields=name,price HTTP/1.1\r\n"
    + b"".join(b"X-Header-%02d: value-%02d-some-typical-length-text\r\n" % (i, i)
               for i in range(18))
    + b"Host: 127.0.0.1:8000\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)


class _Collect:
    """httptools callbacks collecting what a server needs from a request."""

    __slots__ = ("url", "headers", "done")

    def __init__(self):
        self.url = b""
        self.headers = []
        self.done = False

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_message_complete(self):
        self.done = True


def parse_httptools(raw):
    """Parse one request head with a fresh llhttp parser; return its header count."""
    proto = _Collect()
    parser = httptools.HttpRequestParser(proto)
    parser.feed_data(raw)
    assert proto.done and parser.get_method() == b"GET"
    return len(proto.headers)


def parse_h11(raw):
    """Parse one request head with a fresh h11 connection; return its header count."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    request = conn.next_event()
    end = conn.next_event()
    assert isinstance(request, h11.Request) and isinstance(end, h11.EndOfMessage)
    return len(request.headers)


def rate(func, raw, seconds):
    """Requests parsed per second by func, best of three runs of seconds/3."""
    best = 0.0
    for _ in range(3):
        n = 0
        deadline = time.perf_counter() + seconds / 3
        start = time.perf_counter()
        while time.perf_counter() < deadline:
            for _ in range(100):  # amortize the clock reads
                func(raw)
            n += 100
        best = max(best, n / (time.perf_counter() - start))
    return best


def main(argv=None):
    """Measure both parsers on both requests and print a table with the ratio."""
    p = argparse.ArgumentParser(description="httptools vs h11 request parsing")
    p.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    opts = p.parse_args(argv)
    cases = [("typical GET", TYPICAL), ("20-header GET", TWENTY_HEADERS)]
    print(f"httptools {httptools.__version__} (llhttp) vs h11 {h11.__version__}, "
          f"Python {sys.version.split()[0]}")
    print()
    print("| request | headers | httptools req/s | h11 req/s | httptools / h11 |")
    print("|---|---:|---:|---:|---:|")
    for name, raw in cases:
        assert parse_httptools(raw) == parse_h11(raw)  # both parse it the same
        fast = rate(parse_httptools, raw, opts.seconds)
        slow = rate(parse_h11, raw, opts.seconds)
        print(f"| {name} | {parse_h11(raw)} | {fast:,.0f} | {slow:,.0f} | {fast / slow:.1f}x |")


if __name__ == "__main__":
    main()
