"""The WSGI app of the molecule scenario "fleet".

GET /hello answers as forkserver's built-in app does; GET /whoami answers
what the app sees of the client (REMOTE_ADDR, REMOTE_PORT), and which host
answered, as JSON.
"""

import json
import socket

HOST = socket.gethostname()


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/hello":
        body, content_type, status = b"Hello, World!", "text/plain", "200 OK"
    elif path == "/whoami":
        body = json.dumps({
            "REMOTE_ADDR": environ.get("REMOTE_ADDR"),
            "REMOTE_PORT": environ.get("REMOTE_PORT"),
            "QUERY_STRING": environ.get("QUERY_STRING"),
            "host": HOST,
        }).encode()
        content_type, status = "application/json", "200 OK"
    else:
        body, content_type, status = b"not found", "text/plain", "404 Not Found"
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
