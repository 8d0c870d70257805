"""Telling the service manager how the server is doing (systemd's sd_notify protocol).

Under ``Type=notify`` systemd hands the service a datagram socket in
``NOTIFY_SOCKET``; forkserver sends READY=1 once it listens, RELOADING=1 and
READY=1 around a hot upgrade, STOPPING=1 on a graceful stop, and a STATUS=
line. Without the variable (launchd, a terminal) nothing is sent. A message
that cannot be sent is dropped: the server never waits on its manager.
"""

from __future__ import annotations

import os
import socket
import time


def notify(*fields: str) -> bool:
    """Send NAME=value fields; True when there was a manager to tell."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode("utf-8", "replace"))
    except OSError:
        return False
    return True


def reloading() -> bool:
    # MONOTONIC_USEC lets systemd 253+ tell this reload from an earlier one.
    return notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
