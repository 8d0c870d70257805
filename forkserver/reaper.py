"""The reaper: collects every exited child the moment SIGCHLD says one exited.

The kernel merges SIGCHLDs that arrive while one is pending, so a burst of 128
children exiting together may raise the signal only a few times. One wait() per
signal (the classic mistake) therefore leaves zombies; looping ``waitpid(-1,
WNOHANG)`` until nothing is left cannot. The handler does no I/O and no logging,
and touches nothing the main loop might be changing: it only records each exit
in a queue, for the main loop to act on.

The handler is one method, ``reap`` itself: every function a signal handler
calls is a function and a code object whose reference counts it writes, and
so pages the parent copies again after each fork.
"""

from __future__ import annotations

import collections
import os
import signal
from functools import partial


class Reaper:
    def __init__(self):
        # deque.append and popleft are atomic, so the handler and the main loop
        # can share it without a lock.
        self.exits: collections.deque[tuple[int, int]] = collections.deque()
        # Called after reaping, from the handler, while the owner must act on
        # an exit at once (the arbiter sets and clears it); None otherwise.
        # It must not raise: the handler may have interrupted anything, itself
        # included, between a waitpid() and the append that records its exit.
        self.wake = None
        self._owner = 0
        # What the handler calls, bound once: looking up os.getpid, os.waitpid
        # and deque.append at each signal writes their reference counts, on
        # pages of their own (see the module docstring).
        self._getpid = partial(os.getpid)
        self._wait_any = partial(os.waitpid, -1, os.WNOHANG)
        self._record = self.exits.append

    def install(self) -> None:
        """Must run before the first fork, or an early exit could go unnoticed.

        A forked child keeps this handler (resetting handlers costs every
        child pages), and in a child it does nothing: the child's own children
        are the app's to wait for.
        """
        self._owner = os.getpid()
        signal.signal(signal.SIGCHLD, self.reap)

    def reap(self, signum=None, frame=None) -> None:
        """Wait for every child that has exited; never blocks. Also the SIGCHLD handler."""
        if signum is not None and self._getpid() != self._owner:
            return  # in a child
        wait_any, record = self._wait_any, self._record
        while True:
            try:
                pid, status = wait_any()
            except ChildProcessError:
                break  # ECHILD: no children at all
            except InterruptedError:
                continue
            if pid == 0:
                break  # children remain, none has exited
            record((pid, status))
        if signum is not None and self.wake is not None:
            self.wake()
