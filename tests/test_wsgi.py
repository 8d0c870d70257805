"""The WSGI bridge against real apps: the stdlib validator, Flask, and PEP 3333's corners."""

import os

import pytest
import requests

from conftest import wait_until
from rawhttp import exchange, status_of


@pytest.fixture
def serve(start_server):
    def serve_app(app, *args, env=None):
        return start_server(app, *args, env=env)
    return serve_app


def test_app_wrapped_in_wsgiref_validator(serve):
    server = serve("apps:validated")
    assert requests.get(server.url + "/x", timeout=5).text == "ok:"
    reply = requests.post(server.url + "/x", data=b"payload", timeout=5)
    assert (reply.status_code, reply.text) == (200, "ok:payload")
    assert "Traceback" not in server.log and "AssertionError" not in server.log, server.log


def test_flask_app(serve):
    server = serve("flask_app:app")
    assert requests.get(server.url + "/hello/ops", timeout=5).text == "Hello, ops!"
    reply = requests.post(server.url + "/json", json={"n": 1}, timeout=5)
    assert reply.json() == {"received": {"n": 1}, "pid_is_child": True}
    assert requests.get(server.url + "/missing", timeout=5).status_code == 404
    assert requests.get(server.url + "/nowhere", timeout=5).status_code == 404


def test_environ_follows_pep_3333(serve):
    server = serve("apps:environ_dump")
    reply = requests.get(server.url + "/caf%C3%A9/x%20y?a=1&b=%20", headers={"X-Custom": "v", "X_Sneaky": "no"},
                         timeout=5)
    environ = reply.json()
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/caf\u00c3\u00a9/x y"  # UTF-8 bytes decoded as latin-1, per the PEP
    assert environ["QUERY_STRING"] == "a=1&b=%20"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["SERVER_NAME"] == "127.0.0.1" and environ["SERVER_PORT"] == str(server.port)
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and environ["REMOTE_PORT"].isdigit()
    assert environ["HTTP_X_CUSTOM"] == "v"
    assert "HTTP_X_SNEAKY" not in environ  # underscores in names are dropped, as gunicorn does
    assert environ["wsgi.multiprocess"] is True and environ["wsgi.multithread"] is False
    assert environ["wsgi.url_scheme"] == "http" and environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.errors.is_stderr"] and environ["wsgi.file_wrapper.present"]
    posted = requests.post(server.url + "/", data=b"abc", headers={"Content-Type": "text/x-test"}, timeout=5).json()
    assert posted["CONTENT_TYPE"] == "text/x-test" and posted["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in posted


def test_crashing_app_gets_500_with_a_logged_traceback(serve):
    server = serve("apps:crash")
    for _ in range(3):
        reply = requests.get(server.url + "/", timeout=5)
        assert reply.status_code == 500
    assert server.wait_for_log("RuntimeError: the app broke on purpose")
    assert "Traceback (most recent call last)" in server.log
    assert server.proc.poll() is None


def test_crash_mid_body_aborts_the_response_and_still_closes_the_iterable(serve, tmp_path):
    marker = tmp_path / "closed"
    server = serve("apps:closing_crash", env={"FORKSERVER_TEST_CLOSE_MARKER": str(marker)})
    with pytest.raises(requests.RequestException):
        requests.get(server.url + "/", timeout=5)
    assert wait_until(marker.exists, 5)
    assert server.wait_for_log("broke mid-body")


def test_iterable_close_is_always_called(serve, tmp_path):
    marker = tmp_path / "closed"
    server = serve("apps:closing", env={"FORKSERVER_TEST_CLOSE_MARKER": str(marker)})
    assert requests.get(server.url + "/", timeout=5).text == "one two"
    requests.head(server.url + "/", timeout=5)
    assert wait_until(lambda: marker.exists() and marker.read_text().count("closed") == 2, 5)


def test_generator_without_length_is_chunked(serve):
    server = serve("apps:streamed")
    reply = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in reply
    assert requests.get(server.url + "/", timeout=5).text == "".join(f"part {i}\n" for i in range(5))


def test_generator_on_http10_is_closed_delimited(serve):
    server = serve("apps:streamed")
    reply = exchange(server.port, b"GET / HTTP/1.0\r\n\r\n")
    assert b"Transfer-Encoding" not in reply and b"Connection: close" in reply
    assert reply.endswith(b"part 4\n")


def test_write_callable(serve):
    server = serve("apps:with_write")
    assert requests.get(server.url + "/", timeout=5).text == "written and returned"


def test_exc_info_replaces_unsent_headers(serve):
    server = serve("apps:exc_info")
    reply = requests.get(server.url + "/", timeout=5)
    assert (reply.status_code, reply.text) == (503, "custom error page")


def test_exc_info_after_headers_are_sent_aborts(serve):
    server = serve("apps:exc_info_late")
    reply = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(reply) == 200
    assert b"never sent" not in reply
    assert server.wait_for_log("ValueError: too late")


def test_file_wrapper_with_length_is_sent_whole(serve):
    server = serve("apps:file_wrapper")
    with open(os.path.join(os.path.dirname(__file__), "apps.py"), "rb") as handle:
        expected = handle.read()
    with requests.Session() as session:  # twice on one connection: framing must hold
        for _ in range(2):
            assert session.get(server.url + "/", timeout=5).content == expected


def test_file_wrapper_without_length_is_chunked(serve):
    server = serve("apps:file_wrapper_unsized")
    with open(os.path.join(os.path.dirname(__file__), "apps.py"), "rb") as handle:
        expected = handle.read()
    reply = requests.get(server.url + "/", timeout=5)
    assert reply.headers["Transfer-Encoding"] == "chunked" and reply.content == expected


def test_chunked_upload_is_echoed_back(serve):
    server = serve("apps:echo")
    payload = os.urandom(50_000)
    reply = requests.post(server.url + "/", data=iter([payload[i:i + 7000] for i in range(0, len(payload), 7000)]),
                          timeout=10)
    assert reply.status_code == 200 and reply.content == payload


def test_access_log_lines(start_server, tmp_path):
    log_path = tmp_path / "access.log"
    server = start_server("--access-log", str(log_path), "--access-log-format", "combined")
    requests.get(server.url + "/hello?x=1", headers={"User-Agent": "probe/1", "Referer": "http://r/"}, timeout=5)
    assert wait_until(lambda: log_path.exists() and log_path.read_text(), 5)
    lines = log_path.read_text().splitlines()
    assert len(lines) == 1, lines  # the parent's warm-up runs the access log's code but logs nothing
    line = lines[0]
    assert line.startswith("127.0.0.1 - - [")
    assert line.endswith('"GET /hello?x=1 HTTP/1.1" 200 13 "http://r/" "probe/1"')


def test_body_shorter_than_its_content_length_ends_the_connection(serve):
    server = serve("apps:short_body")
    reply = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.count(b"HTTP/1.1 200") == 1 and reply.endswith(b"short")
    assert server.wait_for_log("app sent 5 of the 20 bytes")


# start_response decides the usual status and fields with str methods and falls
# back to the regular expressions: each case is checked against both, and
# against the answer written here.
@pytest.mark.parametrize("status, headers, valid", [
    ("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")], True),
    ("404 Not Found", [("X-Custom_Name", "a\tb")], True),           # tab in a value, _ in a name
    ("200 Ça va", [("Set-Cookie", "k=v; Path=/")], True),          # non-ASCII reason phrase
    ("599 x", [("!#$%&'*+-.^_`|~", "\x85")], True),                # every token character; NEL is not a control
    ("200 ", [("-", "")], True),
    ("200 OK\r\nX-Injected: 1", [], False),
    ("200 OK\x7f", [], False),
    ("099 Low", [], False),
    ("20 OK", [], False),
    ("2000 OK", [], False),
    ("٢٠٠ OK", [], False),                                          # digits, but not ASCII ones
    ("200 OK", [("Bad Name", "x")], False),
    ("200 OK", [("Ünicode", "x")], False),
    ("200 OK", [("", "x")], False),
    ("200 OK", [("X", "a\nb")], False),
    ("200 OK", [("X", "a\x00b")], False),
    ("200 OK", [("X", "\x1f")], False),
])
def test_start_response_refuses_what_would_split_the_response(status, headers, valid):
    from forkserver import wsgi
    from forkserver.httpparser import RequestHead

    head = RequestHead("GET", b"/", "HTTP/1.1", [], True, None, False, False)
    reference = bool(wsgi._STATUS.fullmatch(status)) and all(
        wsgi._FIELD_NAME.fullmatch(name) and not wsgi._BAD_FIELD_VALUE.search(value) for name, value in headers)
    assert reference == valid
    response = wsgi.Response(head, send=lambda data: None)
    if valid:
        response.start_response(status, headers)
        assert response.status == status
    else:
        with pytest.raises(AssertionError):
            response.start_response(status, headers)
        assert response.status is None


def test_what_the_app_prints_reaches_the_log_even_when_its_child_is_ended(serve):
    # stdout is a pipe here, block-buffered by default (the other tests run with
    # PYTHONUNBUFFERED=1): the server unbuffers it.
    server = serve("apps:printing", "--child-timeout", "1", env={"PYTHONUNBUFFERED": ""})
    assert requests.get(server.url + "/?served", timeout=5).text == "ok"
    assert all(server.wait_for_log(f"{line}-served") for line in ("stdout", "stderr", "kept")), server.log
    with pytest.raises(requests.RequestException):
        requests.get(server.url + "/?ended&hang", timeout=10)  # SIGTERM after 1 s: no answer
    assert all(server.wait_for_log(f"{line}-ended") for line in ("stdout", "stderr", "kept")), server.log
    assert requests.get(server.url + "/?mine&own", timeout=5).text == "ok"
    assert server.wait_for_log("own-mine"), server.log  # flushed by the child as it exits
