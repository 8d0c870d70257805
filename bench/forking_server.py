"""The standard library's socketserver.ForkingTCPServer answering hello.

The off-the-shelf way to write a forking server in Python, measured in
bench/run next to forkserver.  ForkingMixIn reaps its children in
service_actions() between requests and caps them at max_children (40 by
default), which is left as shipped: this is the stdlib as people use it.
Each connection gets one valid HTTP/1.1 reply with Content-Length, then
the connection is closed (no keep-alive).

Usage: python bench/forking_server.py [HOST] PORT
"""

import socketserver
import sys

BODY = b"Hello, World!"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"Connection: close\r\n"
    b"\r\n" + BODY
)


class HelloHandler(socketserver.StreamRequestHandler):
    """Read the request head up to the blank line, answer, let the server close."""

    def handle(self):
        while True:
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
        self.wfile.write(RESPONSE)


class Server(socketserver.ForkingTCPServer):
    """ForkingTCPServer with a backlog big enough for a burst of clients."""

    allow_reuse_address = True
    request_queue_size = 1024


def main(argv):
    """Parse [HOST] PORT and serve."""
    host, port = ("127.0.0.1", argv[0]) if len(argv) == 1 else argv[:2]
    with Server((host, int(port)), HelloHandler) as server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
