"""The built-in app: what forkserver serves when no MODULE:APP is given."""

HELLO = b"Hello, World!"


def hello_app(environ, start_response):
    """GET (or HEAD) / and /hello answer Hello, World!; anything else is 404 or 405."""
    if environ["PATH_INFO"] not in ("/", "/hello"):
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"Not Found\n"]
    if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
        start_response("405 Method Not Allowed",
                       [("Content-Type", "text/plain"), ("Allow", "GET, HEAD"), ("Content-Length", "19")])
        return [b"Method Not Allowed\n"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))])
    return [HELLO]
