"""The process model, seen from the OS: bursts, zombies, signals, caps, timeouts, stops."""

import os
import signal
import socket
import sys
import threading
import time

import psutil
import pytest
import requests

from burst import burst
from conftest import FORKSERVER_PACKAGE, TESTS, ServerProcess, compile_bytecode, wait_until


def zombie_count_after_settling(server, timeout=5.0) -> int:
    """Zombies counted by psutil, re-checked until none remain or the bounded wait ends.

    The count is the last one the wait saw, not a fresh one: the server may
    still be busy (a late SIGHUP's check exiting), and a child that exits just
    after a clean look is a zombie for the moment it takes to reap, not a leak.
    A leaked zombie stays, so the wait never sees none and the count says so.
    """
    seen: list = []

    def none_left() -> bool:
        seen[:] = server.zombies()
        return not seen

    wait_until(none_left, timeout)
    return len(seen)


def test_128_client_burst_leaves_no_zombies(start_server):
    server = start_server()
    result = burst(server.url + "/hello", 128)
    assert (result["ok"], result["failed"], result["exit"]) == (128, 0, 0), result
    assert zombie_count_after_settling(server) == 0
    assert wait_until(lambda: not server.children(), 10), "children still alive after the burst"


def test_five_bursts_in_a_row(start_server):
    server = start_server()
    for round_ in range(5):
        result = burst(server.url + "/hello", 128)
        assert result["ok"] == 128, (round_, result)
        assert zombie_count_after_settling(server) == 0, round_


def test_1024_client_burst(start_server):
    server = start_server()
    result = burst(server.url + "/hello", 1024, timeout=120)
    assert (result["ok"], result["failed"]) == (1024, 0), result
    assert zombie_count_after_settling(server) == 0


def test_single_wait_reaper_leaves_zombies_under_the_same_burst(start_server):
    """The check above can fail: the lesson's one-wait-per-SIGCHLD reaper leaves zombies."""
    # It takes its address as an argument and prints the same startup line.
    server = ServerProcess(["127.0.0.1:0"], command=[sys.executable, os.path.join(TESTS, "lesson_reaper_server.py")])
    try:
        result = burst(server.url + "/hello", 128)
        assert result["ok"] == 128, result
        # Give a correct reaper every chance: wait until the children are done.
        wait_until(lambda: all(_is_zombie(child) for child in server.children()), 10)
        assert zombie_count_after_settling(server) > 0  # the same check the tests above pass
    finally:
        server.kill()


def _is_zombie(process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_accept_survives_a_signal_storm_without_losing_connections(start_server):
    server = start_server()
    stop = threading.Event()
    sent = [0]

    def storm():
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            for signum in (signal.SIGCHLD, signal.SIGHUP, signal.SIGUSR1, signal.SIGWINCH):
                os.kill(server.pid, signum)
                sent[0] += 1
            time.sleep(0.0005)

    thread = threading.Thread(target=storm)
    thread.start()
    try:
        results = [burst(server.url + "/hello", 128) for _ in range(3)]
    finally:
        stop.set()
        thread.join()
    assert sent[0] > 500
    for result in results:
        assert (result["ok"], result["failed"]) == (128, 0), result
    assert server.proc.poll() is None
    assert requests.get(server.url + "/hello", timeout=5).text == "Hello, World!"
    assert zombie_count_after_settling(server) == 0


def test_max_children_caps_live_children_without_dropping_connections(start_server):
    server = start_server("apps:slow", "--max-children", "4")
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                live = [c for c in server.children() if not _is_zombie(c)]
            except psutil.NoSuchProcess:
                continue
            peak[0] = max(peak[0], len(live))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = burst(server.url + "/?0.2", 24, timeout=60)
    finally:
        done.set()
        sampler.join()
    assert (result["ok"], result["failed"]) == (24, 0), result
    assert peak[0] == 4, f"peak live children {peak[0]}"


def test_hung_app_is_killed_by_the_child_timeout(start_server):
    server = start_server("apps:hang", "--child-timeout", "1")
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/", timeout=15)
    assert server.wait_for_log("child timeout: SIGTERM")
    assert wait_until(lambda: not server.children(), 10), "the hung child was not reaped"
    assert server.proc.poll() is None


def test_graceful_stop_drains_in_flight_request(start_server):
    server = start_server("apps:slow", "--graceful-timeout", "10")
    reply = {}

    def slow_request():
        reply["response"] = requests.get(server.url + "/?1.5", timeout=20)

    client = threading.Thread(target=slow_request)
    client.start()
    assert wait_until(lambda: len(server.children()) == 1, 5)
    child_pids = [child.pid for child in server.children()]
    server.signal(signal.SIGTERM)
    assert server.wait_for_log("graceful stop")
    # New connections are refused once the listener is closed.
    assert wait_until(lambda: _refused(server.port), 5)
    client.join(20)
    assert reply["response"].status_code == 200
    assert reply["response"].text == "slept 1.5\n"
    assert server.proc.wait(15) == 0
    assert not any(psutil.pid_exists(pid) and not _is_zombie(psutil.Process(pid)) for pid in child_pids)


def test_graceful_timeout_kills_what_does_not_finish(start_server):
    server = start_server("apps:hang", "--graceful-timeout", "1")
    client = threading.Thread(target=lambda: _ignore(requests.get, server.url + "/", timeout=20))
    client.start()
    assert wait_until(lambda: len(server.children()) == 1, 5)
    child_pid = server.children()[0].pid
    server.signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0
    client.join(20)
    assert not psutil.pid_exists(child_pid)
    assert "killing 1 child" in server.log


def test_child_killed_by_sigkill_mid_request_is_reaped(start_server):
    server = start_server("apps:hang")
    client = threading.Thread(target=lambda: _ignore(requests.get, server.url + "/", timeout=20))
    client.start()
    assert wait_until(lambda: len(server.children()) == 1, 5)
    server.children()[0].kill()
    client.join(20)
    assert wait_until(lambda: not server.children(), 5)
    assert server.wait_for_log("killed by SIGKILL")
    assert not server.zombies()
    assert server.proc.poll() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prlimit on another process is Linux-only")
def test_accept_survives_running_out_of_descriptors(start_server):
    server = start_server()
    process = psutil.Process(server.pid)
    original = process.rlimit(psutil.RLIMIT_NOFILE)
    open_now = process.num_fds()
    process.rlimit(psutil.RLIMIT_NOFILE, (open_now, original[1]))
    reply = {}
    client = threading.Thread(target=lambda: reply.setdefault("r", requests.get(server.url + "/hello", timeout=20)))
    client.start()
    try:
        assert server.wait_for_log("accept failed"), server.log
        time.sleep(1.2)  # several backoff rounds: logged once, still running
        assert server.log.count("accept failed") == 1
        assert server.proc.poll() is None
    finally:
        process.rlimit(psutil.RLIMIT_NOFILE, original)
    client.join(20)
    assert reply["r"].status_code == 200
    assert server.wait_for_log("accepting connections again")


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _ignore(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except requests.RequestException:
        pass


def test_parent_stays_small_with_the_built_in_app(start_server):
    """Fork cost grows with the parent's size, so the parent must stay under 25 MB."""
    server = start_server()
    assert burst(server.url + "/hello", 128)["ok"] == 128
    rss_mb = psutil.Process(server.pid).memory_info().rss / 2**20
    assert rss_mb <= 25, f"parent RSS {rss_mb:.1f} MB"


# Modules the serving parent must not hold: threading's at-fork hook runs in
# every child, and the rest is memory every fork copies page tables for and
# every child's exit unmaps, for code that runs only on an error (traceback),
# at an upgrade or a state-file write (json), in a metrics child (platform),
# or never (logging, shutil and the compression libraries it loads), or only
# to read the command line (argparse, and gettext and locale for its messages).
NOT_IN_THE_PARENT = {"threading", "logging", "traceback", "json", "platform", "shutil", "zlib", "bz2", "lzma",
                     "argparse", "gettext", "locale", "forkserver.flags"}


def test_the_serving_parent_holds_no_module_it_does_not_serve_with(start_server):
    server = start_server("modules_app:app")
    res = requests.get(server.url + "/", timeout=10)
    assert res.status_code == 200
    held = set(res.text.split("\n"))
    assert {"forkserver.arbiter", "forkserver.connection", "modules_app"} <= held, sorted(held)
    assert not held & NOT_IN_THE_PARENT, sorted(held & NOT_IN_THE_PARENT)
    # Gone, not only unlisted: no module object of theirs is left alive.
    alive = set(requests.get(server.url + "/live-modules", timeout=10).text.split("\n"))
    assert "forkserver.arbiter" in alive, sorted(alive)
    assert not alive & NOT_IN_THE_PARENT, sorted(alive & NOT_IN_THE_PARENT)


def test_the_serving_parent_never_built_the_ast_classes(start_server):
    """The first call of compile() in a process builds every class of the ast module, about
    210 kB that stay for good: typing.NamedTuple calls it for each field annotation it gets as
    a string (as `from __future__ import annotations` makes them), and every fork copies it."""
    compile_bytecode(FORKSERVER_PACKAGE, os.path.join(TESTS, "modules_app.py"))  # no compile() at import
    server = start_server("modules_app:app")
    res = requests.get(server.url + "/ast-classes", timeout=10)
    assert res.status_code == 200
    assert res.text == "", f"the serving parent built the ast classes: {res.text.split()[:5]}"
    # the probe sees them once a child has called compile()
    assert "Module" in requests.get(server.url + "/ast-classes?compile", timeout=10).text.split()
