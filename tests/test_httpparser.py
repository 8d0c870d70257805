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


def refusal(data: bytes, limits: Limits = Limits(max_body=10), pieces: int = 1) -> int:
    """The status of the first error in the stream (after any events before it)."""
    parser = RequestParser(limits)
    size = max(1, len(data) // pieces)
    for start in range(0, len(data), size):
        parser.feed(data[start:start + size])
    with pytest.raises(HTTPError) as caught:
        while parser.next_event() is not None:
            pass
    return caught.value.status


@pytest.mark.parametrize("data, status", [
    (b"GET /" + b"x" * 4100 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /" + b"x" * 4100, 414),
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
    assert refusal(data) == status


def test_field_line_is_measured_whole_name_colon_value_and_crlf():
    # "X-Pad: " (7) + value + CRLF (2): 8190 bytes in all is the largest accepted.
    fits = b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad: " + b"v" * (8190 - 9) + b"\r\n\r\n"
    assert isinstance(events(fits)[0], RequestHead)
    over = b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad: " + b"v" * (8190 - 8) + b"\r\n\r\n"
    assert refusal(over) == 431
    assert refusal(over, pieces=7) == 431


def test_chunked_body_over_limit_is_413():
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n"
    assert refusal(data) == 413


def test_a_bad_request_after_a_good_one_is_reported_after_it():
    parser = RequestParser()
    parser.feed(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\nGET /second HTTP/1.1\r\nHost: h\r\nBad Line\r\n\r\n")
    assert parser.next_event().target == b"/first"
    assert parser.next_event() is END
    with pytest.raises(HTTPError) as caught:
        parser.next_event()
    assert caught.value.status == 400


@pytest.mark.parametrize("first", [
    b"GET /first HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"GET /first HTTP/1.0\r\n\r\n",
])
def test_nothing_after_a_request_that_closes_is_parsed(first):
    parser = RequestParser()
    parser.feed(first + b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n\x00garbage")
    out = []
    while (event := parser.next_event()) is not None:
        out.append(event)
    assert [type(e) for e in out] == [RequestHead, type(END)] and out[0].target == b"/first"
    assert parser.unread


def test_trailers_never_become_header_fields():
    out = events(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n0\r\nVary: *\r\nContent-Type: text/plain\r\n\r\n")
    assert out[0].headers == [(b"Host", b"h"), (b"Transfer-Encoding", b"chunked")]
    assert out[1:] == [b"hello", END]


@pytest.mark.parametrize("trailer", [b"Host: evil.example", b"Content-Length: 5", b"Transfer-Encoding: chunked",
                                     b"Authorization: Basic eA=="])
def test_framing_routing_and_credentials_are_refused_as_trailers(trailer):
    data = (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
            + trailer + b"\r\n\r\n")
    assert refusal(data) == 400


@pytest.mark.parametrize("host", [b"", b"user@h", b"h/path", b"a.example, b.example", b"h:80 x", b"[::1",
                                  b"h:8o", b"h:80:90", b"h:-1", b"h\xc3\xa9.example", b"h\x00"])
def test_invalid_host_is_400(host):
    assert refusal(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n") == 400


@pytest.mark.parametrize("host", [b"h", b"h.example:8080", b"127.0.0.1", b"[::1]:80", b"xn--bcher-kva.example",
                                  b"h:", b"h_x.example", b"h~x:443"])
def test_valid_host_is_served(host):
    assert events(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")[0].header(b"host") == host


@pytest.mark.parametrize("repeated", [b"Host: h\r\nHost: h", b"Host: h\r\nHost: other",
                                      b"Host: h\r\nContent-Type: a/b\r\nContent-Type: c/d"])
def test_singleton_fields_twice_are_400(repeated):
    assert refusal(b"GET / HTTP/1.0\r\n" + repeated + b"\r\n\r\n") == 400


@pytest.mark.parametrize("request_line, status", [
    (b"GET * HTTP/1.1", 400),
    (b"OPTIONS * HTTP/1.1", None),
    (b"GET example.com:443 HTTP/1.1", 400),
    (b"CONNECT example.com:443 HTTP/1.1", None),
    (b"CONNECT /path HTTP/1.1", 400),
    (b"CONNECT example.com HTTP/1.1", 400),
    (b"GET relative/path HTTP/1.1", 400),
    (b"GET http://example.com/p?q=1 HTTP/1.1", None),
    (b"GET http://user:pw@example.com:8080/p HTTP/1.1", None),
    (b"PUT s://]bad/: HTTP/1.1", 400),
    (b"GET / HTTP/2.0", 505),
    (b"GET / HTTP/0.9", 505),
    (b"GET / HTTP/1.2", 400),
    (b"-BLARGH /x HTTP/1.1", None),
    (b"M-SEARCH * HTTP/1.1", 400),
    (b"get / HTTP/1.1", 501),
    (b"GET: / HTTP/1.1", 400),
])
def test_request_line_forms(request_line, status):
    data = request_line + b"\r\nHost: example.com\r\n\r\n"
    if status is None:
        head = events(data)[0]
        assert isinstance(head, RequestHead)
        assert head.method == request_line.split(b" ")[0].decode()
    else:
        assert refusal(data) == status


def test_http10_with_transfer_encoding_is_400():
    assert refusal(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") == 400


@pytest.mark.parametrize("size_line", [b"5;ext", b"5 ;ext", b"5; ext", b"5 ; ext = val", b'5;e="quoted; value"',
                                       b"5; some; parameters=stuff"])
def test_chunk_extensions_may_have_whitespace_around_separators(size_line):
    out = events(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + size_line + b"\r\nhello\r\n0\r\n\r\n", pieces=5)
    assert out[1:] == [b"hello", END]


@pytest.mark.parametrize("size_line", [b"5;", b"5 ", b"5;bad[=x", b"0x5", b"+5", b" 5", b"-1", b"1_0",
                                       b"FFFFFFFFFFFFFFFF0"])
def test_bad_chunk_size_lines_are_400(size_line):
    assert refusal(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + size_line + b"\r\nhello\r\n0\r\n\r\n", Limits()) == 400


def test_bare_lf_is_refused_without_waiting_for_the_end_of_the_head():
    assert refusal(b"GET / HTTP/1.1\nHost: h\n") == 400


@pytest.mark.parametrize("start", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
                                   b"GE\x00", b"GET\r\n", b"\r\n\x16"])
def test_what_cannot_begin_a_method_is_refused_before_the_head_ends(start):
    assert refusal(start) == 400


@pytest.mark.parametrize("start", [b"G", b"GET", b"GET /", b"\r", b"\r\n", b"\r\n\r", b"\r\nGE", b"M-SEARCH"])
def test_the_start_of_a_request_waits_for_the_rest(start):
    assert events(start) == []


def test_upgrade_stops_parsing_after_the_request():
    parser = RequestParser()
    out = events(b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
                 parser)
    assert out[0].target == b"/ws" and out[1] is END
    assert parser.upgraded
