"""Shared fixtures: real forkserver processes on 127.0.0.1, ephemeral ports."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
STARTUP = re.compile(r"serving (\S+)")


class ServerProcess:
    """A forkserver started as a real process; its log is collected as it is written."""

    def __init__(self, args, env=None, command=None):
        command = command or [sys.executable, "-m", "forkserver"]
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
            cwd=TESTS, text=True,
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.address = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(15) or self.address is None:
            self.kill()
            raise RuntimeError("forkserver did not start:\n" + self.log)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            match = STARTUP.search(line)
            if match and not self._ready.is_set():
                self.address = match.group(1).rstrip(",")
                self._ready.set()
        self._ready.set()

    @property
    def log(self) -> str:
        return "".join(self.lines)

    @property
    def url(self) -> str:
        return self.address

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.pid).children()

    def zombies(self) -> list[psutil.Process]:
        found = []
        for child in self.children():
            try:
                if child.status() == psutil.STATUS_ZOMBIE:
                    found.append(child)
            except psutil.NoSuchProcess:
                pass
        return found

    def wait_for_log(self, text: str, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log:
                return True
            time.sleep(0.02)
        return False

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            for child in psutil.Process(self.pid).children(recursive=True):
                try:
                    child.kill()
                except psutil.NoSuchProcess:
                    pass  # exited on its own meanwhile
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(5)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test, so a fixture can tell a failed test at teardown."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def start_server(request):
    """start_server(*args, env=...) -> ServerProcess; every server is stopped afterwards.

    When the test failed, each server's log is printed (pytest shows it with
    the failure): a failure seen only in CI can then be read, not guessed.
    """
    servers = []

    def start(*args, env=None, command=None, bind="127.0.0.1:0"):
        full = list(args)
        if bind:
            full = ["--bind", bind, *full]
        server = ServerProcess(full, env=env, command=command)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        for server in servers:
            print(f"--- log of forkserver pid {server.pid} (last 200 lines)")
            print("".join(server.lines[-200:]), end="")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Poll until predicate() is truthy; return its last value (a bounded wait, never a sleep-and-hope)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def free_port() -> int:
    """A loopback port nothing listens on: bound, then released, for a server told to take it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def compile_bytecode(*directories, invalidation_mode="timestamp"):
    """Write the bytecode of every module under `directories`, as pip install does for a package.

    A module imported without up-to-date bytecode is compiled at import, which
    leaves the compiler's state in the importing process: tests about what the
    serving parent holds compile first, so that they hold in a checkout where
    no bytecode is written (PYTHONDONTWRITEBYTECODE). Forced (-f): without it
    compileall passes over a .pyc whose recorded time matches but size does
    not, which the import system would not read (see forkserver/bytecode.py).
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-f", "--invalidation-mode", invalidation_mode,
                    *map(str, directories)],
                   check=True, capture_output=True, timeout=60)


FORKSERVER_PACKAGE = os.path.dirname(os.path.abspath(__import__("forkserver").__file__))
