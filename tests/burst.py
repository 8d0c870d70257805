"""Run the shipped forkserver-burst tool and read its JSON verdict."""

import json
import subprocess
import sys


def burst(url: str, clients: int = 128, conns: int = 1, timeout: float = 60, *extra: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "forkserver.burst", url, "--max-clients", str(clients),
         "--max-conns", str(conns), "--json", *extra],
        capture_output=True, text=True, timeout=timeout,
    )
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"burst printed no JSON (exit {done.returncode}): {done.stdout}{done.stderr}")
    result["exit"] = done.returncode
    return result
