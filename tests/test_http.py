"""HTTP/1.1 over real sockets: framing, keep-alive, and every bad input's status."""

import email.utils
import json
import socket
import ssl
import time

import pytest
import requests

from rawhttp import exchange, read_until_close, status_of


@pytest.fixture(scope="module")
def hello(request):
    from conftest import ServerProcess
    server = ServerProcess(["--bind", "127.0.0.1:0", "--header-timeout", "1", "--max-body", "1000",
                            "--keepalive", "2"])
    yield server
    server.kill()


@pytest.fixture(scope="module")
def echo(request):
    from conftest import ServerProcess
    server = ServerProcess(["apps:echo", "--bind", "127.0.0.1:0", "--max-body", "100000"])
    yield server
    server.kill()


@pytest.fixture(scope="module")
def small_echo(request):
    from conftest import ServerProcess
    server = ServerProcess(["apps:echo", "--bind", "127.0.0.1:0", "--max-body", "1000"])
    yield server
    server.kill()


@pytest.fixture(scope="module")
def dump(request):
    from conftest import ServerProcess
    server = ServerProcess(["apps:environ_dump", "--bind", "127.0.0.1:0"])
    yield server
    server.kill()


@pytest.fixture(scope="module")
def split(request):
    from conftest import ServerProcess
    server = ServerProcess(["apps:split_status", "--bind", "127.0.0.1:0"])
    yield server
    server.kill()


def still_serving(server, body="Hello, World!"):
    reply = requests.get(server.url + "/hello", timeout=5)
    return reply.status_code == 200 and reply.text == body


def test_curl_style_get_is_a_valid_http11_response(hello):
    reply = exchange(hello.port, b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert headers[b"Content-Length"] == b"13"
    assert headers[b"Server"].startswith(b"forkserver/")
    assert headers[b"Date"].endswith(b" GMT")
    assert headers[b"Connection"] == b"close"
    assert body == b"Hello, World!"


def test_date_is_current_after_the_server_was_idle(hello):
    # The parent computes each second's Date for its children (response.refresh_date);
    # a child forked after a quiet spell must still send the current one.
    for pause in (0, 2.2, 1.1):
        time.sleep(pause)
        before = time.time()
        reply = exchange(hello.port, b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        after = time.time()
        date = next(line for line in reply.split(b"\r\n") if line.startswith(b"Date: "))[6:].decode()
        sent = email.utils.parsedate_to_datetime(date).timestamp()
        assert int(before) <= sent <= after, (date, before, after)
        assert date == email.utils.formatdate(sent, usegmt=True)


def test_keep_alive_serves_many_requests_in_one_child(hello):
    with requests.Session() as session:
        replies = [session.get(hello.url + "/hello", timeout=5) for _ in range(20)]
    assert all(r.status_code == 200 and r.text == "Hello, World!" for r in replies)
    assert all("close" not in r.headers.get("Connection", "") for r in replies)


def test_pipelined_requests_are_answered_in_order(hello):
    reply = exchange(hello.port, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\nHost: x\r\n\r\n"
                                  b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
    assert reply.count(b"HTTP/1.1 ") == 3
    first, second, third = (part for part in reply.split(b"HTTP/1.1 ")[1:])
    assert first.startswith(b"200") and first.endswith(b"Hello, World!")
    assert second.startswith(b"200") and second.endswith(b"\r\n\r\n")  # HEAD: headers only
    assert third.startswith(b"404")


def test_head_has_length_but_no_body(hello):
    reply = requests.head(hello.url + "/hello", timeout=5)
    assert reply.status_code == 200
    assert reply.headers["Content-Length"] == "13"
    assert reply.content == b""


def test_http10_without_keepalive_is_closed(hello):
    reply = exchange(hello.port, b"GET /hello HTTP/1.0\r\n\r\n")
    assert status_of(reply) == 200
    assert b"Connection: close" in reply
    assert reply.endswith(b"Hello, World!")


def test_http10_keepalive_is_honoured(hello):
    with socket.create_connection(("127.0.0.1", hello.port), timeout=5) as sock:
        for _ in range(2):
            sock.sendall(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            reply = sock.recv(65536)
            assert b"Connection: keep-alive" in reply and reply.endswith(b"Hello, World!")


def test_idle_keepalive_connection_is_closed_quietly(hello):
    with socket.create_connection(("127.0.0.1", hello.port), timeout=10) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).endswith(b"Hello, World!")
        started = time.monotonic()
        assert read_until_close(sock, 10) == b""  # closed, no 408 for an idle connection
        assert time.monotonic() - started < 8


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /" + b"a" * 4100 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(101)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000, 431),  # never finished
    (b"THIS IS NOT HTTP\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 requires Host
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413),
    (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n", 417),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: user@x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
    (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"PUT s://]x/: HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /hello HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"get /hello HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n\r\n", 400),
    (b"GET / HTTP/1.0\r\nX-Pad: " + b"a" * (8190 - 8) + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
], ids=["long-request-line", "too-many-headers", "long-header", "endless-header", "garbage", "no-host",
        "malformed-header", "cl-and-te", "conflicting-cl", "non-numeric-cl", "body-over-limit",
        "bad-expect", "two-hosts", "host-userinfo", "empty-host", "asterisk-get", "bad-absolute-target",
        "http2", "lowercase-method", "two-content-types", "field-line-2-over", "http10-chunked"])
def test_bad_input_gets_its_status_and_the_server_stays_up(hello, request_bytes, status):
    reply = exchange(hello.port, request_bytes)
    assert status_of(reply) == status, reply[:300]
    assert b"Connection: close" in reply
    assert still_serving(hello)


def test_chunked_body_over_the_limit_is_413(small_echo):
    chunk = b"a" * 600
    data = (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n")
    assert status_of(exchange(small_echo.port, data)) == 413
    assert still_serving(small_echo, body="")


def test_bad_chunk_is_400_for_an_app_that_reads_the_body(small_echo):
    reply = exchange(small_echo.port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert status_of(reply) == 400 and b"Connection: close" in reply
    assert still_serving(small_echo, body="")


def test_chunk_extensions_with_whitespace_are_accepted(small_echo):
    reply = exchange(small_echo.port, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                      b"Connection: close\r\n\r\n5; a = b\r\nhello\r\n6 ;c\r\n world\r\n0\r\n\r\n")
    assert status_of(reply) == 200 and reply.endswith(b"hello world")


def test_any_uppercase_token_is_a_method_for_the_app_to_judge(hello):
    reply = exchange(hello.port, b"-BLARGH /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(reply) == 405  # the built-in app's answer, not the parser's


def test_valid_request_is_answered_before_the_bad_one_after_it(hello):
    reply = exchange(hello.port, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nBad Line\r\n\r\n")
    first, second = reply.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 OK") and first.endswith(b"Hello, World!")
    assert second.startswith(b"400 ")
    assert still_serving(hello)


@pytest.mark.parametrize("first", [b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                   b"GET /hello HTTP/1.0\r\n\r\n"], ids=["connection-close", "http10"])
def test_nothing_is_read_past_a_request_that_closes(hello, first):
    reply = exchange(hello.port, first + b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01 not http")
    assert reply.count(b"HTTP/1.1 ") == 1
    assert status_of(reply) == 200 and reply.endswith(b"Hello, World!")


def test_trailers_do_not_reach_the_environ(dump):
    reply = exchange(dump.port, b"POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n"
                                b"Connection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Late: 1\r\nVary: *\r\n\r\n")
    environ = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert environ["HTTP_HOST"] == "example.com"
    assert "HTTP_X_LATE" not in environ and "HTTP_VARY" not in environ


def test_host_as_a_trailer_is_refused(small_echo):
    reply = exchange(small_echo.port, b"POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"5\r\nhello\r\n0\r\nHost: evil.example.com\r\n\r\n")
    assert status_of(reply) == 400
    assert b"evil" not in reply


@pytest.mark.parametrize("case", ["status-crlf", "status-lf", "status-nul", "name-nul", "value-nul", "value-crlf"])
def test_response_splitting_by_the_app_is_refused(split, case):
    reply = exchange(split.port, b"GET /?" + case.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(reply) == 500
    assert b"X-Injected" not in reply and b"X-Evil" not in reply and b"\x00" not in reply
    assert split.wait_for_log("error in app handling GET /?" + case)


def test_slowloris_gets_408_and_is_closed(hello):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", hello.port), timeout=10) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # trickle, never finishing the headers
            time.sleep(0.3)
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        reply = read_until_close(sock, 10)
    assert status_of(reply) == 408
    assert time.monotonic() - started < 5
    assert still_serving(hello)


def test_silent_client_gets_408(hello):
    with socket.create_connection(("127.0.0.1", hello.port), timeout=10) as sock:
        assert status_of(read_until_close(sock, 10)) == 408


def tls_client_hello() -> bytes:
    """The first bytes a TLS client sends, as Python's own ssl module makes them."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.mark.parametrize("first_bytes", [tls_client_hello, lambda: b"SSH-2.0-OpenSSH_9.6\r\n", lambda: b"PING\r\n"],
                         ids=["tls", "ssh", "redis"])
def test_another_protocol_on_the_plain_port_is_refused_at_once(hello, first_bytes):
    """A client speaking something else (an https:// URL, ssh, redis-cli) gets 400
    for its first bytes, not the 408 an unfinished head gets at the header timeout."""
    with socket.create_connection(("127.0.0.1", hello.port), timeout=10) as sock:
        sock.sendall(first_bytes())
        assert status_of(read_until_close(sock, 10)) == 400
    assert still_serving(hello)


def test_expect_100_continue(echo):
    with socket.create_connection(("127.0.0.1", echo.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        reply = sock.recv(65536)
    assert status_of(reply) == 200 and reply.endswith(b"hello")


def test_expect_100_continue_refused_when_too_large(echo):
    reply = exchange(echo.port, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n"
                                b"Expect: 100-continue\r\n\r\n")
    assert status_of(reply) == 413
    assert b"100 Continue" not in reply


def test_chunked_request_body_is_streamed_to_the_app(echo):
    def pieces():
        for i in range(50):
            yield b"piece %02d;" % i

    reply = requests.post(echo.url + "/", data=pieces(), timeout=10)
    assert reply.status_code == 200
    assert reply.content == b"".join(b"piece %02d;" % i for i in range(50))


def test_unread_body_is_skipped_before_the_next_request(hello):
    reply = exchange(hello.port, b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
                                  b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=5)
    assert reply.count(b"Hello, World!") == 2


def test_client_connection_close_is_honoured(hello):
    reply = requests.get(hello.url + "/hello", headers={"Connection": "close"}, timeout=5)
    assert reply.headers["Connection"] == "close"
