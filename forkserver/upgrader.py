"""The parent's side of hot upgrades: when SIGHUP came, what it checks, when it hands over.

upgrade.py has the mechanism (the check command, what crosses exec, exec
itself); this is the sequence one parent runs, and what it tells the state
file, the log and the service manager at each step: start, check, hand
over or fail. It asks the arbiter for what crosses exec (listeners,
children, counters) and for the descriptor of the check's output to be
polled.
"""

from __future__ import annotations

import os
import signal
import time

from . import __version__, notify, upgrade
from .log import log
from .statefile import write_state
from .upgrade import Handover, UpgradeCheck


class Upgrader:
    def __init__(self, arbiter, handover: Handover | None, state_file: str | None, env_keys=frozenset()):
        self.arbiter = arbiter
        self.handover = handover
        # How this server was started (run again at every upgrade), and the code running now.
        self.command = handover.command if handover else upgrade.this_command()
        self.fallback = upgrade.resolved(upgrade.this_command())
        self.generation = handover.generation if handover else 0
        self.upgrades = handover.upgrades if handover else 0
        self.state_file = state_file
        self.env_keys = env_keys
        self.check: UpgradeCheck | None = None
        self.pending = False  # checked, waiting for a connection held while fork fails

    @property
    def busy(self) -> bool:
        return self.check is not None or self.pending

    def announce_start(self) -> None:
        handover, last = self.handover, None
        if handover is not None:
            if handover.fallen_back:
                last = {"result": "failed", "reason": handover.fallen_back}
                log.error("upgrade failed, the previous code serves again: %s", handover.fallen_back)
            else:
                last = {"result": "ok", "reason": ""}
                log.info("upgraded to generation %d (%s), %d connection(s) in flight kept",
                         self.generation, " ".join(self.command), len(handover.children))
        self._write_state(last)

    def begin(self) -> None:
        """SIGHUP: run the new code's --check-config; the loop polls its output."""
        if self.busy:
            log.warning("SIGHUP: an upgrade is already under way")
            return
        notify.reloading()
        try:
            self.check = UpgradeCheck(self.command, time.monotonic(),
                                      listening=[listener.spec for listener in self.arbiter.listeners])
        except OSError as exc:
            self.failed(f"cannot run {self.command[0]}: {exc.strerror or exc}")
            return
        self.arbiter.watch(self.check.output_fd, True)
        log.info("SIGHUP: checking the new code before the upgrade: %s", " ".join(self.check.command))

    def exited(self, pid: int, status: int) -> None:
        """A reaped process that was not a connection's: the check, if it is the check."""
        if self.check is None or pid != self.check.pid:
            return
        check, self.check = self.check, None
        self.arbiter.watch(check.output_fd, False)
        reason = check.finish(status)
        if self.arbiter.stopping:
            return
        if reason is not None:
            if check.earlier_output:
                log.error("the new code's check wrote:\n%s", check.earlier_output)
            self.failed(reason)
        elif self.arbiter.holding:
            self.pending = True  # after the connection held while fork fails is served
        else:
            self.hand_over()

    def on_deadline(self, now: float) -> None:
        if self.pending and not self.arbiter.holding:
            self.hand_over()
        check = self.check
        if check is not None and now >= check.deadline and not check.timed_out:
            check.timed_out = True
            self.stop_check()

    def stop_check(self) -> None:
        if self.check is not None:
            try:
                os.kill(self.check.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def hand_over(self) -> None:
        """Execute the new code in this process; returns only if that could not be done."""
        self.pending = False
        arbiter = self.arbiter
        # From here no exit may be reaped without being booked: one reaped now
        # and handed over as running would be "timed out" by the new code.
        upgrade.defer_signals()
        arbiter.requeue_signals()
        arbiter.book_exits()
        handover = Handover(
            command=self.command, fallback=self.fallback,
            listeners=[(listener.fileno(), listener.spec) for listener in arbiter.listeners],
            children=arbiter.children.handover(), generation=self.generation + 1, upgrades=self.upgrades + 1,
            counters=arbiter.counters(), stats=arbiter.stats.handover(), env_keys=sorted(self.env_keys))
        log.info("upgrading: executing %s with %d connection(s) in flight", " ".join(self.command),
                 len(arbiter.children))
        arbiter.retire_children(True)  # they answer their next request with Connection: close
        try:
            upgrade.execute(handover, self.command)
        except OSError as exc:
            arbiter.retire_children(False)
            self.failed(f"cannot execute {self.command[0]}: {exc.strerror or exc}")

    def failed(self, reason: str) -> None:
        self.upgrades += 1
        log.error("upgrade failed, the running code keeps serving: %s", reason)
        self._write_state({"result": "failed", "reason": reason})
        self.arbiter.send_status("READY=1", status=f"upgrade failed, generation {self.generation} serves: {reason}")

    def _write_state(self, last_upgrade: dict | None) -> None:
        write_state(self.state_file, {
            "pid": os.getpid(), "version": __version__, "generation": self.generation,
            "upgrades": self.upgrades, "release": self.fallback[0], "command": self.command,
            "last_upgrade": None if last_upgrade is None else dict(last_upgrade, at=time.time()),
        })
