"""The reaper: collects every exited child the moment SIGCHLD says one exited.

The kernel merges SIGCHLDs that arrive while one is pending, so a burst of 128
children exiting together may raise the signal only a few times. One wait() per
signal (the classic mistake) therefore leaves zombies; looping ``waitpid(-1,
WNOHANG)`` until nothing is left cannot. The handler does no I/O and no logging
(logging from signal context can deadlock on the logging lock): it only records
each exit for the main loop to act on.
"""

from __future__ import annotations

import collections
import os
import signal


class Reaper:
    def __init__(self):
        # deque.append and popleft are atomic, so the handler and the main loop
        # can share it without a lock.
        self.exits: collections.deque[tuple[int, int]] = collections.deque()

    def install(self) -> None:
        """Must run before the first fork, or an early exit could go unnoticed."""
        signal.signal(signal.SIGCHLD, self._on_sigchld)

    def _on_sigchld(self, signum, frame) -> None:
        self.reap()

    def reap(self) -> None:
        """Wait for every child that has exited; never blocks."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return  # ECHILD: no children at all
            except InterruptedError:
                continue
            if pid == 0:
                return  # children remain, none has exited
            self.exits.append((pid, status))

    def pop_exits(self):
        """Yield (pid, wait status) for every recorded exit, oldest first."""
        while self.exits:
            yield self.exits.popleft()
