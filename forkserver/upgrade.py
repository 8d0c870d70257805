"""Hot upgrade: the parent re-executes itself in place, keeping what clients depend on.

On SIGHUP the parent first runs the new code as ``--check-config`` (the app
imports, the settings are valid, and with ``--check-path`` the app answers
that path: see appcheck.py), still serving meanwhile. If that passes it
executes the new code in its own process: the pid stays (so the service
manager's main pid, the pid file and the parent of every running child stay
the same), the listening sockets stay open across exec (so no connection is
ever refused; new ones wait in the backlog for the few hundred milliseconds
the new code takes to start), and the children stay its own, still timed and
reaped. What the new code must know crosses exec in one environment variable:
the listening descriptors, the children, the counters, and how to go back.

If the new code fails after exec anyway, it executes the code that was
running before (the resolved path of the previous release, which a deploy
that keeps releases side by side still has), so the old code keeps serving.
"""

import os
import signal
import sys
from typing import NamedTuple  # annotations evaluated, not strings: see bytecode.py

from . import forkenv

HANDOVER_VARIABLE = "FORKSERVER_HANDOVER"
# Given to the new code's --check-config: the bind addresses the running
# server listens on already (one per line), so it tries to listen on the others.
LISTENING_VARIABLE = "FORKSERVER_LISTENING"
# Signals that must wait while the process is between two programs: their
# handlers are gone at exec, and SIGTERM's default action would end it.
DEFERRED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD)


class Handover(NamedTuple):
    """What one program of the parent leaves to the next."""

    command: list[str]                 # how the parent was started: run again for every upgrade
    fallback: list[str]                # the code that ran before, to go back to if the new one fails
    listeners: list[tuple[int, str]]   # (descriptor, the bind address as configured)
    children: list[tuple[int, float, int, float | None, bool]]  # pid, started, slot, terminated_at, killed
    generation: int                    # programs run under this pid so far, minus one
    upgrades: int                      # upgrade attempts so far (a state file reader counts on it)
    counters: dict                     # the parent's own counters (metrics.py)
    stats: dict                        # the children's shared counters (stats.py)
    env_keys: list[str]                # variables the settings file set
    fallen_back: str = ""              # why the new code could not start, when this is the fallback

    def encode(self) -> str:
        import json  # at upgrades only: the serving parent holds no copy of it for every fork to copy

        return json.dumps(self._asdict(), separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> "Handover":
        import json

        data = json.loads(text)
        data["listeners"] = [tuple(item) for item in data["listeners"]]
        data["children"] = [tuple(item) for item in data["children"]]
        return cls(**data)


def take_handover() -> Handover | None:
    """The handover this program was started with, if any; removed from the environment."""
    text = os.environ.pop(HANDOVER_VARIABLE, None)
    return Handover.decode(text) if text else None


def start_with_forking_settings() -> None:
    """On Linux, run this program again with the C runtime settings that make forks cheap (forkenv.py).

    Not for a one-off run (--check-config, --help, --version): it forks nothing.
    """
    if "--check-config" in sys.argv or "--help" in sys.argv or "--version" in sys.argv:
        return
    forkenv.start_with_forking_settings(this_command())


def this_command() -> list[str]:
    """How this process was started, so that running it again finds the code afresh.

    A console script (``/opt/forkserver/current/bin/forkserver``) is run by
    its path, so a ``current`` link moved since is followed and the script's
    own interpreter line picks the new release's Python. ``python -m
    forkserver`` is run the same way again.
    """
    script = sys.argv[0]
    if script and not script.endswith(".py") and os.path.isfile(script) and os.access(script, os.X_OK):
        return [script, *sys.argv[1:]]
    return [sys.executable, *sys.orig_argv[1:]]


def resolved(command: list[str]) -> list[str]:
    """The same command with its program's links resolved: the release running now."""
    return [os.path.realpath(command[0]), *command[1:]]


def check_command(command: list[str]) -> list[str]:
    return [*command, "--check-config"]


def spawn(command: list[str], output_fd: int, environment) -> int:
    """Start a command with stdout and stderr on output_fd; returns its pid (reaped by the reaper)."""
    actions = [(os.POSIX_SPAWN_DUP2, output_fd, 1), (os.POSIX_SPAWN_DUP2, output_fd, 2)]
    return os.posix_spawn(command[0], command, environment, file_actions=actions,
                          setsigdef=(signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE))


def execute(handover: Handover, command: list[str]) -> None:
    """Replace this program with `command`, handing it `handover`. Returns only if exec failed.

    Signals are blocked across exec (the mask survives it) and unblocked by
    the new program once its handlers are in place, so none is lost or
    takes its default action in between.
    """
    for fd, _ in handover.listeners:
        os.set_inheritable(fd, True)
    os.environ[HANDOVER_VARIABLE] = handover.encode()
    defer_signals()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    # The new code gets the forking settings here, so it need not execute itself again.
    environment = forkenv.forking_environment(os.environ) if forkenv.wanted() else dict(os.environ)
    try:
        os.execve(command[0], command, environment)
    except OSError:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, DEFERRED_SIGNALS)
        os.environ.pop(HANDOVER_VARIABLE, None)
        for fd, _ in handover.listeners:
            os.set_inheritable(fd, False)
        raise


def defer_signals() -> None:
    """Hold the signals the next program acts on (the mask survives exec)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, DEFERRED_SIGNALS)


def signals_ready() -> None:
    """Called by a program once its handlers are in place: deliver what waited across exec."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, DEFERRED_SIGNALS)


class UpgradeCheck:
    """The new code run as ``--check-config`` while the old code keeps serving.

    Its output is collected from a pipe (the last lines say why it failed);
    its exit status arrives through the reaper like any child's.
    """

    TIMEOUT = 60.0     # seconds the new code gets to import the app and check the settings
    OUTPUT_LIMIT = 16 * 1024

    def __init__(self, command: list[str], now: float, listening=()):
        self.command = check_command(command)
        read_fd, write_fd = os.pipe()
        try:
            self.pid = spawn(self.command, write_fd, {**os.environ, LISTENING_VARIABLE: "\n".join(listening)})
        except OSError:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.output_fd = read_fd
        self.output = bytearray()
        self.deadline = now + self.TIMEOUT
        self.timed_out = False
        self.earlier_output = ""

    def read(self) -> None:
        try:
            while data := os.read(self.output_fd, 65536):
                self.output += data[:max(0, self.OUTPUT_LIMIT - len(self.output))]
        except (BlockingIOError, InterruptedError):
            pass

    def finish(self, status: int) -> str | None:
        """Close the pipe; None if the check passed, else the reason it did not."""
        self.read()
        os.close(self.output_fd)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            return None
        lines = self.output.decode("utf-8", "replace").strip().splitlines()
        self.earlier_output = "\n".join(lines[:-1])  # a traceback the last line sums up, say
        if self.timed_out:
            return f"the new code did not finish --check-config within {self.TIMEOUT:g}s"
        if lines:
            return lines[-1].removeprefix("forkserver: ")
        if os.WIFSIGNALED(status):
            return f"the check was killed by {signal.Signals(os.WTERMSIG(status)).name}"
        return f"the check exited with status {os.WEXITSTATUS(status)}"
