"""Tests of the operator tools forkserver-burst and forkserver-zombies.

They run the tools as real processes against real processes and sockets on
127.0.0.1: a parent that leaves (or reaps) zombie children, and small HTTP
servers that answer well, answer 500, truncate, or talk nonsense.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from conftest import free_port

PY = sys.executable
TIMEOUT = 30  # seconds: a bound on every subprocess, never reached when healthy

# A parent that forks N children which exit at once, and does not reap them
# until told to on stdin.  It prints its pid once all children are zombies.
ZOMBIE_PARENT = textwrap.dedent("""
    import os, sys
    n = int(sys.argv[1])
    kids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        kids.append(pid)
    # Wait until every child has exited, without reaping it (WNOWAIT).
    for pid in kids:
        if hasattr(os, "waitid"):
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    if not hasattr(os, "waitid"):
        import time; time.sleep(0.5)
    print(os.getpid(), flush=True)
    for line in sys.stdin:
        if line.strip() == "reap":
            for pid in kids:
                os.waitpid(pid, 0)
            print("reaped", flush=True)
""")

# A threaded HTTP/1.1 server on an ephemeral port; argv: status code.
# It prints the port once listening, then serves until killed.
HTTP_SERVER = textwrap.dedent("""
    import sys, http.server
    STATUS = int(sys.argv[1])
    BODY = b"Hello, World!"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            self.send_response(STATUS)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 1024  # the whole burst waits in the backlog

    srv = Server(("127.0.0.1", 0), Handler)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()
""")


def run_tool(module, *args, env=None, preexec_fn=None):
    """Run `python -m forkserver.<module> args`; return the CompletedProcess."""
    return subprocess.run([PY, "-m", f"forkserver.{module}", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT,
                          env=env, preexec_fn=preexec_fn)


def assert_usage_error(proc):
    """Exit 2 with exactly one line on stderr and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error:" in lines[0]


# ---------------------------------------------------------------- zombies

@pytest.fixture
def zombie_parent():
    """Start a parent with 3 unreaped children; yield (proc, pid)."""
    proc = subprocess.Popen([PY, "-c", ZOMBIE_PARENT, "3"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline())
        yield proc, pid
    finally:
        proc.kill()
        proc.wait(TIMEOUT)


def reap(proc):
    """Tell the zombie parent to reap its children and wait until it has."""
    proc.stdin.write("reap\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "reaped"


def test_zombies_counts_unreaped_children(zombie_parent):
    _, pid = zombie_parent
    res = run_tool("zombies", pid, "--wait", "0.3")
    assert res.returncode == 1
    assert res.stdout.strip() == "3"


def test_zombies_verbose_lists_the_zombie_pids(zombie_parent):
    _, pid = zombie_parent
    res = run_tool("zombies", pid, "--wait", "0", "--verbose")
    lines = res.stdout.split()
    assert res.returncode == 1
    assert lines[0] == "3"
    kids = sorted(int(p) for p in lines[1:])
    assert len(kids) == 3
    import psutil
    assert sorted(c.pid for c in psutil.Process(pid).children()) == kids


def test_zombies_zero_after_reaping(zombie_parent):
    proc, pid = zombie_parent
    reap(proc)
    res = run_tool("zombies", pid, "--wait", "0")
    assert (res.returncode, res.stdout.strip()) == (0, "0")


def test_zombies_waits_for_reaping_in_flight(zombie_parent):
    """Zombies reaped while the tool is re-checking count as cleared."""
    proc, pid = zombie_parent
    tool = subprocess.Popen([PY, "-m", "forkserver.zombies", str(pid), "--wait", "10"],
                            stdout=subprocess.PIPE, text=True)
    try:
        threading.Timer(0.5, reap, args=(proc,)).start()
        out, _ = tool.communicate(timeout=TIMEOUT)
    finally:
        tool.kill()
    assert (tool.returncode, out.strip()) == (0, "0")


def test_zombies_pid_file(zombie_parent, tmp_path):
    _, pid = zombie_parent
    pid_file = tmp_path / "server.pid"
    pid_file.write_text(f"{pid}\n")
    res = run_tool("zombies", "--pid-file", pid_file, "--wait", "0")
    assert (res.returncode, res.stdout.strip()) == (1, "3")


def test_zombies_parent_that_exits_is_an_error(zombie_parent):
    """A parent that dies is reported, not counted as 'no zombies'."""
    proc, pid = zombie_parent
    tool = subprocess.Popen([PY, "-m", "forkserver.zombies", str(pid), "--wait", "10"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    threading.Timer(0.5, proc.kill).start()
    out, err = tool.communicate(timeout=TIMEOUT)
    assert tool.returncode == 2
    assert "exited" in err


def exited_pid():
    """A pid that no longer exists: that of a child that has been reaped."""
    proc = subprocess.Popen([PY, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("args", [
    ["abc"], ["0"], ["--", "-5"], [], ["1", "--pid-file", "/x"], ["1", "--wait", "-1"],
    ["1", "--no-such-flag"],
])
def test_zombies_usage_errors(args):
    assert_usage_error(run_tool("zombies", *args))


def test_zombies_no_such_process():
    res = run_tool("zombies", exited_pid())
    assert_usage_error(res)
    assert "no such process" in res.stderr


def test_zombies_bad_pid_file(tmp_path):
    missing = run_tool("zombies", "--pid-file", tmp_path / "missing.pid")
    assert_usage_error(missing)
    garbage = tmp_path / "garbage.pid"
    garbage.write_text("not-a-pid\n")
    assert_usage_error(run_tool("zombies", "--pid-file", garbage))


# ------------------------------------------------------------------ burst

@pytest.fixture
def http_server():
    """Factory: start a threaded HTTP server answering `status`; yield its URL."""
    procs = []

    def start(status=200):
        proc = subprocess.Popen([PY, "-c", HTTP_SERVER, str(status)],
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        return f"http://127.0.0.1:{int(proc.stdout.readline())}"

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(TIMEOUT)


@pytest.fixture
def canned_server():
    """Factory: a server on 127.0.0.1 that answers every request with `reply`.

    It reads the request head, sends the raw bytes and closes: for replies
    no well-behaved server would send (truncated body, no status line).
    """
    listeners = []

    def serve(sock, reply):
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:  # listener closed: test over
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(reply)

    def start(reply):
        sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        listeners.append(sock)
        threading.Thread(target=serve, args=(sock, reply), daemon=True).start()
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"

    yield start
    for sock in listeners:
        sock.close()


def test_burst_128_clients_all_ok(http_server):
    url = http_server()
    res = run_tool("burst", url + "/hello", "--max-clients", 128,
                   "--expect-body", "Hello, World!")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "ok 128/128 failed 0"
    assert "p50" in res.stdout and "p99" in res.stdout


def test_burst_json(http_server):
    url = http_server()
    res = run_tool("burst", url + "/", "--max-clients", 32, "--max-conns", 3, "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["total"] == report["ok"] == 96
    assert report["failed"] == 0 and report["errors"] == {}
    assert 0 < report["p50_ms"] <= report["p99_ms"] <= report["max_ms"]


def test_burst_raises_its_descriptor_limit(http_server):
    """1024 clients must work even when the soft RLIMIT_NOFILE is 256."""
    resource = pytest.importorskip("resource")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # The 1024-client burst is part of the product: a machine that cannot open
    # that many descriptors cannot run it, and that is worth a failure.
    assert hard == resource.RLIM_INFINITY or hard >= 1200, f"hard descriptor limit {hard} is too low"
    url = http_server()
    res = run_tool("burst", url, "--max-clients", 1024, "--json",
                   preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard)))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["ok"] == 1024


def test_burst_counts_error_status(http_server):
    url = http_server(status=500)
    res = run_tool("burst", url, "--max-clients", 16, "--json")
    assert res.returncode == 1
    report = json.loads(res.stdout)
    assert (report["ok"], report["failed"]) == (0, 16)
    assert report["errors"] == {"status 500": 16}


def test_burst_expect_status(http_server):
    url = http_server(status=500)
    res = run_tool("burst", url, "--max-clients", 4, "--expect-status", 500)
    assert res.returncode == 0, res.stderr


def test_burst_body_mismatch(http_server):
    res = run_tool("burst", http_server(), "--max-clients", 4, "--json",
                   "--expect-body", "Goodbye")
    assert res.returncode == 1
    assert json.loads(res.stdout)["errors"] == {"body mismatch": 4}


def test_burst_closed_port():
    res = run_tool("burst", f"http://127.0.0.1:{free_port()}/", "--max-clients", 8)
    assert res.returncode == 1
    assert res.stdout.splitlines()[0] == "ok 0/8 failed 8"
    assert "connection refused" in res.stderr


@pytest.mark.parametrize("reply, reason", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "incomplete body"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nHel", "incomplete body"),
    (b"HELLO THERE\r\n\r\n", "bad status line"),
    (b"", "closed without reply"),
])
def test_burst_detects_broken_replies(canned_server, reply, reason):
    res = run_tool("burst", canned_server(reply), "--max-clients", 8, "--json")
    assert res.returncode == 1
    assert json.loads(res.stdout)["errors"] == {reason: 8}


def test_burst_accepts_close_delimited_and_chunked_bodies(canned_server):
    """Bodies without Content-Length are complete when framed correctly."""
    for reply in (b"HTTP/1.0 200 OK\r\n\r\nHello, World!",
                  b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"7\r\nHello, \r\n6\r\nWorld!\r\n0\r\n\r\n"):
        res = run_tool("burst", canned_server(reply), "--max-clients", 4,
                       "--expect-body", "Hello, World!")
        assert res.returncode == 0, (reply, res.stdout, res.stderr)


@pytest.mark.parametrize("url", [
    "https://127.0.0.1:8443/", "ftp://127.0.0.1/", "not a url", "http://127.0.0.1:99999/",
    "http:///path",
])
def test_burst_bad_url(url):
    assert_usage_error(run_tool("burst", url))


@pytest.mark.parametrize("args", [
    [], ["--max-clients", "0"], ["--max-clients", "many"], ["--max-conns", "0"],
    ["--timeout", "0"],
])
def test_burst_bad_flags(args):
    url = [] if not args else [f"http://127.0.0.1:{free_port()}/"]
    assert_usage_error(run_tool("burst", *url, *args))


def test_console_scripts_are_installed():
    """pyproject's entry points resolve to the tools' main functions."""
    from forkserver import burst, zombies
    assert callable(burst.main) and callable(zombies.main)
    bindir = os.path.dirname(PY)
    for name in ("forkserver-burst", "forkserver-zombies"):
        script = os.path.join(bindir, name)
        assert os.path.exists(script), f"{name} not installed next to {PY}"
        res = subprocess.run([script, "--help"], capture_output=True, text=True,
                             timeout=TIMEOUT)
        assert res.returncode == 0 and "usage" in res.stdout
