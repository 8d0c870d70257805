"""The loop's wakeup pipe: how a signal handler ends the loop's wait without raising.

A signal that arrives while the loop waits in poll() interrupts the system
call, but Python runs the handler and then retries the poll (PEP 475), so the
handler must give poll something to return for. Raising an exception from the
handler would end the wait too, but an exception unwinds whatever Python code
the signal interrupted, and that can be another handler halfway through its
work: the reaper between waitpid() and recording the exit, which would then be
lost (the child gone, its slot never freed, an upgrade check never answered).
A byte written to a pipe the loop polls interrupts nothing.

Both ends are non-blocking and closed on exec (a hot upgrade makes its own).
A forked child keeps them open but never writes: its handlers return first.
"""

from __future__ import annotations

import os


class WakeupPipe:
    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)

    def fileno(self) -> int:
        """The end to poll for reading."""
        return self.read_fd

    def wake(self) -> None:
        """Make the next (or the current) poll return. Safe in a signal handler."""
        try:
            os.write(self.write_fd, b"\0")
        except BlockingIOError:
            pass  # full: a wakeup is pending already

    def drain(self) -> None:
        """Take the pending wakeups, so the next poll waits again."""
        try:
            while len(os.read(self.read_fd, 512)) == 512:
                pass
        except BlockingIOError:
            pass
