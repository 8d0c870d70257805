"""Run on the balancer: report when HAProxy marks a server DOWN.

  watch_down.py SOCKET BACKEND SERVER [--timeout S]

Reads `show stat` from HAProxy's stats socket every 50 ms until SERVER of
BACKEND has status DOWN, then prints {"down_at": <time.time()>, "polls": N,
"last_status": ...} and exits 0; exits 1 if that does not happen within
--timeout seconds. Every process on the machine shares the same clock
(containers included), so down_at can be compared with a time taken on a
backend.
"""

import argparse
import csv
import json
import socket
import sys
import time


def show_stat(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return list(csv.DictReader(data.decode().lstrip("# ").splitlines()))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("socket")
    parser.add_argument("backend")
    parser.add_argument("server")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()
    deadline = time.time() + args.timeout
    polls = 0
    status = None
    while time.time() < deadline:
        polls += 1
        rows = [r for r in show_stat(args.socket) if r["pxname"] == args.backend and r["svname"] == args.server]
        status = rows[0]["status"] if rows else "absent"
        if status == "DOWN":
            print(json.dumps({"down_at": time.time(), "polls": polls, "last_status": status}))
            return 0
        time.sleep(0.05)
    print(json.dumps({"down_at": None, "polls": polls, "last_status": status}))
    return 1


if __name__ == "__main__":
    sys.exit(main())
