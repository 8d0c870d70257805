"""Hostile apps and a hostile environment: the server still answers, logs, and leaves nothing behind."""

import os
import signal
import socket
import threading
import time

import psutil
import pytest
import requests

from conftest import wait_until
from rawhttp import exchange, read_until_close, status_of


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_app_raising_system_exit_gets_500(start_server):
    server = start_server("apps:system_exit")
    reply = requests.get(server.url + "/", timeout=10)
    assert reply.status_code == 500
    assert server.wait_for_log("SystemExit: 3")
    assert "error in app handling GET /" in server.log


def test_traceback_is_logged_after_the_app_closes_stdio(start_server):
    server = start_server("apps:close_stdio_then_crash")
    reply = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(reply) == 500
    assert server.wait_for_log("RuntimeError: crashed after closing stdio")


def test_an_error_is_logged_when_the_app_left_no_descriptor_to_open_a_file_with(start_server):
    """The traceback module is imported at a child's first error; with no descriptor
    left to read it, the error is still logged, by its type and message."""
    server = start_server("apps:exhaust_descriptors_then_crash")
    reply = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(reply) == 500
    assert server.wait_for_log("free descriptors leaked")
    assert "error in app handling GET /" in server.log
    assert "RuntimeError: crashed with all" in server.log
    assert requests.get(server.url + "/", timeout=10).status_code == 500  # and it still serves


def test_connection_closes_at_once_although_a_background_process_holds_it(start_server):
    server = start_server("apps:background_process")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = read_until_close(sock, 20)
    elapsed = time.monotonic() - started
    background = int(reply.split(b"X-Background-Pid: ")[1].split(b"\r\n")[0])
    try:
        assert reply.endswith(b"started")
        assert _running(background), "the check needs the background process to hold the socket"
        assert elapsed < 3, "the client waited for the app's background process"
    finally:
        os.kill(background, signal.SIGKILL)


def test_children_never_outlive_their_timeout_when_the_parent_is_killed(start_server):
    server = start_server("apps:hang", "--child-timeout", "2")
    clients = [socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in range(5)]
    try:
        for sock in clients:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_until(lambda: len(server.children()) == 5, 10)
        pids = [child.pid for child in server.children()]
        forked_at = min(psutil.Process(pid).create_time() for pid in pids)
        os.kill(server.pid, signal.SIGKILL)
        server.proc.wait(10)
        assert wait_until(lambda: not any(_running(pid) for pid in pids), 10), "children outlived the parent"
        # child timeout 2 s + kill grace 2 s, with a second of slack for a busy machine
        assert time.time() - forked_at < 5
    finally:
        for sock in clients:
            sock.close()


def test_keepalive_connection_of_a_dead_parent_ends_after_its_next_response(start_server):
    server = start_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.endswith(b"Hello, World!") and b"Connection: close" not in first
        os.kill(server.pid, signal.SIGKILL)
        server.proc.wait(10)
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        second = read_until_close(sock, 10)
    assert status_of(second) == 200 and b"Connection: close" in second and second.endswith(b"Hello, World!")


def test_children_serve_when_inherited_descriptors_are_missing(start_server):
    """As on XNU, where a forked child has no kqueue: the child's clean-up meets closed descriptors."""
    server = start_server("apps:pid", env={"FORKSERVER_TEST_LOSE_LISTENERS_IN_CHILDREN": "1"})
    replies = [requests.get(server.url + "/", timeout=10) for _ in range(3)]
    assert [reply.status_code for reply in replies] == [200, 200, 200]
    assert "failed" not in server.log


class PidsCgroup:
    """A pids cgroup (the kernel's process limit that systemd's TasksMax uses) holding one process."""

    ROOTS = ("/sys/fs/cgroup/pids", "/sys/fs/cgroup")

    def __init__(self, limit: int):
        for root in self.ROOTS:
            path = os.path.join(root, f"forkserver-test-{os.getpid()}")
            try:
                os.mkdir(path)
                with open(os.path.join(path, "pids.max"), "w") as handle:
                    handle.write(str(limit))
            except OSError:
                self._remove(path)
                continue
            self.root, self.path = root, path
            return
        pytest.fail("this test needs a writable pids cgroup (cgroup v1 pids or v2 with the pids controller); "
                    "run the suite as root")

    def add(self, pid: int) -> None:
        with open(os.path.join(self.path, "cgroup.procs"), "w") as handle:
            handle.write(str(pid))

    def close(self) -> None:
        with open(os.path.join(self.path, "cgroup.procs")) as handle:
            pids = handle.read().split()
        for pid in pids:
            try:
                with open(os.path.join(self.root, "cgroup.procs"), "w") as handle:
                    handle.write(pid)
            except OSError:
                pass
        self._remove(self.path)

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.rmdir(path)
        except OSError:
            pass


def test_connections_accepted_while_fork_fails_are_served_once_it_works(start_server):
    server = start_server("apps:slow")
    cgroup = PidsCgroup(limit=4)  # the parent and three children
    try:
        cgroup.add(server.pid)
        results = []

        def client():
            try:
                results.append(requests.get(server.url + "/?0.3", timeout=60).status_code)
            except requests.RequestException as exc:
                results.append(repr(exc))

        threads = [threading.Thread(target=client) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
    finally:
        cgroup.close()
    assert results == [200] * 20, results
    time.sleep(1.1)  # the episode ends once fork has worked for a second
    assert requests.get(server.url + "/?0", timeout=10).status_code == 200
    assert server.wait_for_log("fork works again")
    assert server.log.count("fork failed") == 1, server.log
    assert server.proc.poll() is None
