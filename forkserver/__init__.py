"""forkserver: a fork-per-connection HTTP/1.1 WSGI server that never leaves zombies."""

__version__ = "0.1.0"
