"""The reaper: collects every exited child the moment SIGCHLD says one exited.

The kernel merges SIGCHLDs that arrive while one is pending, so a burst of 128
children exiting together may raise the signal only a few times. One wait() per
signal (the classic mistake) therefore leaves zombies; looping ``waitpid(-1,
WNOHANG)`` until nothing is left cannot. The handler does no I/O and no logging,
and touches nothing the main loop might be changing: it only records each exit
in a queue, for the main loop to act on.
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

    def install(self, then=None) -> None:
        """Must run before the first fork, or an early exit could go unnoticed.

        `then()` runs after each reaping in the handler (the arbiter uses it to
        end its wait early when it must act on an exit at once). A forked child
        keeps this handler (resetting handlers costs every child pages), and in
        a child it does nothing: the child's own children are the app's to wait for.
        """
        owner = os.getpid()

        def on_sigchld(signum, frame, reap=self.reap, getpid=os.getpid):
            if getpid() != owner:
                return
            reap()
            if then is not None:
                then()

        signal.signal(signal.SIGCHLD, on_sigchld)

    def reap(self) -> None:
        """Wait for every child that has exited; never blocks."""
        waitpid, append = os.waitpid, self.exits.append
        while True:
            try:
                pid, status = waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return  # ECHILD: no children at all
            except InterruptedError:
                continue
            if pid == 0:
                return  # children remain, none has exited
            append((pid, status))
