"""The PROXY protocol through a real server: raw sockets to 127.0.0.1.

With --proxy-protocol-from, a connection from a listed address must begin
with a PROXY header, and the app (REMOTE_ADDR, REMOTE_PORT) and the access
log see the client it names. From any other peer such a header is a
malformed request.
"""

import ipaddress
import json
import re
import socket
import struct

import pytest

from conftest import wait_until
from rawhttp import exchange, read_until_close, status_of

GET = b"GET /who HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_tcp4(src, sport, dst="192.0.2.10", dport=8888, command=1):
    block = (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
             + struct.pack("!HH", sport, dport))
    return V2_SIG + bytes([0x20 | command, 0x11]) + struct.pack("!H", len(block)) + block


def v2_local():
    return V2_SIG + b"\x20\x00\x00\x00"


def environ_of(reply: bytes) -> dict:
    assert status_of(reply) == 200, reply[:300]
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])


@pytest.fixture
def behind_balancer(start_server):
    """forkserver that takes PROXY headers from 127.0.0.1 (the test, playing the balancer)."""
    return start_server("apps:environ_dump", "--proxy-protocol-from", "127.0.0.1,10.0.0.0/8",
                        "--access-log", "-", "--access-log-format", "common", "--header-timeout", "2")


def test_v1_header_names_the_client_to_the_app_and_the_access_log(behind_balancer):
    reply = exchange(behind_balancer.port, b"PROXY TCP4 203.0.113.7 192.0.2.10 51234 8888\r\n" + GET)
    environ = environ_of(reply)
    assert environ["REMOTE_ADDR"] == "203.0.113.7"
    assert environ["REMOTE_PORT"] == "51234"
    assert behind_balancer.wait_for_log('203.0.113.7 - - [')
    assert '"GET /who HTTP/1.1" 200' in behind_balancer.log


def test_v1_tcp6_header(behind_balancer):
    reply = exchange(behind_balancer.port, b"PROXY TCP6 2001:db8::7 2001:db8::10 40000 443\r\n" + GET)
    assert environ_of(reply)["REMOTE_ADDR"] == "2001:db8::7"


def test_v2_header_names_the_client(behind_balancer):
    reply = exchange(behind_balancer.port, v2_tcp4("198.51.100.23", 40001) + GET)
    environ = environ_of(reply)
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("198.51.100.23", "40001")
    assert behind_balancer.wait_for_log("198.51.100.23 - - [")


def test_header_in_pieces_with_the_request_in_the_same_segment(behind_balancer):
    header = v2_tcp4("198.51.100.24", 40002)
    with socket.create_connection(("127.0.0.1", behind_balancer.port), timeout=10) as sock:
        sock.sendall(header[:7])
        sock.sendall(header[7:20])
        sock.sendall(header[20:] + GET)
        assert environ_of(read_until_close(sock))["REMOTE_ADDR"] == "198.51.100.24"


def test_v2_local_keeps_the_balancer_address(behind_balancer):
    # What HAProxy's health checks send with check-send-proxy.
    reply = exchange(behind_balancer.port, v2_local() + GET)
    assert environ_of(reply)["REMOTE_ADDR"] == "127.0.0.1"


def test_one_header_serves_every_request_of_a_keep_alive_connection(behind_balancer):
    keep = b"GET /who HTTP/1.1\r\nHost: test\r\n\r\n"
    with socket.create_connection(("127.0.0.1", behind_balancer.port), timeout=10) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.9 192.0.2.10 1111 8888\r\n" + keep + GET)
        replies = read_until_close(sock)
    bodies = [json.loads(body) for body in re.findall(rb"\{[^{}]*\}", replies)]
    assert [body["REMOTE_ADDR"] for body in bodies] == ["203.0.113.9", "203.0.113.9"]


@pytest.mark.parametrize("data, logged", [
    (GET, "refused: no PROXY protocol header"),
    (b"PROXY TCP4 203.0.113.7 192.0.2.10 99999 8888\r\n" + GET, "refused: PROXY v1 port"),
    (V2_SIG + b"\x21\x11\xff\xff", "refused: PROXY v2 header of 65535 bytes"),
])
def test_listed_peer_without_a_good_header_is_closed_unanswered(behind_balancer, data, logged):
    assert exchange(behind_balancer.port, data) == b""
    assert behind_balancer.wait_for_log(f"PROXY header from 127.0.0.1 {logged}")


def test_listed_peer_that_sends_nothing_is_closed_after_the_header_timeout(behind_balancer):
    with socket.create_connection(("127.0.0.1", behind_balancer.port), timeout=10) as sock:
        sock.sendall(b"PROXY TCP4 203.0")
        assert read_until_close(sock, timeout=8) == b""
    assert behind_balancer.wait_for_log("PROXY header from 127.0.0.1 not received within 2s")


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 203.0.113.7 192.0.2.10 51234 8888\r\n",
    v2_tcp4("203.0.113.7", 51234),
])
def test_without_the_option_a_proxy_header_is_a_bad_request(start_server, header):
    server = start_server("apps:environ_dump")
    reply = exchange(server.port, header + GET)
    assert status_of(reply) == 400
    assert b"203.0.113.7" not in reply


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 203.0.113.7 192.0.2.10 51234 8888\r\n",
    v2_tcp4("203.0.113.7", 51234),
])
def test_a_proxy_header_from_an_unlisted_peer_is_a_bad_request(start_server, header):
    server = start_server("apps:environ_dump", "--proxy-protocol-from", "192.0.2.1")
    assert status_of(exchange(server.port, header + GET)) == 400
    # and plain HTTP from that peer is served as usual, with its own address
    assert environ_of(exchange(server.port, GET))["REMOTE_ADDR"] == "127.0.0.1"


def test_no_zombies_after_refused_and_proxied_connections(behind_balancer):
    for data in (GET, v2_local() + GET, b"PROXY TCP4 203.0.113.7 192.0.2.10 1 2\r\n" + GET):
        exchange(behind_balancer.port, data)
    assert wait_until(lambda: not behind_balancer.zombies() and not behind_balancer.children(), 10)


def test_the_option_from_the_environment(start_server):
    server = start_server("apps:environ_dump", env={"FORKSERVER_PROXY_PROTOCOL_FROM": "127.0.0.0/8"})
    reply = exchange(server.port, b"PROXY TCP4 203.0.113.8 192.0.2.10 5000 8888\r\n" + GET)
    assert environ_of(reply)["REMOTE_ADDR"] == "203.0.113.8"
