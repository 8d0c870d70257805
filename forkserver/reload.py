"""``forkserver-reload``: hot-upgrade a running server and say how it went.

It reads the server's state file (``--state-file``), sends the server SIGHUP,
and waits until the state file records the outcome of that upgrade: exit
status 0 when the new code serves, 1 when the upgrade failed (the old code
then still serves; the reason is printed), 2 for a usage mistake. Service
managers use it as the reload command (systemd's ExecReload=), and deploy
tools after installing new code.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from .statefile import read_state


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="forkserver-reload", description=__doc__.split("\n\n")[0])
    parser.add_argument("state_file", metavar="STATE_FILE", help="the server's --state-file")
    parser.add_argument("--timeout", type=float, default=90.0,
                        help="seconds to wait for the outcome (default 90)")
    args = parser.parse_args(argv)
    try:
        before = read_state(args.state_file)
    except (OSError, ValueError) as exc:
        return _say(f"cannot read state file {args.state_file!r}: {getattr(exc, 'strerror', None) or exc}", 2)
    pid = before["pid"]
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return _say(f"no server runs as pid {pid} (from {args.state_file})", 1)
    except PermissionError:
        return _say(f"not allowed to signal pid {pid}", 1)
    deadline = time.monotonic() + args.timeout
    state = before
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            state = read_state(args.state_file)
        except (OSError, ValueError):
            continue  # being replaced
        if state.get("upgrades", 0) <= before.get("upgrades", 0) or state["pid"] != pid:
            if not _alive(pid):
                return _say(f"pid {pid} exited during the upgrade", 1)
            continue
        last = state.get("last_upgrade") or {}
        if last.get("result") == "ok":
            return _say(f"pid {pid} upgraded to generation {state['generation']} "
                        f"(forkserver {state.get('version')}, {state.get('release')})", 0)
        return _say(f"upgrade failed, the previous code still serves: {last.get('reason', 'unknown reason')}", 1)
    return _say(f"no outcome within {args.timeout:g}s: pid {state['pid']} "
                f"{'runs' if _alive(state['pid']) else 'is gone'}, and the state file still records "
                f"{state.get('upgrades', 0)} upgrade(s), generation {state.get('generation')}", 1)


def _alive(pid: int) -> bool:
    """Running: a zombie (a server that died, not yet reaped by a parent that is slow to, or never
    reaps, as a shell or a container's init may be) is not."""
    import psutil  # here: not for every read of the state file

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _say(message: str, status: int) -> int:
    print(f"forkserver-reload: {message}", file=sys.stderr if status else sys.stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())
