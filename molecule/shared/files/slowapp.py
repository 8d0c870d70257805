"""A WSGI app for molecule's hot-upgrade check: forkserver's built-in app,
plus /slow?seconds=S, which answers 200 after S seconds (a request that is
in flight while the server upgrades). /hello is the built-in app's, so a
release whose built-in app is broken is broken here too."""

import time
from urllib.parse import parse_qs

from forkserver.app import hello_app


def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("seconds", ["5"])[0])
        time.sleep(min(seconds, 20))
        body = b"slept %g s\n" % seconds
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    return hello_app(environ, start_response)
