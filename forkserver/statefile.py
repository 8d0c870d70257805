"""The state file: what is running under this pid, and how the last upgrade went.

Written (atomically: a temporary file renamed over it) when the server starts
and after every upgrade attempt, so that ``forkserver-reload`` and deploy
tools can tell a finished upgrade from one that failed and left the old code
serving. A state file that cannot be written is logged, never fatal.
"""

from __future__ import annotations

import os

from .log import log


def write_state(path: str | None, state: dict) -> None:
    if not path:
        return
    import json  # only with a state file: see upgrade.py

    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w") as handle:
            json.dump(state, handle)
            handle.write("\n")
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("cannot write state file %s: %s", path, exc.strerror or exc)


def read_state(path: str) -> dict:
    """The state as written; raises OSError or ValueError."""
    import json

    with open(path) as handle:
        state = json.load(handle)
    if not isinstance(state, dict) or not isinstance(state.get("pid"), int):
        raise ValueError("not a forkserver state file")
    return state
