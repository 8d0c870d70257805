"""A raw socket client for requests that requests/urllib3 refuse to send."""

import socket
import time


def exchange(port: int, data: bytes, timeout: float = 10, read_all: bool = True) -> bytes:
    """Send raw bytes, return everything the server answers until it closes (or times out)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_close(sock, timeout) if read_all else sock.recv(65536)


def read_until_close(sock: socket.socket, timeout: float = 10) -> bytes:
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def status_of(reply: bytes) -> int:
    assert reply.startswith(b"HTTP/1.1 "), reply[:200]
    return int(reply[9:12])
