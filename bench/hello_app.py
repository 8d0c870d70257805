"""The hello WSGI application gunicorn serves in bench/run.

Equivalent to forkserver's built-in app: GET /hello answers 200
"Hello, World!" with Content-Length.
"""

BODY = b"Hello, World!"


def app(environ, start_response):
    """Answer every request with the hello body."""
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(BODY)))])
    return [BODY]
