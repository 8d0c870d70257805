"""Hot upgrade (SIGHUP): new code and settings take over in place, and no client notices."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest
import requests

from conftest import ServerProcess, free_port, wait_until
from rawhttp import read_until_close, status_of

RELOAD = [sys.executable, "-m", "forkserver.reload"]


class ClientLoop(threading.Thread):
    """A client opening a new connection every 10 ms, as during a deploy; counts every failure."""

    def __init__(self, url: str, interval: float = 0.01):
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.ok, self.failures, self.longest_gap = 0, [], 0.0
        self.bodies = set()
        self._halt = threading.Event()

    def run(self):
        last = time.monotonic()
        while not self._halt.is_set():
            try:
                reply = requests.get(self.url, timeout=10, headers={"Connection": "close"})
                if reply.status_code != 200:
                    raise RuntimeError(f"status {reply.status_code}")
                self.ok += 1
                self.bodies.add(reply.text)
                now = time.monotonic()
                self.longest_gap = max(self.longest_gap, now - last)
                last = now
            except Exception as exc:  # every failure is counted and reported
                self.failures.append(repr(exc))
            time.sleep(self.interval)

    def stop(self):
        self._halt.set()
        self.join(30)


def reload(state_file) -> subprocess.CompletedProcess:
    return subprocess.run([*RELOAD, str(state_file)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def settings_file(tmp_path):
    path = tmp_path / "forkserver.env"
    path.write_text('FORKSERVER_KEEPALIVE="5"\n')
    return path


def start(start_server, tmp_path, settings_file, *args, **kwargs):
    state = tmp_path / "state.json"
    server = start_server("--env-file", str(settings_file), "--state-file", str(state), *args, **kwargs)
    return server, state


def test_upgrades_under_load_refuse_nothing(start_server, tmp_path, settings_file):
    server, state = start(start_server, tmp_path, settings_file)
    client = ClientLoop(server.url + "/hello")
    client.start()
    try:
        for _ in range(3):
            time.sleep(0.5)
            done = reload(state)
            assert done.returncode == 0, done.stderr
    finally:
        client.stop()
    assert client.failures == [], client.failures[:5]
    assert client.ok > 50
    assert client.longest_gap < 1.0, f"longest gap {client.longest_gap:.2f}s"
    assert json.loads(state.read_text())["generation"] == 3
    assert psutil.Process(server.pid).is_running() and server.log.count("upgraded to generation") == 3


def test_request_in_flight_finishes_under_the_old_code_and_is_reaped(start_server, tmp_path, settings_file):
    server, state = start(start_server, tmp_path, settings_file, "apps:slow")
    reply = {}
    slow = threading.Thread(target=lambda: reply.setdefault("r", requests.get(server.url + "/?2", timeout=20)))
    slow.start()
    assert wait_until(lambda: len(server.children()) == 1, 5)
    old_child = server.children()[0].pid
    assert reload(state).returncode == 0
    assert psutil.Process(old_child).ppid() == server.pid  # still the parent's own child
    slow.join(20)
    assert reply["r"].status_code == 200 and reply["r"].text == "slept 2\n"
    assert wait_until(lambda: not psutil.pid_exists(old_child) or not server.zombies(), 5)
    assert not server.zombies()


def test_keepalive_connection_of_the_old_code_is_closed_after_its_next_response(start_server, tmp_path,
                                                                               settings_file):
    server, state = start(start_server, tmp_path, settings_file)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"Connection: close" not in sock.recv(65536)
        assert reload(state).returncode == 0
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = read_until_close(sock, 10)
    assert status_of(reply) == 200 and b"Connection: close" in reply


def test_changed_settings_and_app_variables_take_effect(start_server, tmp_path, settings_file):
    settings_file.write_text('APP_GREETING="first"\n')
    server, state = start(start_server, tmp_path, settings_file, "apps:env_var")
    assert requests.get(server.url + "/?APP_GREETING", timeout=5).text == "first"
    settings_file.write_text('APP_GREETING="second"\nFORKSERVER_MAX_BODY="1K"\n')
    assert reload(state).returncode == 0
    assert requests.get(server.url + "/?APP_GREETING", timeout=5).text == "second"
    assert requests.post(server.url + "/?APP_GREETING", data=b"x" * 2000, timeout=5).status_code == 413
    settings_file.write_text("")
    assert reload(state).returncode == 0
    assert requests.get(server.url + "/?APP_GREETING", timeout=5).text == "(unset)"  # removed from the file


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the forking settings are made on Linux only")
def test_new_code_starts_with_the_forking_settings_and_the_app_keeps_its_own(start_server, tmp_path,
                                                                               settings_file):
    own = "glibc.malloc.tcache_count=0"
    server, state = start(start_server, tmp_path, settings_file, "apps:env_var", env={"GLIBC_TUNABLES": own})
    assert reload(state).returncode == 0
    environment = psutil.Process(server.pid).environ()  # the new code's exec environment
    assert environment.get("LD_BIND_NOW") == "1"
    assert environment.get("GLIBC_TUNABLES", "").startswith("glibc.malloc.mxfast=0")
    assert requests.get(server.url + "/?GLIBC_TUNABLES", timeout=5).text == own
    assert requests.get(server.url + "/?LD_BIND_NOW", timeout=5).text == "(unset)"


def test_a_new_listener_is_opened_and_a_dropped_one_closed(start_server, tmp_path, settings_file):
    new_port = free_port()
    settings_file.write_text('FORKSERVER_BIND="127.0.0.1:0"\n')
    server, state = start(start_server, tmp_path, settings_file, bind=None)
    assert requests.get(server.url + "/hello", timeout=5).status_code == 200
    settings_file.write_text(f'FORKSERVER_BIND="127.0.0.1:{new_port}"\n')
    assert reload(state).returncode == 0
    assert requests.get(f"http://127.0.0.1:{new_port}/hello", timeout=5).text == "Hello, World!"
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/hello", timeout=5)


def test_bad_settings_leave_the_old_code_serving(start_server, tmp_path, settings_file):
    server, state = start(start_server, tmp_path, settings_file)
    settings_file.write_text('FORKSERVER_KEEPALIVE="-1"\n')
    done = reload(state)
    assert done.returncode == 1
    assert "FORKSERVER_KEEPALIVE" in done.stderr
    assert requests.get(server.url + "/hello", timeout=5).text == "Hello, World!"
    recorded = json.loads(state.read_text())
    assert recorded["generation"] == 0 and recorded["last_upgrade"]["result"] == "failed"
    assert server.wait_for_log("upgrade failed, the running code keeps serving")


def test_app_that_does_not_import_leaves_the_old_code_serving(start_server, tmp_path, settings_file):
    server, state = start(start_server, tmp_path, settings_file)
    settings_file.write_text('FORKSERVER_APP="no_such_module:app"\n')
    done = reload(state)
    assert done.returncode == 1 and "no_such_module" in done.stderr
    assert requests.get(server.url + "/hello", timeout=5).text == "Hello, World!"


def test_app_that_fails_the_check_path_never_serves_and_good_code_still_passes(start_server, tmp_path,
                                                                               settings_file):
    settings_file.write_text('FORKSERVER_CHECK_PATH="/hello"\n')
    server, state = start(start_server, tmp_path, settings_file)
    client = ClientLoop(server.url + "/hello")
    client.start()
    try:
        time.sleep(0.3)
        settings_file.write_text('FORKSERVER_CHECK_PATH="/hello"\nFORKSERVER_APP="apps:crash"\n')
        refused = reload(state)
        recorded = json.loads(state.read_text())
        time.sleep(0.3)
        settings_file.write_text('FORKSERVER_CHECK_PATH="/hello"\n')
        accepted = reload(state)
        time.sleep(0.3)
    finally:
        client.stop()
    assert refused.returncode == 1
    assert "the app answered GET /hello with 500 Internal Server Error" in refused.stderr
    assert recorded["generation"] == 0 and recorded["last_upgrade"]["result"] == "failed"
    assert server.wait_for_log("the app broke on purpose")  # the check's traceback, in the server's log
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(state.read_text())["generation"] == 1
    # Judged by the client: not one answer came from the app that failed the check.
    assert client.failures == [], client.failures[:5]
    assert client.bodies == {"Hello, World!"} and client.ok > 20


def test_reload_without_an_outcome_says_what_the_state_file_still_records(tmp_path):
    # A process that ignores SIGHUP stands for a server whose upgrade never ends.
    deaf = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGHUP, "
                             "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert deaf.stdout.readline() == "ready\n"
        state = tmp_path / "state.json"
        state.write_text(json.dumps({"pid": deaf.pid, "generation": 4, "upgrades": 6}))
        done = subprocess.run([*RELOAD, str(state), "--timeout", "0.5"], capture_output=True, text=True, timeout=30)
    finally:
        deaf.kill()
        deaf.wait()
    assert done.returncode == 1
    assert done.stderr == (f"forkserver-reload: no outcome within 0.5s: pid {deaf.pid} runs, and the state file "
                           "still records 6 upgrade(s), generation 4\n")


def test_reload_says_at_once_that_a_server_which_died_and_is_not_yet_reaped_exited(tmp_path):
    # A process that SIGHUP ends, whose parent (this test) does not reap it: a zombie, as
    # under a shell or a container's init that reaps late or never.
    doomed = subprocess.Popen([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert doomed.stdout.readline() == "ready\n"
        state = tmp_path / "state.json"
        state.write_text(json.dumps({"pid": doomed.pid, "generation": 0, "upgrades": 0}))
        done = subprocess.run([*RELOAD, str(state), "--timeout", "30"], capture_output=True, text=True, timeout=60)
        assert psutil.Process(doomed.pid).status() == psutil.STATUS_ZOMBIE
    finally:
        doomed.kill()
        doomed.wait()
    assert done.returncode == 1
    # Said once the pid is a zombie, not after the whole --timeout as "no outcome".
    assert done.stderr == f"forkserver-reload: pid {doomed.pid} exited during the upgrade\n"


RELEASE_SCRIPT = """\
#!{python}
import os, sys
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
from forkserver.cli import main
if "--check-config" not in sys.argv:
    sys.argv += {serve_args!r}
sys.exit(main())
"""

RELEASE_APP = """\
import os, sys
if {broken} and "--check-config" not in sys.argv:
    raise RuntimeError("this release passes --check-config but cannot serve")

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1")])
    return [b"{name}"]
"""


def make_release(root, name, broken=False, serve_args=()):
    """A release side by side with others; `serve_args` are added to its command line except in its check."""
    release = root / "releases" / name
    (release / "bin").mkdir(parents=True)
    script = release / "bin" / "forkserver"
    script.write_text(RELEASE_SCRIPT.format(python=sys.executable, serve_args=list(serve_args)))
    script.chmod(0o755)
    (release / "release_app.py").write_text(textwrap.dedent(RELEASE_APP.format(broken=broken, name=name)))
    return release


def point_current(root, release):
    link = root / "current"
    temporary = root / "current.new"
    temporary.symlink_to(release)
    os.replace(temporary, link)


def test_releases_switch_by_link_and_a_release_that_fails_after_exec_is_rolled_back(tmp_path, settings_file):
    make_release(tmp_path, "a")
    make_release(tmp_path, "b")
    broken = make_release(tmp_path, "c", broken=True)
    point_current(tmp_path, tmp_path / "releases" / "a")
    state = tmp_path / "state.json"
    server = ServerProcess(["release_app:app", "--bind", "127.0.0.1:0", "--env-file", str(settings_file),
                            "--state-file", str(state)], command=[str(tmp_path / "current" / "bin" / "forkserver")])
    try:
        assert requests.get(server.url, timeout=5).text == "a"
        client = ClientLoop(server.url + "/")
        client.start()
        point_current(tmp_path, tmp_path / "releases" / "b")
        assert reload(state).returncode == 0
        time.sleep(0.3)
        point_current(tmp_path, broken)
        done = reload(state)
        time.sleep(0.3)
        client.stop()
        assert done.returncode == 1, done.stdout
        assert "cannot serve" in done.stderr
        assert requests.get(server.url, timeout=5).text == "b"  # the previous release serves again
        assert json.loads(state.read_text())["release"].endswith("releases/b/bin/forkserver")
        assert client.failures == [], client.failures[:5]
        assert client.bodies == {"a", "b"}
        assert server.wait_for_log("going back to")
    finally:
        server.kill()


@pytest.fixture
def held_port():
    """A port another process listens on, as a deploy may find it."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def ask_unix(path) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return read_until_close(client)


def test_a_new_bind_address_that_cannot_be_listened_on_fails_the_check(start_server, tmp_path, settings_file,
                                                                       held_port):
    """The check run before the exec tries the addresses the server does not hold yet."""
    settings_file.write_text('FORKSERVER_BIND="127.0.0.1:0"\n')
    server, state = start(start_server, tmp_path, settings_file, bind=None)
    client = ClientLoop(server.url + "/hello")
    client.start()
    try:
        settings_file.write_text(f'FORKSERVER_BIND="127.0.0.1:0,127.0.0.1:{held_port}"\n')
        done = reload(state)
        time.sleep(0.3)
    finally:
        client.stop()
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{held_port}: address already in use" in done.stderr
    recorded = json.loads(state.read_text())
    assert recorded["generation"] == 0 and recorded["last_upgrade"]["result"] == "failed"  # never executed
    assert client.failures == [], client.failures[:5]
    assert client.ok > 10
    # By hand (no server asking), the check leaves binding to the start, which may find the port taken over.
    assert subprocess.run([sys.executable, "-m", "forkserver", "--env-file", str(settings_file), "--check-config"],
                          capture_output=True, timeout=60).returncode == 0


def test_new_code_that_cannot_listen_after_exec_goes_back_on_the_same_sockets(tmp_path, settings_file, held_port):
    """An address taken between the check and the exec: the new code fails to start, and the code
    of before runs again on the listening sockets it left, the unix socket's file included."""
    make_release(tmp_path, "a")
    make_release(tmp_path, "b", serve_args=["--bind", f"127.0.0.1:{held_port}"])
    point_current(tmp_path, tmp_path / "releases" / "a")
    state, unix_path = tmp_path / "state.json", tmp_path / "forkserver.sock"
    server = ServerProcess(["release_app:app", "--bind", "127.0.0.1:0", "--bind", f"unix:{unix_path}",
                            "--env-file", str(settings_file), "--state-file", str(state)],
                           command=[str(tmp_path / "current" / "bin" / "forkserver")])
    try:
        client = ClientLoop(server.url + "/")
        client.start()
        time.sleep(0.3)
        point_current(tmp_path, tmp_path / "releases" / "b")
        done = reload(state)
        time.sleep(0.3)
        client.stop()
        assert done.returncode == 1, done.stdout
        assert f"cannot listen on 127.0.0.1:{held_port}: address already in use" in done.stderr
        assert server.wait_for_log("going back to")
        assert server.proc.poll() is None
        assert requests.get(server.url, timeout=5).text == "a"
        assert ask_unix(unix_path).endswith(b"\r\n\r\na")
        assert json.loads(state.read_text())["release"].endswith("releases/a/bin/forkserver")
        assert client.failures == [], client.failures[:5]
        assert client.bodies == {"a"} and client.ok > 10
    finally:
        server.kill()


def listening_on(pid) -> list[tuple[str, int]]:
    process = psutil.Process(pid)
    connections = getattr(process, "net_connections", None) or process.connections  # psutil 6 renamed it
    return sorted(tuple(c.laddr) for c in connections(kind="tcp") if c.status == psutil.CONN_LISTEN)


def test_a_port_moved_to_another_host_frees_the_port_and_the_code_of_before_takes_it_back(tmp_path, settings_file,
                                                                                            held_port):
    """0.0.0.0:P and 127.0.0.1:P cannot be listened on side by side: the new code closes the
    inherited socket first. When it then fails to start, the code of before listens on P afresh."""
    port = free_port()
    make_release(tmp_path, "a")
    make_release(tmp_path, "b", serve_args=["--bind", f"127.0.0.1:{port}", "--bind", f"127.0.0.1:{held_port}"])
    point_current(tmp_path, tmp_path / "releases" / "a")
    settings_file.write_text(f'FORKSERVER_BIND="0.0.0.0:{port}"\n')
    state, url = tmp_path / "state.json", f"http://127.0.0.1:{port}/"
    server = ServerProcess(["release_app:app", "--env-file", str(settings_file), "--state-file", str(state)],
                           command=[str(tmp_path / "current" / "bin" / "forkserver")])
    try:
        assert listening_on(server.pid) == [("0.0.0.0", port)]
        point_current(tmp_path, tmp_path / "releases" / "b")
        failed = reload(state)
        assert failed.returncode == 1, failed.stdout
        assert f"cannot listen on 127.0.0.1:{held_port}: address already in use" in failed.stderr
        assert server.proc.poll() is None
        assert listening_on(server.pid) == [("0.0.0.0", port)]
        assert requests.get(url, timeout=5).text == "a"
        point_current(tmp_path, tmp_path / "releases" / "a")
        settings_file.write_text(f'FORKSERVER_BIND="127.0.0.1:{port}"\n')
        moved = reload(state)
        assert moved.returncode == 0, moved.stderr
        assert listening_on(server.pid) == [("127.0.0.1", port)]
        assert requests.get(url, timeout=5).text == "a"
        assert json.loads(state.read_text())["last_upgrade"]["result"] == "ok"
    finally:
        server.kill()


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3])
def test_stop_signal_during_an_upgrade_is_a_graceful_stop(start_server, tmp_path, settings_file, delay):
    server, state = start(start_server, tmp_path, settings_file)
    server.signal(signal.SIGHUP)
    time.sleep(delay)
    server.signal(signal.SIGTERM)
    assert server.proc.wait(20) == 0, server.log


def test_a_signal_recorded_just_before_the_exec_waits_across_it_for_the_new_code():
    """The narrow case of the test above, forced: a SIGTERM the handler recorded after the
    check ended but before the handover blocked signals. requeue_signals sends it again while
    blocked, so the program executed next finds it pending (and acts on it once its handlers
    are in place); a signal that waits for no one (not deferred) is not sent again."""
    program = textwrap.dedent("""
        import collections, os, signal, sys
        from types import SimpleNamespace
        from forkserver import upgrade
        from forkserver.arbiter import Arbiter
        upgrade.defer_signals()
        recorded = SimpleNamespace(pid=os.getpid(), _signals=collections.deque([signal.SIGTERM, signal.SIGWINCH]))
        Arbiter.requeue_signals(recorded)
        assert not recorded._signals
        os.execv(sys.executable, [sys.executable, "-c",
                 "import signal; print(sorted(s.name for s in signal.sigpending()))"])
    """)
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['SIGTERM']"


def test_service_manager_is_told_ready_reloading_and_stopping(start_server, tmp_path, settings_file):
    """The sd_notify protocol, received on a real datagram socket as systemd would."""
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(path)
        manager.settimeout(10)
        server, state = start(start_server, tmp_path, settings_file, env={"NOTIFY_SOCKET": path})

        def messages_until(pattern):
            seen = []
            while not any(re.search(pattern, message) for message in seen):
                seen.append(manager.recv(4096).decode())
            return seen

        messages_until(r"^READY=1\nSTATUS=0 connection\(s\), 0\.0 requests/s, generation 0$")
        assert reload(state).returncode == 0
        after_reload = messages_until(r"READY=1\nSTATUS=.*generation 1")
        assert any("RELOADING=1" in m and "MONOTONIC_USEC=" in m for m in after_reload)
        assert any(m.startswith("READY=1") for m in after_reload)
        settings_file.write_text('FORKSERVER_KEEPALIVE="0"\n')
        assert reload(state).returncode == 1
        messages_until(r"^READY=1\nSTATUS=upgrade failed, generation 1 serves: FORKSERVER_KEEPALIVE")
        for _ in range(20):
            requests.get(server.url + "/hello", timeout=5)
        # the periodic STATUS= line (every 5 s) has counted them
        messages_until(r"STATUS=\d+ connection\(s\), [1-9][0-9.]* requests/s, generation 1")
        server.signal(signal.SIGTERM)
        messages_until(r"^STOPPING=1\nSTATUS=stopping")
        assert server.proc.wait(10) == 0


def test_inherited_children_are_settled_before_the_new_code_counts_on_them():
    """A child the previous program reaped in its last moments is not kept as running
    (it would be timed out, and its pid, perhaps reused, killed); one that exited
    meanwhile is booked; one still running is kept."""
    from forkserver.children import Children

    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    reaped = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        assert wait_until(lambda: psutil.Process(exited.pid).status() == psutil.STATUS_ZOMBIE, 10)
        reaped.wait(10)  # reaped here: no longer a child of this process
        now = time.monotonic()
        table = Children(30, [(pid, now, slot, None, False)
                              for slot, pid in enumerate((running.pid, exited.pid, reaped.pid))])
        table.settle_inherited()
        assert list(table.running) == [running.pid]
        assert table.reaped == {3 << 8: 1}
        with pytest.raises(ChildProcessError):
            os.waitpid(exited.pid, os.WNOHANG)  # settled means reaped
    finally:
        running.kill()
        running.wait(10)
