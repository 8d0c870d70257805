"""A WSGI app answering with the names of the modules loaded in the process serving it.

A child is a fork of the serving parent and imports nothing of its own before
the app runs, so what it answers is what the parent holds: what every fork
copies. This module imports only sys, so as not to add to it.
"""

import sys


def app(environ, start_response):
    body = "\n".join(sorted(sys.modules)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
