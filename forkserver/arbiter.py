"""The accept loop: the parent process that accepts, forks, and keeps count.

Signal handlers only record (the signal number, or the exits the reaper
collected, in a queue); this loop acts on them between accepts. A handler ends
the loop's wait early, by a byte on the wakeup pipe (wakeup.py), only when the
loop must act at once; a handler never raises, so it can interrupt nothing
halfway. Every signal's meaning is in SIGNALS below.

The loop is shaped for its one frequent job: a listener is readable, accept,
fork, note the child, close the descriptor. A child's exit is reaped at once by
the SIGCHLD handler but booked by the loop only at its next wakeup, so an exit
costs no wakeup of its own. Fork copies the parent's page tables, and every
page the parent writes after a fork is copied (or at least faulted) again, so
the per-connection path allocates little and touches few objects: two clock
reads, a tuple per child, no per-connection objects of its own.
"""

from __future__ import annotations

import _signal
import collections
import errno
import gc
import mmap
import os
import select
import signal
import socket
import sys
import time
from functools import partial
# What a child calls, by name: reading a module's attribute writes the module
# object's reference count, one more page each child would copy.
from _signal import ITIMER_REAL, setitimer
from _socket import AF_UNIX, IPPROTO_TCP, SOCK_STREAM, TCP_NODELAY, socket as c_socket
from os import _exit, close as close_descriptor

from . import notify, stdstreams, upgrade
from .app import hello_app
from .children import KILL_AFTER, Children
from .connection import Connection, ConnectionSettings
from .log import log
from .metrics import MetricsApp
from .reaper import Reaper
from .response import refresh_date
from .listeners import BindError, open_listener, parse_address
from .stats import Region, SlotCounter, Stats
from .upgrade import Handover
from .upgrader import Upgrader
from .wakeup import WakeupPipe

SIGNALS = {
    signal.SIGTERM: "graceful stop: stop accepting, let children finish for up to --graceful-timeout, "
                    "SIGKILL the rest, exit 0 (a second TERM or INT stops at once)",
    signal.SIGINT: "graceful stop, as SIGTERM",
    signal.SIGQUIT: "immediate stop: SIGKILL every child, reap them, exit 0",
    signal.SIGHUP: "hot upgrade: check the new code and settings, then re-execute in place keeping the "
                   "listeners and the children; if the new code fails, the old keeps serving (upgrade.py)",
    signal.SIGUSR1: "reopen the access log (after rotation)",
    signal.SIGCHLD: "reap every exited child (reaper.py)",
}

# In a child the parent's handlers stay installed (resetting them would copy
# pages in every child) and act for the child: these signals end it as their
# default action would; the others it ignores (a Ctrl-C reaches the whole
# process group, and the parent decides how its children stop).
CHILD_ENDING_SIGNALS = (int(signal.SIGTERM), int(signal.SIGQUIT))

ACCEPT_BATCH = 32         # accepts per wakeup, so queued signals are acted on promptly
ACCEPT_BACKOFF = 0.5      # pause after running out of descriptors
FORK_RETRY = 0.1          # pause between tries while fork fails (EAGAIN, ENOMEM)
FORK_QUIET = 1.0          # fork must work this long after a failure to end the episode
REAP_AFTER_KILL = 5.0     # bound on waiting for SIGKILLed children to be reaped
STATUS_EVERY = 5.0        # seconds between STATUS= lines to the service manager
WARM_UP_TIMEOUT = 5.0     # bound on each step of the warm-up, never reached when healthy
TICK_MS = 100             # how often the loop looks at its deadlines while any is set
IDLE_TICK_MS = 1000       # and while none is
NEVER = float("inf")


class Arbiter:
    def __init__(self, app, listeners, *, max_children=1024, child_timeout=30.0, graceful_timeout=30.0,
                 connection_settings=ConnectionSettings(), access_log=None, reaper=None,
                 handover: Handover | None = None, state_file: str | None = None, env_keys=frozenset()):
        self.app = app
        self.listeners = listeners
        self.max_children = max_children
        self.child_timeout = child_timeout
        self.graceful_timeout = graceful_timeout
        self.connection_settings = connection_settings
        self.access_log = access_log
        self.reaper = reaper or Reaper()
        self._signals: collections.deque[int] = collections.deque()
        self._stopping = False
        self._stop_now = False
        # poll, not epoll or kqueue: no descriptor of its own to shed in every
        # child (XNU does not even give a kqueue to a forked child), and for a
        # handful of descriptors no slower.
        self._poll = select.poll()
        self._listening = False
        self._listener_by_fd = {listener.fileno(): listener for listener in listeners}
        self._wakeup = WakeupPipe()     # a handler's way to end the wait (wakeup.py)
        self._poll.register(self._wakeup.fileno(), select.POLLIN)
        self._now = time.monotonic()    # read once per wakeup
        self._paused_until = 0.0        # accepting paused (no descriptors, fork failing) until then
        self._accept_failing = False
        self._held = None               # (fd, peer, listener) accepted while fork failed
        self._fork_failures = 0         # in the current episode of failing forks
        self._fork_failed_at = 0.0
        self.fork_failures = 0          # ever
        self.accept_errors: dict[str, int] = {}
        # One shared byte children read before keeping a connection alive: set
        # when this parent stops or hands over, so their clients move on.
        self._retired = mmap.mmap(-1, 1)
        self._std_streams = stdstreams.unbuffered  # a child flushes any other stream
        self.upgrader = Upgrader(self, handover, state_file, env_keys)
        self._notify = bool(os.environ.get("NOTIFY_SOCKET"))
        self._status_at = NEVER
        counters = handover.counters if handover else {}
        self.children = Children(child_timeout, handover.children if handover else (), counters,
                                 other_exited=self.upgrader.exited)
        # Children may have exited while the previous program handed over: reap them at start.
        self.children.settle_inherited()
        self.reaper.reap()
        self.fork_failures = counters.get("fork_failures", 0)
        self.accept_errors = dict(counters.get("accept_errors", {}))
        # The children's request counters (stats.py), in shared memory kept across upgrades.
        self.stats = Stats(max_children + 16, handover.stats if handover else None,
                           busy=[slot for _, slot in self.children.running.values()])
        self._free_slots = self.children.free_slots = self.stats.free
        if self.stats.lost_layout:
            log.warning("request counters restart: the previous code kept them as %s", self.stats.lost_layout)
        self._requests_at_status = (0, self._now)  # for STATUS=: requests served by then
        self._deadline = NEVER
        self._deadline_stale = True

    # --- lifecycle ---

    def run(self) -> int:
        log.keep_private_descriptor()  # an app that closes fd 2 must not silence the log
        self.pid = os.getpid()
        self._install_signals()
        upgrade.signals_ready()  # what arrived while the previous program handed over
        # Just before the loop (and the line that says the server is ready),
        # so that little runs in between that the children would pay for (see _warm_up).
        self._warm_up()
        # What every child of a listener starts from (see Connection), built once here.
        for listener in self.listeners:
            listener.blank = Connection(_server_address(listener), self.app, self.connection_settings,
                                        self.access_log, (self._retired, self.pid), SlotCounter(self.stats.current),
                                        ends_child=self._std_streams)
        gc.freeze()  # keep the app's objects out of the collector: fewer copy-on-write pages in children
        log.info("forkserver pid %d serving %s (max children %d)", self.pid,
                 ", ".join(("metrics at " if listener.metrics else "") + str(listener.address)
                           for listener in self.listeners), self.max_children)
        self.upgrader.announce_start()
        self.send_status("READY=1")
        try:
            self._serve()
            self._drain()
        finally:
            self._close_listeners()
        log.info("forkserver pid %d stopped", self.pid)
        return 0

    def _warm_up(self, rounds: int = 16) -> None:
        """Serve a few requests to the built-in app in the parent before the first fork.

        CPython 3.11+ rewrites bytecode as it first runs (specialisation) and
        caches the attributes it looks up on types, and every page written
        after a fork is copied. A child that ran code the parent never ran
        would write both, so the parent runs the child's own path here, from
        the accepted descriptor to the counted response, over a loopback
        listener of its own (never a real one: its backlog holds real
        clients): measured as about 80 fewer page faults per connection. The
        user's app is not called: it may not expect to run in the parent.
        """
        settings = self.connection_settings._replace(proxy_protocol_from=())  # a plain client
        request = b"GET /hello HTTP/1.1\r\nHost: warm-up\r\nConnection: close\r\n\r\n"
        warm = scratch = access_log = None
        try:
            scratch = Region.create(1)  # counts the warm-up's requests where no one reads them
            if self.access_log:  # its code runs in every child too
                access_log = self.access_log.to_nowhere()
            warm = open_listener(parse_address("127.0.0.1:0"), rounds)
            warm.sock.settimeout(WARM_UP_TIMEOUT)
            for _ in range(rounds):
                with socket.socket() as client:
                    client.settimeout(WARM_UP_TIMEOUT)
                    client.connect(("127.0.0.1", warm.address.port))
                    client.sendall(request)
                    fd, peer = warm.sock._accept()
                    warm.blank = Connection(_server_address(warm), hello_app, settings, access_log,
                                            counter=SlotCounter(scratch))
                    self._serve_connection(fd, peer, warm, 0)
                    client.recv(65536)
        except (OSError, BindError) as exc:  # out of descriptors, no loopback: serve anyway
            log.warning("warm-up skipped (%s): each connection costs more until the next start", exc)
        finally:
            if warm is not None:
                warm.close()
            if scratch is not None:
                scratch.close()
            if access_log is not None:
                access_log.close()

    def _install_signals(self) -> None:
        self.reaper.install()
        self._update_wake()
        record = self._record_signal  # one handler object for them all
        for signum in SIGNALS:
            if signum != signal.SIGCHLD:
                signal.signal(signum, record)

    def _record_signal(self, signum, frame) -> None:
        if os.getpid() != self.pid:
            _signal_in_child(signum)
            return
        self._signals.append(signum)
        self._wakeup.wake()

    def _update_wake(self) -> None:
        """Let the SIGCHLD handler end the wait only while an exit must be acted on
        at once: at the cap (an exit frees a place), while an upgrade check runs,
        while stopping. Otherwise an exit is booked at the next wakeup and costs
        none of its own. Called wherever one of these three changes."""
        urgent = not self._listening or self.upgrader.check is not None or self._stopping
        self.reaper.wake = self._wakeup.wake if urgent else None

    # --- the loop ---

    def _serve(self) -> None:
        """The loop, with the names its per-connection path uses bound to locals."""
        table = self.children
        running = table.running
        exits, exited, terminated, reaped = self.reaper.exits, table.exited, table.terminated, table.reaped
        max_children = self.max_children
        free_slots, new_slot = self._free_slots, self.stats.new_slot
        become_child = self._become_child  # looked up here: the parent never runs that call
        # Calling a module's function or a method of a built-in type writes the
        # function object's or the type's method's reference count, each on a
        # page of its own, copied again after every fork. Bound methods and
        # partials made here, one after another, share a page or two instead.
        poll = self._poll.poll
        monotonic, fork, close = partial(time.monotonic), partial(os.fork), partial(os.close)
        count_running, forget_running = running.__len__, running.pop
        take_slot, give_slot = free_slots.pop, free_slots.append
        take_exit, count_reaped = exits.popleft, reaped.get
        # What each listener's descriptor stands for: the listener, its raw accept, whether it serves metrics.
        accepting = {fd: (listener, listener.sock._accept, listener.metrics)
                     for fd, listener in self._listener_by_fd.items()}.get
        not_a_listener = (None, None, False)
        date_stale_at = 0.0
        wakeup = self._wakeup
        wakeup_fd = wakeup.fileno()
        while not self._stopping:
            while exits:
                pid, status = take_exit()
                # Children.exited's usual case, inline: a child that ended well.
                record = None if status or terminated else forget_running(pid, None)
                if record is None:
                    exited(pid, status)
                else:
                    give_slot(record[1])
                    reaped[0] = count_reaped(0, 0) + 1
            if self._signals:
                self._on_signals()
                continue
            now = self._now
            # Both sides are bools; `!=` on bools is never specialised, and so writes its code page on every pass.
            if (count_running() < max_children and now >= self._paused_until) is not self._listening:
                self._set_listening(not self._listening)
            deadline = self._next_deadline() if self._deadline_stale else self._deadline
            # Deadlines are met to within TICK: waking a few times a second
            # while children run is cheaper than working out a timeout each time.
            # The wait is never endless: a signal landing just as poll() starts
            # may be handled only after it returns, and is then acted on at the
            # next tick.
            events = poll(IDLE_TICK_MS if deadline == NEVER else TICK_MS)
            self._now = now = monotonic()
            if now >= date_stale_at:  # see refresh_date: once a second here, not in every child
                date_stale_at = now + refresh_date()
            for fd, _ in events:
                listener, accept, metrics = accepting(fd, not_a_listener)
                if listener is None:
                    if fd == wakeup_fd:
                        wakeup.drain()  # what woke the loop is acted on at the top
                    else:
                        self.upgrader.check.read()  # the only other descriptor polled
                    continue
                # One connection per readiness: poll says when there is another.
                if count_running() >= max_children:
                    continue
                try:
                    # The raw accept: a descriptor, not a socket object, so the parent
                    # (which only forks and closes it) builds nothing it would throw away.
                    conn_fd, peer = accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue  # nothing after all, a signal, or the client gave up in the backlog
                except OSError as exc:
                    self._accept_failed(exc)
                    continue
                if metrics or self._fork_failures or self._accept_failing:
                    self._fork(conn_fd, peer, listener)
                    continue
                # _fork's usual case, inline: a call is a function and a code
                # object written, so pages copied again after every fork.
                slot = take_slot() if free_slots else new_slot()
                try:
                    pid = fork()
                except OSError as exc:
                    give_slot(slot)
                    self._fork_failed(exc, conn_fd, peer, listener)
                    continue
                if pid == 0:
                    become_child(conn_fd, peer, listener, slot)
                if not running:
                    self._deadline_stale = True  # the first child brings a timeout
                running[pid] = (now, slot)
                close(conn_fd)
            if now >= deadline:
                self._on_deadline()

    def _set_listening(self, wanted: bool) -> None:
        """At the cap, stop watching the listeners: waiting clients stay in the backlog."""
        if wanted == self._listening:
            return
        for fd in self._listener_by_fd:
            if wanted:
                self._poll.register(fd, select.POLLIN)
            else:
                self._poll.unregister(fd)
        self._listening = wanted
        self._update_wake()

    def _fork(self, fd: int, peer, listener) -> None:
        """Fork a child for an accepted connection (kept and retried if fork fails)."""
        if listener.metrics:  # a scrape sees every exit reaped so far booked
            self.book_exits()
        free = self._free_slots
        slot = free.pop() if free else self.stats.new_slot()
        try:
            pid = os.fork()
        except OSError as exc:
            free.append(slot)
            self._fork_failed(exc, fd, peer, listener)
            return
        if pid == 0:
            self._become_child(fd, peer, listener, slot)
        running = self.children.running
        if not running:
            self._deadline_stale = True  # the first child brings a timeout
        running[pid] = (self._now, slot)
        os.close(fd)
        if listener.metrics:
            self.children.metrics_forks += 1
        if self._accept_failing or self._fork_failures:
            self._accept_recovered()

    # --- what the upgrader (upgrader.py) asks of the arbiter ---

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def holding(self) -> bool:
        """A connection accepted while fork failed is waiting for its child."""
        return self._held is not None

    def watch(self, fd: int, wanted: bool) -> None:
        """Poll fd (the upgrade check's output) in the loop, or stop."""
        if wanted:
            self._poll.register(fd, select.POLLIN)
        else:
            self._poll.unregister(fd)
        self._deadline_stale = True
        self._update_wake()

    def book_exits(self) -> None:
        """Act on every exit the reaper has recorded."""
        exits, exited = self.reaper.exits, self.children.exited
        while exits:
            exited(*exits.popleft())

    def requeue_signals(self) -> None:
        """Before an exec, with the signals blocked (upgrade.defer_signals): those recorded
        but not yet acted on (a SIGTERM can land just as the check ends) are sent again,
        so they wait across exec for the new code instead of being lost with this one."""
        while self._signals:
            signum = self._signals.popleft()
            if signum in upgrade.DEFERRED_SIGNALS:
                os.kill(self.pid, signum)

    def retire_children(self, retired: bool) -> None:
        """Tell the children of this program to end their connection after the current response."""
        self._retired[0] = int(retired)

    # --- when accept or fork fails ---

    def _accept_failed(self, exc: OSError) -> None:
        """Out of descriptors, memory or anything else: back off, log once, keep going."""
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        self.accept_errors[name] = self.accept_errors.get(name, 0) + 1
        if not self._accept_failing:
            log.error("accept failed: %s; retrying every %.1fs", exc.strerror or exc, ACCEPT_BACKOFF)
            self._accept_failing = True
        self._paused_until = time.monotonic() + ACCEPT_BACKOFF
        self._deadline_stale = True

    def _fork_failed(self, exc: OSError, fd: int, peer, listener) -> None:
        """Keep the accepted connection and stop accepting: clients wait in the backlog, none is dropped.

        At a process limit fork fails and succeeds by turns as children come
        and go; that is one episode, logged once, until fork has worked for a while.
        """
        self.fork_failures += 1
        if not self._fork_failures:
            log.error("fork failed: %s; holding the connection from %s and pausing accepts until fork works",
                      exc.strerror or exc, peer or "unix socket")
        self._fork_failures += 1
        self._fork_failed_at = time.monotonic()
        self._held = (fd, peer, listener)
        self._paused_until = self._fork_failed_at + FORK_RETRY
        self._deadline_stale = True

    def _accept_recovered(self) -> None:
        if self._accept_failing:
            log.warning("accepting connections again")
            self._accept_failing = False
        if self._fork_failures and self._now - self._fork_failed_at >= FORK_QUIET:
            log.warning("fork works again (it failed %d time(s))", self._fork_failures)
            self._fork_failures = 0

    # --- in the child ---

    def _become_child(self, fd: int, peer, listener, slot: int) -> None:
        """In the child: shed the parent's state, serve the one connection, and exit."""
        status = 0
        try:
            # The hard deadline: SIGALRM's default action ends this child at the
            # child timeout plus the kill grace, even when the parent is gone.
            setitimer(ITIMER_REAL, self.child_timeout + KILL_AFTER)
            # Plain closes of the parent's descriptors: the objects' own close()
            # methods would touch (and so copy) more of the parent's memory.
            # One that is not there (a kqueue on XNU) is fine.
            check = self.upgrader.check
            for inherited in (*self._listener_by_fd, *((check.output_fd,) if check else ())):
                try:
                    close_descriptor(inherited)
                except OSError:
                    pass
            self._serve_connection(fd, peer, listener, slot)
        except BaseException:
            log.exception("child %d failed", os.getpid())
            status = 1
        finally:  # when the connection did not end the child itself (Connection.ends_child)
            try:
                # Only streams other than the unbuffered ones (stdstreams) may hold output.
                if sys.stdout is not self._std_streams[0] or sys.stderr is not self._std_streams[1]:
                    sys.stdout.flush()
                    sys.stderr.flush()
            finally:
                _exit(status)

    def _serve_connection(self, fd: int, peer, listener, slot: int) -> None:
        """A child's work for one accepted connection (also the parent's warm-up)."""
        # The C socket type: socket.socket's Python layer (enum conversions,
        # makefile bookkeeping) would copy pages the child never needs.
        family = listener.family
        conn = c_socket(family, SOCK_STREAM, 0, fd)
        conn.setblocking(True)
        if family != AF_UNIX:
            conn.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        if listener.metrics:  # a scrape: not one of the requests it counts
            Connection(_server_address(listener), MetricsApp(self._metrics_snapshot(), self.stats, self.pid),
                       self.connection_settings, self.access_log, (self._retired, self.pid)).serve(conn, peer)
        else:
            listener.blank.serve(conn, peer, slot)

    def _metrics_snapshot(self) -> dict:
        """The parent's state as this (metrics) child was forked."""
        return {"counters": self.counters(), "children": len(self.children), "max_children": self.max_children,
                "generation": self.upgrader.generation}

    def counters(self) -> dict:
        return dict(self.children.counters(), fork_failures=self.fork_failures, accept_errors=self.accept_errors)

    # --- acting on what the handlers recorded, and on deadlines ---

    def _on_signals(self) -> None:
        while self._signals:
            self._deadline_stale = True  # an upgrade or a stop brings deadlines of its own
            self._act_on_signal(self._signals.popleft())
        self._update_wake()

    def _act_on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self._stopping:
                log.info("%s again: stopping now", name)
                self._stop_now = True
            else:
                log.info("%s: graceful stop, waiting up to %gs for %d connection(s)",
                         name, self.graceful_timeout, len(self.children))
                self._stopping = True
        elif signum == signal.SIGQUIT:
            log.info("SIGQUIT: stopping now")
            self._stopping = self._stop_now = True
        elif signum == signal.SIGHUP:
            if not self._stopping:
                self.upgrader.begin()
        elif signum == signal.SIGUSR1:
            if self.access_log:
                self.access_log.reopen()
            log.info("%s: access log reopened", name)

    def _next_deadline(self) -> float:
        """When the loop must act on its own: a child timeout, a pause's end, an upgrade check, STATUS=.

        Worked out again only after something that can move it earlier (a fork
        into an empty table, any timer); cached in between. An exit can only
        move it later, and an early deadline costs one spare wakeup, after
        which it is worked out again.
        """
        self._deadline_stale = False
        deadline = self.children.next_deadline() if self.children.running else NEVER
        if self._paused_until > self._now:
            deadline = min(deadline, self._paused_until)
        elif self._held is not None:
            deadline = self._now
        if self.upgrader.check is not None:
            deadline = min(deadline, self.upgrader.check.deadline)
        elif self.upgrader.pending:
            deadline = self._now
        self._deadline = min(deadline, self._status_at)
        return self._deadline

    def _on_deadline(self) -> None:
        self._deadline_stale = True
        now = self._now
        self.children.enforce(now)
        if self._held is not None and not self._stopping and now >= self._paused_until:
            fd, peer, listener = self._held
            self._held = None
            self._fork(fd, peer, listener)
        self.upgrader.on_deadline(now)
        if now >= self._status_at:
            self.send_status()

    def send_status(self, *fields: str, status: str = "") -> None:
        """STATUS= (after any other fields) for the service manager; also sent every STATUS_EVERY s."""
        if not self._notify:
            return
        served, now = self.stats.requests_served(), time.monotonic()
        previous, then = self._requests_at_status
        rate = (served - previous) / (now - then) if now > then else 0.0
        self._requests_at_status = (served, now)
        status = status or (f"{len(self.children)} connection(s), {rate:.1f} requests/s, "
                            f"generation {self.upgrader.generation}")
        notify.notify(*fields, f"STATUS={status}")
        self._status_at = now + STATUS_EVERY
        self._deadline_stale = True

    # --- stopping ---

    def _drain(self) -> None:
        """Graceful stop: no new connections; in-flight ones finish or are killed."""
        self._retired[0] = 1
        notify.notify("STOPPING=1", f"STATUS=stopping, {len(self.children)} connection(s) in flight")
        self.upgrader.stop_check()
        self._close_listeners()
        self._close_held()
        self._status_at = NEVER
        give_up = time.monotonic() + self.graceful_timeout
        while self.children.running and not self._stop_now and time.monotonic() < give_up:
            self._now = time.monotonic()
            self._wait(min(self._next_deadline(), give_up) - self._now)
            self.children.enforce(time.monotonic())
        if self.children.running:
            log.warning("killing %d child(ren) still running", len(self.children))
            self.children.kill_all()
        give_up = time.monotonic() + REAP_AFTER_KILL
        while self.children.running and time.monotonic() < give_up:
            self._wait(0.05)

    def _wait(self, seconds: float) -> None:
        """While stopping: wait for an exit or a signal at most `seconds`, then act on them."""
        if not self._signals and not self.reaper.exits:
            self._poll.poll(max(0, min(int(seconds * 1000) + 1, TICK_MS)))
        self._wakeup.drain()
        self.reaper.reap()  # in case a SIGCHLD was merged with one already handled
        self.book_exits()
        self._on_signals()

    def _close_held(self) -> None:
        if self._held is not None:
            os.close(self._held[0])
            self._held = None

    def _close_listeners(self) -> None:
        self._set_listening(False)
        for listener in self.listeners:
            if listener.sock.fileno() >= 0:
                listener.close()


def _server_address(listener):
    """SERVER_NAME and SERVER_PORT for a listener's connections: the address it is bound to."""
    address = listener.address
    return (address.host, address.port) if address.port or address.host else address.path


def _signal_in_child(signum: int) -> None:
    """A signal for the parent's handler, caught in a child (see CHILD_ENDING_SIGNALS)."""
    if signum in CHILD_ENDING_SIGNALS:
        _signal.signal(signum, _signal.SIG_DFL)
        os.kill(os.getpid(), signum)

