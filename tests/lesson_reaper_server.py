"""forkserver with the lesson's broken reaper: one wait per SIGCHLD (webserver3f).

Used only to show that the zero-zombie test can fail: when many children exit
together their SIGCHLDs merge, and a reaper that waits once per signal leaves
the rest as zombies. Run as: python lesson_reaper_server.py HOST:PORT
"""

import logging
import os
import sys

from forkserver.app import hello_app
from forkserver.arbiter import Arbiter
from forkserver.listeners import open_listeners
from forkserver.reaper import Reaper


class SingleWaitReaper(Reaper):
    def reap(self, signum=None, frame=None) -> None:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid:
            self.exits.append((pid, status))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    listeners, _ = open_listeners([sys.argv[1]], 1024)
    sys.exit(Arbiter(hello_app, listeners, reaper=SingleWaitReaper(), graceful_timeout=2).run())
