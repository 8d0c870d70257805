"""forkserver-zombies: count the zombie children of a process.

A fork-per-connection server must reap every child it forks.  After a burst
of connections (see forkserver-burst), this tool tells whether the server
left any child unreaped.  It uses psutil, so it works on Linux and macOS
without reading /proc itself.

By default only *direct* children are counted: only the parent can reap a
child, so a zombie among the server's direct children is the server's leak.
A zombie further down (a child of a child, e.g. a process the application
spawned) is its own parent's to reap, not the server's; ``--recursive``
counts those too, for looking at the whole tree.

A child that has just exited may not be reaped yet, so the count is taken
again for up to ``--wait`` seconds and the tool stops as soon as it is 0.

Usage::

    forkserver-zombies 1234
    forkserver-zombies --pid-file /run/forkserver.pid --wait 10 --verbose

Prints the count on stdout (with ``--verbose`` the zombie pids follow, one
per line).  Exit status: 0 when no zombie remains, 1 when some do, 2 for a
usage error (bad pid, no such process, unreadable pid file).
"""

from __future__ import annotations

import argparse
import sys
import time

import psutil

PROG = "forkserver-zombies"
DEFAULT_WAIT = 5.0
# How often the count is taken again while waiting: often enough to stop
# soon after the last reap, rarely enough to cost nothing.
POLL_INTERVAL = 0.1


class UsageError(Exception):
    """A mistake in the command line or its target: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line, not usage plus message."""

    def error(self, message):
        raise UsageError(message)


def build_parser():
    """The command line; see the module docstring."""
    p = _Parser(prog=PROG, description="Count the zombie children of a process.")
    p.add_argument("pid", nargs="?", help="pid of the parent process")
    p.add_argument("--pid-file", metavar="FILE", help="read the pid from FILE")
    p.add_argument("--wait", type=float, default=DEFAULT_WAIT, metavar="S",
                   help=f"keep re-checking for up to S seconds (default {DEFAULT_WAIT:g})")
    p.add_argument("--recursive", action="store_true",
                   help="count zombies among all descendants, not only direct children")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also print the zombie pids, one per line")
    return p


def parse_pid(text, origin):
    """Turn text into a positive pid, or raise UsageError naming where it came from."""
    try:
        pid = int(text.strip())
    except ValueError:
        raise UsageError(f"bad pid {text.strip()!r} {origin}") from None
    if pid <= 0:
        raise UsageError(f"bad pid {pid} {origin}: must be positive")
    return pid


def read_pid_file(path):
    """The pid written in a pid file (first line), or UsageError."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            first = f.readline()
    except OSError as exc:
        raise UsageError(f"cannot read pid file {path}: {exc.strerror or exc}") from None
    return parse_pid(first, f"in pid file {path}")


def parse_args(argv):
    """Parse argv and resolve the target pid; every mistake becomes a UsageError."""
    args = build_parser().parse_args(argv)
    if (args.pid is None) == (args.pid_file is None):
        raise UsageError("give either a PID or --pid-file FILE")
    if not args.wait >= 0:
        raise UsageError("--wait must be zero or more seconds")
    if args.pid_file is not None:
        args.pid = read_pid_file(args.pid_file)
    else:
        args.pid = parse_pid(args.pid, "on the command line")
    return args


def zombie_children(proc, recursive):
    """Pids of the children of proc that are zombies, sorted.

    A child that vanishes between listing and inspection has been reaped,
    so it is simply not a zombie.
    """
    pids = []
    for child in proc.children(recursive=recursive):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                pids.append(child.pid)
        except psutil.NoSuchProcess:  # reaped meanwhile
            continue
    return sorted(pids)


def ensure_alive(proc):
    """Raise NoSuchProcess if proc has exited.

    children() does not notice a dead parent by itself: its zombies would be
    re-parented and reaped by init, and we would wrongly report 0.
    """
    if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
        raise psutil.NoSuchProcess(proc.pid)


def count_until_clear(proc, recursive, wait):
    """Zombie pids after waiting up to `wait` seconds for them to be reaped.

    Returns as soon as none are left, so a healthy server costs one check.
    """
    deadline = time.monotonic() + wait
    while True:
        zombies = zombie_children(proc, recursive)
        ensure_alive(proc)
        if not zombies or time.monotonic() >= deadline:
            return zombies
        time.sleep(min(POLL_INTERVAL, max(0.0, deadline - time.monotonic())))


def open_process(pid):
    """psutil handle on pid, or UsageError when there is no such process."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            raise UsageError(f"process {pid} is itself a zombie")
        return proc
    except psutil.NoSuchProcess:
        raise UsageError(f"no such process: {pid}") from None
    except psutil.AccessDenied:
        raise UsageError(f"not allowed to inspect process {pid}") from None


def main(argv=None):
    """Entry point of the forkserver-zombies console script; returns the exit status."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        proc = open_process(args.pid)
        try:
            zombies = count_until_clear(proc, args.recursive, args.wait)
        except psutil.NoSuchProcess:
            raise UsageError(f"process {args.pid} exited while being checked") from None
        except psutil.AccessDenied:
            raise UsageError(f"not allowed to inspect process {args.pid}") from None
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    print(len(zombies))
    if args.verbose:
        for pid in zombies:
            print(pid)
    return 1 if zombies else 0


if __name__ == "__main__":
    sys.exit(main())
