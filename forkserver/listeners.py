"""Listening sockets: parse a bind address, open it, describe it, clean it up."""

import errno
import os
import socket
import stat
from typing import NamedTuple  # annotations evaluated, not strings: see bytecode.py


class BindError(Exception):
    """An address could not be listened on; the message is for the operator."""

    def __init__(self, message: str, errno_: int = 0):
        super().__init__(message)
        self.errno = errno_
        self.closed_inherited: list[str] = []  # see open_listeners


class Address(NamedTuple):
    family: int
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"unix:{self.path}"
        if self.family == socket.AF_INET6:
            return f"http://[{self.host}]:{self.port}"
        return f"http://{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """HOST:PORT, [V6HOST]:PORT, :PORT or unix:PATH; raises ValueError naming the mistake."""
    text = text.strip()
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path:
            raise ValueError(f"unix address {text!r} has no path")
        return Address(socket.AF_UNIX, path=path)
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        family = socket.AF_INET6
        if not sep:
            raise ValueError(f"address {text!r} must look like [::]:PORT")
    else:
        host, sep, port = text.rpartition(":")
        family = socket.AF_INET
        if not sep:
            raise ValueError(f"address {text!r} must look like HOST:PORT, [::]:PORT or unix:PATH")
        host = host or "0.0.0.0"
        if ":" in host:
            raise ValueError(f"IPv6 address {text!r} must be written [HOST]:PORT")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"port in {text!r} must be a number from 0 to 65535")
    return Address(family, host=host, port=int(port))


METRICS = "metrics="  # spec prefix of the --metrics-bind listener


class Listener:
    """One bound, listening, non-blocking socket, the address it really has,
    and the bind address it was opened for (``spec``, as configured, with
    ``metrics=`` in front for the metrics listener)."""

    def __init__(self, sock: socket.socket, address: Address, spec: str = "", inherited: bool = False):
        self.sock = sock
        self.address = address
        self.family = int(address.family)  # a plain int: the child needs no enum to build its socket
        self.spec = spec
        self.metrics = spec.startswith(METRICS)
        self.inherited = inherited  # across a hot upgrade, from the code that ran before

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self, unlink: bool = True) -> None:
        self.sock.close()
        if unlink and self.address.family == socket.AF_UNIX:
            try:
                os.unlink(self.address.path)
            except FileNotFoundError:
                pass


def open_listener(address: Address, backlog: int, spec: str = "") -> Listener:
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        if address.family == socket.AF_UNIX:
            _remove_stale_socket(address.path)
            sock.bind(address.path)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if address.family == socket.AF_INET6:
                # [::] and 0.0.0.0 may then both be bound, as with nginx's ipv6only=on.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address.host, address.port))
        # The kernel caps it at net.core.somaxconn (Linux) or kern.ipc.somaxconn
        # (macOS, 128 by default) by itself, so a raised sysctl takes effect.
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {_describe(address)}: {_reason(exc, address)}", exc.errno) from None
    sock.setblocking(False)
    if address.family != socket.AF_UNIX:
        host, port = sock.getsockname()[:2]
        address = address._replace(host=host, port=port)
    return Listener(sock, address, spec)


def open_listeners(texts, backlog: int, inherited=()) -> tuple[list[Listener], list[str]]:
    """A listener for every bind address, and the bind addresses of the inherited sockets it closed.

    `inherited` is (descriptor, bind address) pairs handed over by a hot
    upgrade; one still wanted is kept, not reopened. An address on the port
    of an inherited one no longer wanted (0.0.0.0:8888 moved to
    127.0.0.1:8888) cannot be listened on beside it: that one is closed
    first, as gunicorn does on a reload (clients in its backlog then are
    reset), and named in the second list, or in BindError.closed_inherited
    should a later address fail. Should an address fail, what was opened is
    closed and what was inherited is left open (see release_listeners). Any
    other inherited socket no longer wanted stays open until close_dropped:
    up to then the previous code may have to run again on it.
    """
    kept = {spec: fd for fd, spec in inherited}
    wanted = {text.strip() for text in texts}
    closed: list[str] = []
    listeners: list[Listener] = []
    try:
        for text in texts:
            spec = text.strip()
            fd = kept.pop(spec, None)
            if fd is not None:
                listeners.append(adopt_listener(fd, backlog, spec))
                continue
            address = _address_of(spec)
            try:
                listeners.append(open_listener(address, backlog, spec))
            except BindError as exc:
                moved = _on_the_same_port(address, [held for held in kept if held not in wanted])
                if exc.errno != errno.EADDRINUSE or moved is None:
                    raise
                fd = kept.pop(moved)
                _close_inherited(fd, moved)
                closed.append(moved)
                listeners.append(open_listener(address, backlog, spec))
    except BindError as exc:
        release_listeners(listeners)
        exc.closed_inherited = closed
        raise
    return listeners, closed


def _on_the_same_port(address: Address, specs) -> str | None:
    """The first of `specs` (bind addresses) of the same family and fixed port as `address`, if any."""
    if address.family == socket.AF_UNIX or not address.port:
        return None
    for spec in specs:
        other = _address_of(spec)
        if other.family == address.family and other.port == address.port:
            return spec
    return None


def _address_of(spec: str) -> Address:
    """The address a bind address stands for, the metrics listener's included."""
    return parse_address(spec.removeprefix(METRICS))


def _close_inherited(fd: int, spec: str) -> None:
    """Close an inherited listening socket (and remove a unix socket's file)."""
    Listener(socket.socket(fileno=fd), _address_of(spec), spec).close()


def release_listeners(listeners: list[Listener]) -> None:
    """Undo open_listeners for a server that will not start after all.

    The sockets it opened are closed. Those it inherited are left open, and a
    unix socket's file in place: after a failed hot upgrade the code that ran
    before is executed again on them (cli.py), and clients wait in their
    backlog meanwhile.
    """
    for listener in listeners:
        if listener.inherited:
            listener.sock.detach()
        else:
            listener.close()


def close_dropped(inherited, listeners: list[Listener], closed=()) -> None:
    """Close the inherited sockets no bind address wants any more (and remove a unix socket's file),
    but for those open_listeners closed already (their descriptors may be new sockets' now)."""
    wanted = {listener.spec for listener in listeners}
    for fd, spec in inherited:
        if spec not in wanted and spec not in closed:
            _close_inherited(fd, spec)


def check_listeners(texts, held=()) -> None:
    """Listen on every bind address not in `held` for a moment, then close: BindError names the first
    that cannot be listened on (in use, not on this machine, a port that needs privileges).

    An address in use on the port of a held one that `texts` no longer names
    passes: open_listeners frees that port for it.
    """
    wanted = [text.strip() for text in texts]
    dropped = [spec for spec in held if spec and spec not in wanted]
    for spec in wanted:
        if spec in held:
            continue
        address = _address_of(spec)
        try:
            open_listener(address, 1, spec).close()
        except BindError as exc:
            if exc.errno != errno.EADDRINUSE or _on_the_same_port(address, dropped) is None:
                raise


def adopt_listener(fd: int, backlog: int, spec: str) -> Listener:
    """A listening socket this process inherited across exec, with the (maybe new) backlog."""
    sock = socket.socket(fileno=fd)
    sock.set_inheritable(False)
    sock.setblocking(False)
    sock.listen(backlog)
    address = _address_of(spec)
    if address.family != socket.AF_UNIX:
        host, port = sock.getsockname()[:2]
        address = address._replace(host=host, port=port)
    return Listener(sock, address, spec, inherited=True)


def _remove_stale_socket(path: str) -> None:
    """A socket file left by a dead server would make bind fail; anything else is kept."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
    else:
        raise OSError(errno.EADDRINUSE, "another server answers on that socket")
    finally:
        probe.close()


def _describe(address: Address) -> str:
    return str(address).removeprefix("http://")


def _reason(exc: OSError, address: Address) -> str:
    if exc.errno == errno.EACCES:
        if address.family != socket.AF_UNIX and 0 < address.port < 1024:
            return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        return "permission denied"
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "no such address on this machine"
    return (exc.strerror or str(exc)).lower()
