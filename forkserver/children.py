"""The parent's table of its children: who runs since when, their timeouts, and how they ended.

Kept small on purpose: the parent writes to it once per fork and once per
exit, and every page the parent writes while children share it is copied. A
child is a (start time, counter slot) pair in a dict that keeps fork order,
so the oldest child, the only one a timeout can concern next, is the first.
"""

from __future__ import annotations

import os
import signal

from .log import log

KILL_AFTER = 2.0  # seconds between a timed-out child's SIGTERM and its SIGKILL


class Children:
    def __init__(self, timeout: float, inherited=(), counters: dict | None = None, other_exited=None):
        self.timeout = timeout
        self.other_exited = other_exited  # called for a reaped process that was not a connection's
        self.free_slots: list[int] = []   # where an exited child's counter slot goes back (stats.py)
        self.running: dict[int, tuple[float, int]] = {}  # pid -> (started, slot), in fork order
        self.terminated: dict[int, float] = {}  # pid -> when it was sent SIGTERM for its timeout
        self.killed: set[int] = set()           # sent SIGKILL (after SIGTERM, or at shutdown)
        counters = counters or {}
        # Forks of app connections are not counted one by one: they are the
        # children reaped and running, minus the scrapes' (counted, being few).
        self.metrics_forks = counters.get("metrics_forks", 0)
        self.timed_out = counters.get("timed_out", 0)
        self.reaped: dict[int, int] = {int(status): count for status, count in counters.get("reaped", {}).items()}
        for pid, started, slot, terminated_at, killed in inherited:
            self.running[pid] = (started, slot)
            if terminated_at is not None:
                self.terminated[pid] = terminated_at
            if killed:
                self.killed.add(pid)

    def settle_inherited(self) -> None:
        """After a hot upgrade, before SIGCHLD is let in: book the inherited
        children that have exited, and forget any that is no longer a child of
        this process (reaped by the previous program in its last moments).
        Kept, such a pid would be timed out and killed, perhaps as someone
        else's process by then, and a stop would wait for it."""
        for pid in list(self.running):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                del self.running[pid]
                self.terminated.pop(pid, None)
                self.killed.discard(pid)
                log.warning("child %d was handed over but is not a child any more: forgotten", pid)
                continue
            if done:
                self.exited(pid, status)

    def __len__(self) -> int:
        return len(self.running)

    def exited(self, pid: int, status: int) -> None:
        """A reaped child: forget it, give its counter slot back, count how it ended."""
        record = self.running.pop(pid, None)
        if record is None:
            if self.other_exited is not None:
                self.other_exited(pid, status)
            return
        self.free_slots.append(record[1])
        reaped = self.reaped
        reaped[status] = reaped.get(status, 0) + 1
        if status:
            self._log_exit(pid, status)
        elif self.terminated:
            self.terminated.pop(pid, None)
            self.killed.discard(pid)

    def _log_exit(self, pid: int, status: int) -> None:
        terminated = self.terminated.pop(pid, None) is not None
        killed = pid in self.killed
        self.killed.discard(pid)
        if os.WIFSIGNALED(status):
            name = signal.Signals(os.WTERMSIG(status)).name
            if terminated:
                log.info("child %d stopped by %s after its timeout", pid, name)
            elif killed:
                log.info("child %d stopped by %s at shutdown", pid, name)
            else:
                log.warning("child %d was killed by %s", pid, name)
        elif os.WEXITSTATUS(status):
            log.warning("child %d exited with status %d", pid, os.WEXITSTATUS(status))

    def next_deadline(self) -> float:
        """When enforce() next has something to do (infinity if never)."""
        deadline = float("inf")
        for pid, (started, _) in self.running.items():
            if pid not in self.terminated:
                deadline = started + self.timeout  # the oldest not yet told: the rest are younger
                break
        for pid, when in self.terminated.items():
            if pid not in self.killed:
                deadline = min(deadline, when + KILL_AFTER)
        return deadline

    def enforce(self, now: float) -> None:
        """SIGTERM children past the timeout, SIGKILL those that ignored it for KILL_AFTER."""
        for pid, (started, _) in self.running.items():
            if pid in self.terminated:
                continue
            if now - started < self.timeout:
                break
            log.warning("child %d ran past the %gs child timeout: SIGTERM", pid, self.timeout)
            self.terminated[pid] = now
            self.timed_out += 1
            _kill(pid, signal.SIGTERM)
        for pid, when in self.terminated.items():
            if pid not in self.killed and now - when >= KILL_AFTER:
                log.warning("child %d ignored SIGTERM: SIGKILL", pid)
                self.killed.add(pid)
                _kill(pid, signal.SIGKILL)

    def kill_all(self) -> None:
        for pid in self.running:
            self.killed.add(pid)
            _kill(pid, signal.SIGKILL)

    def counters(self) -> dict:
        """For /metrics and for the next program after a hot upgrade."""
        forks = sum(self.reaped.values()) + len(self.running) - self.metrics_forks
        return {"forks": forks, "metrics_forks": self.metrics_forks, "timed_out": self.timed_out,
                "reaped": {str(status): count for status, count in self.reaped.items()}}

    def handover(self) -> list:
        return [(pid, started, slot, self.terminated.get(pid), pid in self.killed)
                for pid, (started, slot) in self.running.items()]


def describe_status(status: int) -> tuple[str, str]:
    """A wait status as ("exit", "0") or ("signal", "SIGKILL")."""
    if os.WIFSIGNALED(status):
        return "signal", signal.Signals(os.WTERMSIG(status)).name
    return "exit", str(os.WEXITSTATUS(status))


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # exited already; the reaper has it
