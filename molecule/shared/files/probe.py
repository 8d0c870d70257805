"""Probes that molecule's verify runs on a target with the service's own
python (its venv has psutil). Prints one JSON object.

  probe.py proc PID                      owner, groups, argv, environment, children
  probe.py plist PATH                    a launchd property list as JSON
  probe.py kill-child PORT MAIN_PID      SIGKILL a child mid-request (see below)
  probe.py hold PORT READY_FILE SECONDS  a request in flight across a restart (see below)
  probe.py metrics ADDRESS               scrape /metrics, parsed by prometheus_client
"""

import grp
import json
import os
import plistlib
import pwd
import signal
import socket
import sys
import time

import psutil


def proc(pid):
    p = psutil.Process(pid)
    uids, gids = p.uids(), p.gids()
    try:
        environ = p.environ()
    except (psutil.AccessDenied, OSError):
        environ = None
    return {
        "pid": pid,
        "user": pwd.getpwuid(uids.effective).pw_name,
        "group": grp.getgrgid(gids.effective).gr_name,
        "cmdline": p.cmdline(),
        "environ": environ,
        "children": [c.pid for c in p.children()],
        "status": p.status(),
    }


def plist(path):
    with open(path, "rb") as f:
        return plistlib.load(f)


def kill_child(port, main_pid):
    """Start a request whose headers never finish: the server forks a child
    for the connection, which stays in the middle of reading the request.
    Kill that child with SIGKILL, check the connection drops, and report."""
    main = psutil.Process(main_pid)
    before = {c.pid for c in main.children()}
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    deadline = time.monotonic() + 10
    new = []
    while time.monotonic() < deadline:
        new = [c for c in main.children()
               if c.pid not in before and c.status() != psutil.STATUS_ZOMBIE]
        if new:
            break
        time.sleep(0.05)
    if not new:
        return {"killed": None, "error": "no child appeared for the slow request",
                "children_before": sorted(before)}
    child = new[0]
    alive_before_kill = child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    os.kill(child.pid, signal.SIGKILL)
    conn.settimeout(10)
    try:
        closed = conn.recv(1024) == b""
    except ConnectionResetError:
        closed = True
    except socket.timeout:
        closed = False
    conn.close()
    return {"killed": child.pid, "alive_before_kill": alive_before_kill,
            "connection_closed": closed, "children_before": sorted(before)}


def hold(port, ready_file, seconds):
    """Start a request whose headers never finish, so that the server has a
    connection in flight (a graceful stop waits for it, up to the header
    timeout), touch READY_FILE once the server has accepted it, then wait
    for whatever the server answers before it closes the connection."""
    start = time.monotonic()
    conn = socket.create_connection(("127.0.0.1", port), timeout=seconds)
    conn.sendall(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    time.sleep(0.5)  # the parent accepts and forks the child
    with open(ready_file, "w") as f:
        f.write(str(os.getpid()))
    data, error = b"", None
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:  # a timeout or a reset
        error = str(e)
    conn.close()
    return {"answer": data.split(b"\r\n", 1)[0].decode("latin-1"), "error": error,
            "seconds": round(time.monotonic() - start, 2)}


def metrics(address):
    """Scrape http://ADDRESS/metrics and parse it with prometheus_client's own
    parser; sums of the series the checks use, and the first lines as text."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen("http://%s/metrics" % address, timeout=10) as response:
        text = response.read().decode()
    sums = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("forkserver_requests_total", "forkserver_forks_total",
                               "forkserver_children_reaped_total", "forkserver_children",
                               "forkserver_zombies", "forkserver_generation"):
                sums[sample.name] = sums.get(sample.name, 0) + sample.value
            if sample.name == "forkserver_forks_total":
                key = "forks_total_" + sample.labels.get("listener", "?")
                sums[key] = sums.get(key, 0) + sample.value
    lines = [line for line in text.splitlines() if line.startswith(
        ("forkserver_requests_total", "forkserver_forks_total", "forkserver_children_reaped_total",
         "forkserver_children ", "forkserver_zombies", "forkserver_generation"))]
    return {"sums": sums, "lines": lines[:12]}


def main(argv):
    what = argv[1]
    if what == "proc":
        result = proc(int(argv[2]))
    elif what == "plist":
        result = plist(argv[2])
    elif what == "kill-child":
        result = kill_child(int(argv[2]), int(argv[3]))
    elif what == "metrics":
        result = metrics(argv[2])
    elif what == "hold":
        result = hold(int(argv[2]), argv[3], float(argv[4]))
    else:
        raise SystemExit("unknown probe %s" % what)
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
