"""Clients of molecule's hot-upgrade check, run on the controller against a
target's published port while the role deploys new code or settings.

  upgrade_client.py PORT OUT_JSON STOP_FILE [--max-seconds S]

Until STOP_FILE exists (or S seconds, 900 by default):
  * loop: a new connection every 10 ms, GET /hello with Connection: close;
  * keep-alive: one connection, GET /hello every second; a response with
    Connection: close (what the server sends on a connection it adopted
    across an upgrade) is followed by a new connection, which is no error;
  * slow: GET /slow?seconds=5 started every 2.5 s, so that one is always in
    flight.
Every failure is recorded with its reason. STOP_FILE may hold JSON
{"upgrades": [epoch seconds, ...]}: the times the server recorded for its
upgrades, to tell which slow requests were in flight across one. Writes the
summary to OUT_JSON (and prints it) and exits 0; the playbook judges it.
"""

import http.client
import json
import os
import socket
import sys
import threading
import time

HOST = "127.0.0.1"
INTERVAL = 0.01
KEEPALIVE_EVERY = 1.0
SLOW_EVERY = 2.5
SLOW_SECONDS = 5
TIMEOUT = 20.0


def version_of(server_header):
    return server_header.split("/", 1)[1] if server_header and "/" in server_header else server_header or "?"


def one_request(port, path):
    """GET path on a new connection; (status, version, error)."""
    try:
        conn = socket.create_connection((HOST, port), timeout=TIMEOUT)
    except ConnectionRefusedError:
        return None, None, "refused"
    except OSError as exc:
        return None, None, "connect: %s" % exc
    data = b""
    try:
        conn.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path).encode())
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        return None, None, "%s after %d bytes" % (exc.__class__.__name__, len(data))
    finally:
        conn.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/1.1 "):
        return None, None, "no answer (%d bytes)" % len(data)
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" in headers and len(body) != int(headers["content-length"]):
        return status, None, "body cut short: %d of %s bytes" % (len(body), headers["content-length"])
    return status, version_of(headers.get("server")), None


class Clients:
    def __init__(self, port, stop_file, max_seconds):
        self.port = port
        self.stop_file = stop_file
        self.deadline = time.time() + max_seconds
        self.stopping = threading.Event()
        self.loop = []        # (start, end, status, version, error)
        self.keepalive = []   # (start, end, status, version, error, reconnected)
        self.slow = []
        self.slow_threads = []

    def should_stop(self):
        return self.stopping.is_set()

    def run_loop(self):
        next_start = time.time()
        while not self.should_stop():
            now = time.time()
            if now < next_start:
                time.sleep(next_start - now)
            start = time.time()
            status, version, error = one_request(self.port, "/hello")
            self.loop.append((start, time.time(), status, version, error))
            next_start = start + INTERVAL

    def run_keepalive(self):
        conn = None
        reconnect = False
        while not self.should_stop():
            start = time.time()
            if conn is None:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=TIMEOUT)
            try:
                conn.request("GET", "/hello")
                response = conn.getresponse()
                response.read()
                self.keepalive.append((start, time.time(), response.status,
                                       version_of(response.getheader("Server")), None, reconnect))
                reconnect = response.will_close
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self.keepalive.append((start, time.time(), None, None, "%s: %s" % (exc.__class__.__name__, exc),
                                       reconnect))
                conn.close()
                conn = None
                reconnect = True
            time.sleep(max(0.0, start + KEEPALIVE_EVERY - time.time()))
        if conn is not None:
            conn.close()

    def one_slow(self):
        start = time.time()
        status, version, error = one_request(self.port, "/slow?seconds=%d" % SLOW_SECONDS)
        self.slow.append((start, time.time(), status, version, error))

    def run_slow(self):
        while not self.should_stop():
            thread = threading.Thread(target=self.one_slow)
            thread.start()
            self.slow_threads.append(thread)
            self.stopping.wait(SLOW_EVERY)

    def run(self):
        threads = [threading.Thread(target=t) for t in (self.run_loop, self.run_keepalive, self.run_slow)]
        for thread in threads:
            thread.start()
        while not os.path.exists(self.stop_file) and time.time() < self.deadline:
            time.sleep(0.1)
        self.stopping.set()
        for thread in threads + self.slow_threads:
            thread.join()
        try:
            with open(self.stop_file) as handle:
                upgrades = json.load(handle).get("upgrades", [])
        except (OSError, ValueError):
            upgrades = []
        return self.summary([float(t) for t in upgrades if t])

    def summary(self, upgrades):
        loop_ok = sorted(end for _, end, status, _, _ in self.loop if status == 200)
        gaps = [(b - a, a) for a, b in zip(loop_ok, loop_ok[1:])]
        longest = max(gaps) if gaps else (0.0, 0.0)
        statuses = {}
        for _, _, status, _, error in self.loop:
            if status is not None:
                statuses[str(status)] = statuses.get(str(status), 0) + 1
        versions = []
        for _, _, status, version, _ in sorted(self.loop):
            if version and (not versions or versions[-1] != version):
                versions.append(version)
        failures = [{"at": round(start, 3), "reason": error} for start, _, _, _, error in self.loop if error]
        ka_errors = [{"at": round(start, 3), "reason": error} for start, _, _, _, error, _ in self.keepalive if error]
        ka_versions = []
        for _, _, _, version, _, _ in self.keepalive:
            if version and (not ka_versions or ka_versions[-1] != version):
                ka_versions.append(version)
        slow = [{"start": round(s, 3), "seconds": round(e - s, 2), "status": st, "version": v, "error": err,
                 "across_upgrade": any(s < u < e for u in upgrades)} for s, e, st, v, err in sorted(self.slow)]
        return {
            "loop": {
                "sent": len(self.loop),
                "statuses": statuses,
                "refused": sum(1 for f in failures if f["reason"] == "refused"),
                "failed": len(failures),
                "failures": failures[:20],
                "longest_gap_s": round(longest[0], 3),
                "longest_gap_after": round(longest[1], 3),
                "versions": versions,
                "seconds": round(self.loop[-1][1] - self.loop[0][0], 1) if self.loop else 0,
            },
            "keepalive": {
                "requests": len(self.keepalive),
                "errors": len(ka_errors),
                "error_list": ka_errors[:20],
                "reconnects_after_connection_close": sum(1 for *_, r in self.keepalive if r),
                "statuses": sorted({str(st) for _, _, st, _, _, _ in self.keepalive if st}),
                "versions": ka_versions,
            },
            "slow": {
                "sent": len(slow),
                "ok": sum(1 for s in slow if s["status"] == 200),
                "across_upgrade": [s for s in slow if s["across_upgrade"]],
                "not_ok": [s for s in slow if s["status"] != 200][:10],
            },
            "upgrades": upgrades,
        }


def main(argv):
    port, out, stop_file = int(argv[1]), argv[2], argv[3]
    max_seconds = float(argv[argv.index("--max-seconds") + 1]) if "--max-seconds" in argv else 900.0
    result = Clients(port, stop_file, max_seconds).run()
    with open(out, "w") as handle:
        json.dump(result, handle)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
