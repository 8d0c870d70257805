"""The accept loop: the parent process that accepts, forks, and keeps count.

Signal handlers only record (the signal number in a queue, a byte on the wakeup
socket); this loop acts on them between accepts, so nothing runs in signal
context except the reaper's ``waitpid`` loop. Every signal's meaning:
"""

from __future__ import annotations

import _signal
import collections
import gc
import mmap

import os
import selectors
import signal
import socket
import sys
import time

from .log import log
from .connection import Connection, ConnectionSettings
from .app import hello_app
from .reaper import Reaper



SIGNALS = {
    signal.SIGTERM: "graceful stop: stop accepting, let children finish for up to --graceful-timeout, "
                    "SIGKILL the rest, exit 0 (a second TERM or INT stops at once)",
    signal.SIGINT: "graceful stop, as SIGTERM",
    signal.SIGQUIT: "immediate stop: SIGKILL every child, reap them, exit 0",
    signal.SIGHUP: "reopen the access log (after rotation)",
    signal.SIGUSR1: "reopen the access log (after rotation)",
    signal.SIGCHLD: "reap every exited child (reaper.py)",
}

CHILD_DEFAULT_SIGNALS = (int(signal.SIGCHLD), int(signal.SIGTERM), int(signal.SIGQUIT), int(signal.SIGALRM))
CHILD_IGNORED_SIGNALS = (int(signal.SIGINT), int(signal.SIGHUP), int(signal.SIGUSR1))

KILL_AFTER = 2.0          # seconds between a timed-out child's SIGTERM and its SIGKILL
ACCEPT_BATCH = 32         # accepts per wakeup, so queued signals are acted on promptly
ACCEPT_BACKOFF = 0.5      # pause after running out of descriptors
FORK_RETRY = 0.1          # pause between tries while fork fails (EAGAIN, ENOMEM)
FORK_QUIET = 1.0          # fork must work this long after a failure to end the episode
REAP_AFTER_KILL = 5.0     # bound on waiting for SIGKILLed children to be reaped


class Child:
    __slots__ = ("pid", "started", "terminated_at", "killed")

    def __init__(self, pid: int, started: float):
        self.pid = pid
        self.started = started
        self.terminated_at: float | None = None  # when the parent sent SIGTERM
        self.killed = False                      # whether the parent sent SIGKILL


class Arbiter:
    def __init__(self, app, listeners, *, max_children=1024, child_timeout=30.0, graceful_timeout=30.0,
                 connection_settings=ConnectionSettings(), access_log=None, reaper=None):
        self.app = app
        self.listeners = listeners
        self.max_children = max_children
        self.child_timeout = child_timeout
        self.graceful_timeout = graceful_timeout
        self.connection_settings = connection_settings
        self.access_log = access_log
        self.reaper = reaper or Reaper()
        self.children: dict[int, Child] = {}  # in fork order, so the oldest come first
        self._timed_out: dict[int, Child] = {}  # children sent SIGTERM and not yet SIGKILL
        self._signals: collections.deque[int] = collections.deque()
        self._stopping = False
        self._stop_now = False
        self._accept_paused_until = 0.0
        self._accept_failing = False
        self._held = None  # (fd, peer, listener) accepted while fork failed: served once fork works
        self._fork_failures = 0  # in the current episode of failing forks
        self._fork_failed_at = 0.0
        self._listening = False
        # poll, not epoll or kqueue: no descriptor of its own to shed in every
        # child (XNU does not even give a kqueue to a forked child), and for a
        # handful of descriptors no slower.
        self._selector = selectors.PollSelector()
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        # One shared byte children read before keeping a connection alive: set
        # when this parent stops or hands over, so their clients move on.
        self._retired = mmap.mmap(-1, 1)

    # --- lifecycle ---

    def run(self) -> int:
        log.keep_private_descriptor()  # an app that closes fd 2 must not silence the log
        self.pid = os.getpid()
        self._install_signals()
        self._warm_up()
        gc.freeze()  # keep the app's objects out of the collector: fewer copy-on-write pages in children
        self._set_listening(True)
        log.info("forkserver pid %d serving %s (max children %d)", os.getpid(),
                 ", ".join(str(listener.address) for listener in self.listeners), self.max_children)
        try:
            while not self._stopping:
                self._wait_and_accept()
                self._after_wakeup()
            self._drain()
        finally:
            self._close_listeners()
        log.info("forkserver pid %d stopped", os.getpid())
        return 0

    def _warm_up(self, rounds: int = 16) -> None:
        """Serve a few requests to the built-in app in the parent before the first fork.

        CPython 3.11+ rewrites bytecode as it first runs (specialisation), and
        every page written after a fork is copied. Running forkserver's own
        request path here once means children share that code instead of each
        copying it: measured as about 80 fewer page faults per connection. The
        user's app is not called: it may not expect to run in the parent.
        """
        settings = self.connection_settings._replace(proxy_protocol_from=())  # a plain client
        for _ in range(rounds):
            server_end, client_end = socket.socketpair()
            with server_end, client_end:
                client_end.sendall(b"GET /hello HTTP/1.1\r\nHost: warm-up\r\nConnection: close\r\n\r\n")
                Connection(server_end, ("127.0.0.1", 0), ("127.0.0.1", 0), hello_app,
                           settings).serve()
                client_end.recv(65536)

    def _install_signals(self) -> None:
        for sock in (self._wakeup_r, self._wakeup_w):
            sock.setblocking(False)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, None)
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        self.reaper.install()
        for signum in SIGNALS:
            if signum != signal.SIGCHLD:
                signal.signal(signum, self._record_signal)

    def _record_signal(self, signum, frame) -> None:
        self._signals.append(signum)

    # --- the loop ---

    def _wait_and_accept(self) -> None:
        self._set_listening(len(self.children) < self.max_children and self._held is None
                            and time.monotonic() >= self._accept_paused_until)
        for key, _ in self._selector.select(self._next_timer()):
            if key.data is None:
                self._drain_wakeup()
            elif not self._stopping:
                self._accept(key.data)

    def _after_wakeup(self) -> None:
        self._act_on_signals()
        self._collect_exits()
        self._enforce_timeouts()
        if self._held is not None and not self._stopping and time.monotonic() >= self._accept_paused_until:
            fd, peer, listener = self._held
            self._held = None
            self._spawn(fd, peer, listener)

    def _set_listening(self, wanted: bool) -> None:
        """At the cap, stop watching the listeners: waiting clients stay in the backlog."""
        if wanted == self._listening:
            return
        for listener in self.listeners:
            if wanted:
                self._selector.register(listener.sock, selectors.EVENT_READ, listener)
            else:
                self._selector.unregister(listener.sock)
        self._listening = wanted

    def _accept(self, listener) -> None:
        for _ in range(ACCEPT_BATCH):
            if len(self.children) >= self.max_children or self._held is not None:
                return
            try:
                # The raw accept: a descriptor, not a socket object, so the parent
                # (which only forks and closes it) builds nothing it would throw away.
                fd, peer = listener.sock._accept()
            except BlockingIOError:
                return
            except InterruptedError:
                continue  # EINTR: a signal arrived; accept again
            except ConnectionAbortedError:
                continue  # the client gave up while waiting in the backlog
            except OSError as exc:
                self._accept_failed(exc)
                return
            if self._accept_failing:
                log.warning("accepting connections again")
                self._accept_failing = False
            self._spawn(fd, peer, listener)

    def _accept_failed(self, exc: OSError) -> None:
        """Out of descriptors, memory or anything else: back off, log once, keep going."""
        if not self._accept_failing:
            log.error("accept failed: %s; retrying every %.1fs", exc.strerror or exc, ACCEPT_BACKOFF)
            self._accept_failing = True
        self._accept_paused_until = time.monotonic() + ACCEPT_BACKOFF

    def _spawn(self, fd: int, peer, listener) -> None:
        try:
            pid = os.fork()
        except OSError as exc:
            self._fork_failed(exc, fd, peer, listener)
            return
        if pid == 0:
            self._become_child(fd, peer, listener.sock.family)
        now = time.monotonic()
        self.children[pid] = Child(pid, now)
        os.close(fd)
        if self._fork_failures and now - self._fork_failed_at >= FORK_QUIET:
            log.warning("fork works again (it failed %d time(s))", self._fork_failures)
            self._fork_failures = 0

    def _fork_failed(self, exc: OSError, fd: int, peer, listener) -> None:
        """Keep the accepted connection and stop accepting: clients wait in the backlog, none is dropped.

        At a process limit fork fails and succeeds by turns as children come
        and go; that is one episode, logged once, until fork has worked for a while.
        """
        if not self._fork_failures:
            log.error("fork failed: %s; holding the connection from %s and pausing accepts until fork works",
                      exc.strerror or exc, peer or "unix socket")
        self._fork_failures += 1
        self._fork_failed_at = time.monotonic()
        self._held = (fd, peer, listener)
        self._accept_paused_until = self._fork_failed_at + FORK_RETRY

    def _become_child(self, fd: int, peer, family: int) -> None:
        """In the child: shed the parent's state, serve the one connection, and exit."""
        status = 0
        try:
            self._reset_signals_for_child()
            # The hard deadline: SIGALRM's default action ends this child at the
            # child timeout plus the kill grace, even when the parent is gone.
            _signal.setitimer(_signal.ITIMER_REAL, self.child_timeout + KILL_AFTER)
            # Plain closes of the parent's descriptors: the objects' own close()
            # methods would touch (and so copy) more of the parent's memory.
            _close_inherited((*(listener.fileno() for listener in self.listeners),
                              self._wakeup_r.fileno(), self._wakeup_w.fileno()))
            conn = socket.socket(family, socket.SOCK_STREAM, 0, fd)
            conn.setblocking(True)
            if family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            Connection(conn, peer, conn.getsockname(), self.app, self.connection_settings,
                       self.access_log, (self._retired, self.pid)).serve()
        except BaseException:
            log.exception("child %d failed", os.getpid())
            status = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(status)

    @staticmethod
    def _reset_signals_for_child() -> None:
        # _signal.signal is what signal.signal wraps; the wrapper turns the old
        # handler into an enum, which in a fresh child copies ~20 pages per call.
        _signal.set_wakeup_fd(-1)
        # SIGCHLD back to default, so an app's own subprocesses are waited for by the app;
        # SIGTERM and SIGQUIT too, so the parent's timeouts and stops take effect.
        for signum in CHILD_DEFAULT_SIGNALS:
            _signal.signal(signum, _signal.SIG_DFL)
        # Ctrl-C reaches the whole process group: the parent decides how children stop.
        for signum in CHILD_IGNORED_SIGNALS:
            _signal.signal(signum, _signal.SIG_IGN)

    # --- acting on what the handlers recorded ---

    def _drain_wakeup(self) -> None:
        try:
            while self._wakeup_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _act_on_signals(self) -> None:
        while self._signals:
            signum = self._signals.popleft()
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
            elif signum in (signal.SIGHUP, signal.SIGUSR1):
                if self.access_log:
                    self.access_log.reopen()
                log.info("%s: access log reopened", name)

    def _collect_exits(self) -> None:
        for pid, status in self.reaper.pop_exits():
            child = self.children.pop(pid, None)
            self._timed_out.pop(pid, None)
            if child is None:
                continue
            if os.WIFSIGNALED(status):
                signame = signal.Signals(os.WTERMSIG(status)).name
                if child.terminated_at is not None:
                    log.info("child %d stopped by %s after its timeout", pid, signame)
                elif child.killed:
                    log.info("child %d stopped by %s at shutdown", pid, signame)
                else:
                    log.warning("child %d was killed by %s", pid, signame)
            elif os.WIFEXITED(status) and os.WEXITSTATUS(status):
                log.warning("child %d exited with status %d", pid, os.WEXITSTATUS(status))

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.terminated_at is None:
                if now - child.started < self.child_timeout:
                    break  # children are in fork order: the rest are younger
                log.warning("child %d ran past the %gs child timeout: SIGTERM", child.pid, self.child_timeout)
                child.terminated_at = now
                self._timed_out[child.pid] = child
                self._kill(child.pid, signal.SIGTERM)
        for child in list(self._timed_out.values()):
            if now - child.terminated_at >= KILL_AFTER:
                log.warning("child %d ignored SIGTERM: SIGKILL", child.pid)
                child.killed = True
                del self._timed_out[child.pid]
                self._kill(child.pid, signal.SIGKILL)

    def _next_timer(self) -> float | None:
        """Seconds until the loop must act on its own: a timeout or the end of an accept pause."""
        now = time.monotonic()
        timers = []
        if self._accept_paused_until > now:
            timers.append(self._accept_paused_until)
        for child in self.children.values():
            if child.terminated_at is None:
                timers.append(child.started + self.child_timeout)
                break
        timers.extend(child.terminated_at + KILL_AFTER for child in self._timed_out.values())
        return max(0.0, min(timers) - now) if timers else None

    @staticmethod
    def _kill(pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass  # exited already; the reaper has it

    # --- stopping ---

    def _drain(self) -> None:
        """Graceful stop: no new connections; in-flight ones finish or are killed."""
        self._retired[0] = 1
        self._close_listeners()
        self._close_held()
        deadline = time.monotonic() + self.graceful_timeout
        while self.children and not self._stop_now and time.monotonic() < deadline:
            timer = self._next_timer()
            wait = deadline - time.monotonic() if timer is None else min(timer, deadline - time.monotonic())
            for key, _ in self._selector.select(max(wait, 0.0)):
                if key.data is None:
                    self._drain_wakeup()
            self._after_wakeup()
        if self.children:
            log.warning("killing %d child(ren) still running", len(self.children))
            for child in self.children.values():
                child.killed = True
                self._kill(child.pid, signal.SIGKILL)
        give_up = time.monotonic() + REAP_AFTER_KILL
        while self.children and time.monotonic() < give_up:
            self._selector.select(0.05)
            self._drain_wakeup()
            self.reaper.reap()  # in case a SIGCHLD was merged with one already handled
            self._collect_exits()

    def _close_held(self) -> None:
        if self._held is not None:
            os.close(self._held[0])
            self._held = None

    def _close_listeners(self) -> None:
        if self._listening:
            self._set_listening(False)
        for listener in self.listeners:
            if listener.sock.fileno() >= 0:
                listener.close()


def _close_inherited(fds) -> None:
    """Close descriptors the child inherited; one that is not there (a kqueue on XNU) is fine."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
