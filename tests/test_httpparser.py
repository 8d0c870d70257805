"""The HTTP parser alone: bytes in, events out, no sockets (as h11 tests its protocol)."""

import pytest

from forkserver.httpparser import END, HTTPError, Limits, RequestHead, RequestParser


def events(data: bytes, parser=None, pieces: int = 1):
    parser = parser or RequestParser()
    size = max(1, len(data) // pieces)
    for start in range(0, len(data), size):
        parser.feed(data[start:start + size])
    out = []
    while (event := parser.next_event()) is not None:
        out.append(event)
    return out


@pytest.mark.parametrize("pieces", [1, 3, 17, 10_000])
def test_request_split_anywhere_parses_the_same(pieces):
    data = (b"POST /up?x=1 HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\n"
            b"hello world")
    out = events(data, pieces=pieces)
    head = out[0]
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.version, head.content_length) == ("POST", b"/up?x=1", "HTTP/1.1", 11)
    assert head.header(b"content-type") == b"text/plain"
    assert b"".join(e for e in out[1:-1]) == b"hello world"
    assert out[-1] is END


def test_chunked_body_and_pipelined_next_request():
    out = events(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n")
    assert out[0].chunked and out[0].content_length is None
    assert out[1:3] == [b"hello", b" world"] and out[3] is END
    assert out[4].target == b"/next" and out[5] is END


def test_keep_alive_rules():
    assert events(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")[0].keep_alive
    assert not events(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")[0].keep_alive
    assert not events(b"GET / HTTP/1.0\r\n\r\n")[0].keep_alive
    assert events(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")[0].keep_alive


def test_expect_continue_and_header_whitespace():
    head = events(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nX-A:   spaced  \r\n"
                  b"Content-Length: 0\r\n\r\n")[0]
    assert head.expect_continue
    assert head.header(b"x-a") == b"spaced"


@pytest.mark.parametrize("data, status", [
    (b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /" + b"x" * 9000, 414),
    (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"A: b\r\n" * 100 + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: h\r\nA: " + b"b" * 8200 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: h\r\nA: " + b"b" * 8200, 431),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", 413),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"\x00\x01\x02\r\n\r\n", 400),
])
def test_limits_and_smuggling_rules(data, status):
    parser = RequestParser(Limits(max_body=10))
    with pytest.raises(HTTPError) as caught:
        parser.feed(data)
    assert caught.value.status == status


def test_header_count_at_the_limit_is_fine():
    head = events(b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(99)) + b"\r\n")[0]
    assert len(head.headers) == 100


def test_chunked_body_over_limit_is_413():
    parser = RequestParser(Limits(max_body=10))
    parser.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(HTTPError) as caught:
        parser.feed(b"8\r\n12345678\r\n8\r\n12345678\r\n")
    assert caught.value.status == 413


def test_upgrade_stops_parsing_after_the_request():
    parser = RequestParser()
    out = events(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
                 parser)
    assert out[0].target == b"/ws" and out[1] is END
    assert parser.upgraded
