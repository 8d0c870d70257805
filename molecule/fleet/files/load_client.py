"""Continuous load for the molecule scenario "fleet", run on the controller.

  load_client.py URL --stop-file PATH --out PATH [--interval 0.01] [--expect-body TEXT]

Sends GET URL on a new connection (Connection: close) every --interval
seconds, one at a time, until --stop-file exists (or --max-seconds pass).
Every request counts: a reply is good only with status 200 and the expected
body; anything else (refused, reset, timed out, another status or body) is a
failure, kept with its reason. It records the longest gap between two good
replies, and which version answered (the Server header, forkserver/VERSION).
At the end it writes one JSON object to --out and prints it.
"""

import argparse
import http.client
import json
import os
import time
import urllib.parse


def one_request(host, port, path, timeout):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.getheader("Server", ""), response.read()
    finally:
        conn.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--max-seconds", type=float, default=1200.0)
    parser.add_argument("--expect-body", default="Hello, World!")
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.url)
    path = url.path or "/"
    expected = args.expect_body.encode()

    started = time.time()
    total = ok = 0
    failures = []
    failure_reasons = {}
    versions = {}  # Server header -> {"count", "first_s", "last_s"} (seconds since the start)
    tail = []  # versions of the last 50 good replies
    last_ok = None
    longest_gap = 0.0
    while not os.path.exists(args.stop_file) and time.time() - started < args.max_seconds:
        sent = time.time()
        total += 1
        try:
            status, server, body = one_request(url.hostname, url.port or 80, path, args.timeout)
            reason = None if status == 200 and body == expected else f"status {status} body {body[:60]!r}"
        except (OSError, http.client.HTTPException) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        now = time.time()
        if reason is None:
            ok += 1
            if last_ok is not None:
                longest_gap = max(longest_gap, now - last_ok)
            last_ok = now
            seen = versions.setdefault(server, {"count": 0, "first_s": round(now - started, 1)})
            seen["count"] += 1
            seen["last_s"] = round(now - started, 1)
            tail = (tail + [server])[-50:]
        else:
            failure_reasons[reason.split(":")[0]] = failure_reasons.get(reason.split(":")[0], 0) + 1
            if len(failures) < 50:
                failures.append({"at": round(sent - started, 3), "reason": reason})
        time.sleep(max(0.0, args.interval - (time.time() - sent)))

    result = {
        "seconds": round(time.time() - started, 1),
        "requests": total,
        "ok": ok,
        "failed": total - ok,
        "failure_reasons": failure_reasons,
        "failures": failures,
        "longest_gap_ms": round(longest_gap * 1000, 1),
        "versions": versions,
        "first_version": min(versions, key=lambda v: versions[v]["first_s"]) if versions else None,
        "last_version": tail[-1] if tail else None,
        "last_50_versions": sorted(set(tail)),
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
