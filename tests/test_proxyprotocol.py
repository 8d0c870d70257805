"""The PROXY protocol parser alone: bytes in, a header (or "need more", or an error) out.

The byte strings are written here from HAProxy's specification
(doc/proxy-protocol.txt), field by field.
"""

import ipaddress
import struct

import pytest

from forkserver.proxyprotocol import (
    V2_MAX_LENGTH,
    ProxyHeader,
    ProxyProtocolError,
    parse,
    trusted,
)

SIG = b"\r\n\r\n\x00\r\nQUIT\n"
HTTP = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"


def v2(command: int, family_protocol: int, block: bytes) -> bytes:
    return SIG + bytes([0x20 | command, family_protocol]) + struct.pack("!H", len(block)) + block


def v2_tcp4(src, dst, sport, dport, tlvs=b"", command=1):
    block = (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
             + struct.pack("!HH", sport, dport) + tlvs)
    return v2(command, 0x11, block)


def v2_tcp6(src, dst, sport, dport):
    block = (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
             + struct.pack("!HH", sport, dport))
    return v2(1, 0x21, block)


# --- version 1 --------------------------------------------------------------

def test_v1_tcp4_names_the_client_and_where_the_request_starts():
    line = b"PROXY TCP4 203.0.113.7 192.0.2.10 51234 8888\r\n"
    header = parse(line + HTTP)
    assert header == ProxyHeader(("203.0.113.7", 51234), ("192.0.2.10", 8888), len(line))
    assert (line + HTTP)[header.length:] == HTTP


def test_v1_tcp6():
    line = b"PROXY TCP6 2001:db8::7 2001:db8::10 40000 443\r\n"
    assert parse(line) == ProxyHeader(("2001:db8::7", 40000), ("2001:db8::10", 443), len(line))


def test_v1_unknown_keeps_the_peer_and_ignores_the_rest_of_the_line():
    line = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"
    assert parse(line + HTTP) == ProxyHeader(None, None, len(line))
    assert parse(b"PROXY UNKNOWN\r\n") == ProxyHeader(None, None, 15)


def test_v1_longest_line_is_accepted():
    line = (b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
            b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n")
    assert len(line) == 104  # the specification's worst case for TCP6
    assert parse(line).source == ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)


@pytest.mark.parametrize("cut", [1, 3, 6, 20, 44])
def test_v1_truncated_needs_more(cut):
    line = b"PROXY TCP4 203.0.113.7 192.0.2.10 51234 8888\r\n"
    assert parse(line[:cut]) is None
    assert parse(line[:cut] + line[cut:]) is not None  # the rest arrives: complete


@pytest.mark.parametrize("data, words", [
    (b"PROXY TCP4 203.0.113.7 192.0.2.10 51234\r\n", "5 fields"),
    (b"PROXY TCP5 203.0.113.7 192.0.2.10 1 2\r\n", "TCP4, TCP6 or UNKNOWN"),
    (b"PROXY TCP4 2001:db8::7 192.0.2.10 1 2\r\n", "address"),
    (b"PROXY TCP6 203.0.113.7 2001:db8::1 1 2\r\n", "address"),
    (b"PROXY TCP4 203.0.113.777 192.0.2.10 1 2\r\n", "address"),
    (b"PROXY TCP4 203.0.113.7 192.0.2.10 65536 80\r\n", "port"),
    (b"PROXY TCP4 203.0.113.7 192.0.2.10 +80 80\r\n", "port"),
    (b"PROXY TCP4 203.0.113.7 192.0.2.10 080 80\r\n", "port"),
    (b"PROXY TCP4 203.0.113.7  192.0.2.10 1 2\r\n", "fields"),
    (b"PROXY TCP4 203.0.113.7 192.0.2.10 1 2\n", "CRLF"),
    (b"PROXY " + b"X" * 120 + b"\r\n", "107"),
    (b"PROXY " + b"X" * 101, "107"),  # no CRLF yet, and none can come in time
    (b"PROXZ TCP4", "no PROXY"),
    (HTTP, "no PROXY"),
])
def test_v1_bad_lines_are_refused(data, words):
    with pytest.raises(ProxyProtocolError, match=words):
        parse(data)


# --- version 2 --------------------------------------------------------------

def test_v2_proxy_tcp4_with_the_request_after_it():
    header = v2_tcp4("203.0.113.7", "192.0.2.10", 51234, 8888)
    assert len(header) == 28
    assert parse(header + HTTP) == ProxyHeader(("203.0.113.7", 51234), ("192.0.2.10", 8888), 28)


def test_v2_proxy_tcp6():
    header = v2_tcp6("2001:db8::7", "2001:db8::10", 40000, 443)
    assert len(header) == 52
    assert parse(header) == ProxyHeader(("2001:db8::7", 40000), ("2001:db8::10", 443), 52)


def test_v2_tlvs_are_skipped():
    tlv = bytes([0x05]) + struct.pack("!H", 8) + b"uniqueid"  # PP2_TYPE_UNIQUE_ID
    header = v2_tcp4("203.0.113.7", "192.0.2.10", 1, 2, tlvs=tlv)
    assert parse(header + HTTP) == ProxyHeader(("203.0.113.7", 1), ("192.0.2.10", 2), 28 + len(tlv))


def test_v2_local_keeps_the_peer():
    # A balancer's own health check: LOCAL, family UNSPEC, no addresses.
    assert parse(v2(0, 0x00, b"") + HTTP) == ProxyHeader(None, None, 16)
    # LOCAL may still carry addresses; they are to be ignored.
    local = v2_tcp4("203.0.113.7", "192.0.2.10", 1, 2, command=0)
    assert parse(local) == ProxyHeader(None, None, 28)


def test_v2_unspec_and_unix_families_keep_the_peer():
    assert parse(v2(1, 0x00, b"")) == ProxyHeader(None, None, 16)
    assert parse(v2(1, 0x31, b"\0" * 216)) == ProxyHeader(None, None, 232)


@pytest.mark.parametrize("cut", [1, 5, 12, 15, 16, 20, 27])
def test_v2_truncated_needs_more(cut):
    header = v2_tcp4("203.0.113.7", "192.0.2.10", 51234, 8888)
    assert parse(header[:cut]) is None


@pytest.mark.parametrize("data, words", [
    (b"\r\n\r\n\x00\r\nQUIX\n" + b"\x21\x11\x00\x0c", "no PROXY"),
    (b"\r\nGET / HTTP/1.1\r\n", "no PROXY"),
    (SIG + b"\x11\x11\x00\x0c" + b"\0" * 12, "version 1 is not 2"),
    (SIG + b"\x22\x11\x00\x0c" + b"\0" * 12, "command 2"),
    (SIG + b"\x21\x12\x00\x0c" + b"\0" * 12, "stream"),
    (SIG + b"\x21\x11\x00\x08" + b"\0" * 8, "shorter than 12"),
    (SIG + b"\x21\x21\x00\x0c" + b"\0" * 12, "shorter than 36"),
    (SIG + b"\x20\x51\x00\x00", "unknown"),
])
def test_v2_bad_headers_are_refused(data, words):
    with pytest.raises(ProxyProtocolError, match=words):
        parse(data)


def test_v2_oversized_header_is_refused_before_it_is_read():
    # Only the 16 fixed bytes are needed to refuse a header that announces
    # more than the limit: nothing of the rest is waited for.
    fixed = SIG + b"\x21\x11" + struct.pack("!H", V2_MAX_LENGTH + 1)
    with pytest.raises(ProxyProtocolError, match="over"):
        parse(fixed)
    at_limit = SIG + b"\x21\x11" + struct.pack("!H", V2_MAX_LENGTH)
    assert parse(at_limit) is None  # allowed: waits for the rest


def test_nothing_yet_needs_more():
    assert parse(b"") is None


# --- who may send one ----------------------------------------------------------

NETWORKS = (ipaddress.ip_network("10.89.0.0/24"), ipaddress.ip_network("2001:db8::1"))


@pytest.mark.parametrize("host, expected", [
    ("10.89.0.2", True),
    ("10.89.1.2", False),
    ("::ffff:10.89.0.2", True),  # an IPv4 client of a dual-stack listener
    ("2001:db8::1", True),
    ("2001:db8::2", False),
    ("", False),  # a unix socket peer
    ("not-an-address", False),
])
def test_trusted(host, expected):
    assert trusted(host, NETWORKS) is expected
