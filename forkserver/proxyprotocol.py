"""The PROXY protocol (versions 1 and 2): the client's address as a balancer saw it.

A balancer such as HAProxy (``send-proxy`` / ``send-proxy-v2``) begins every
connection it opens to a server with a short header naming the client's
address, since the server itself only sees the balancer's. The format is
HAProxy's specification, https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt.

Bytes in, a result out, no sockets: ``parse`` is given what has been received
so far and says "need more" (None), "this is the header" (a ``ProxyHeader``),
or "this can never be a header" (``ProxyProtocolError``). Which peers may send
a header at all is ``trusted``'s question; the connection asks both.
"""

import ipaddress
from typing import NamedTuple  # annotations evaluated, not strings: see bytecode.py

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the whole line, CRLF included (section 2.1)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16  # signature, version and command, family and protocol, length
# The longest address block plus TLVs accepted. HAProxy's own TLVs (ALPN,
# authority, unique id, SSL details) fit easily; a longer one is refused
# rather than read.
V2_MAX_LENGTH = 2048

_V2_ADDRESS_SIZES = {0x1: (4, 12), 0x2: (16, 36)}  # family -> (address bytes, block size)
_ADDRESS_CLASSES = {b"TCP4": ipaddress.IPv4Address, b"TCP6": ipaddress.IPv6Address}


class ProxyProtocolError(ValueError):
    """The bytes received are not a valid PROXY protocol header."""


class ProxyHeader(NamedTuple):
    """A complete header. ``source`` is None when the header says to keep the
    connection's own addresses (a v2 LOCAL command, such as a balancer's health
    check, a v1 UNKNOWN, or an unspecified or unix family)."""

    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    length: int  # bytes the header took; what follows is the client's own data


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None while more bytes are needed."""
    if data[:1] == b"P":
        return _parse_v1(data)
    if data[:1] == b"\r":
        return _parse_v2(data)
    if not data:
        return None
    raise ProxyProtocolError("no PROXY protocol header")


def trusted(host: str, networks) -> bool:
    """Whether a peer's address is in one of ``networks`` (ipaddress networks).

    An IPv4 client of a dual-stack IPv6 listener shows as ::ffff:a.b.c.d; it is
    checked as the IPv4 address it is.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a unix socket peer has no address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _parse_v1(data: bytes) -> ProxyHeader | None:
    if not data.startswith(V1_PREFIX):
        if V1_PREFIX.startswith(data):
            return None
        raise ProxyProtocolError("no PROXY protocol header")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyProtocolError(f"PROXY v1 line longer than {V1_MAX} bytes")
        if b"\n" in data:
            raise ProxyProtocolError("PROXY v1 line does not end with CRLF")
        return None
    fields = data[len(V1_PREFIX):end].split(b" ")
    length = end + 2
    if fields[0] == b"UNKNOWN":
        return ProxyHeader(None, None, length)
    address_class = _ADDRESS_CLASSES.get(fields[0])
    if address_class is None:
        raise ProxyProtocolError(f"PROXY v1 protocol {fields[0][:8]!r} is not TCP4, TCP6 or UNKNOWN")
    if len(fields) != 5:
        raise ProxyProtocolError("PROXY v1 line does not have 5 fields")
    source = _v1_address(address_class, fields[1], fields[3])
    destination = _v1_address(address_class, fields[2], fields[4])
    return ProxyHeader(source, destination, length)


def _v1_address(address_class, host: bytes, port: bytes) -> tuple[str, int]:
    try:
        address = address_class(host.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyProtocolError(f"PROXY v1 address {host[:40]!r} is not {address_class.__name__[:4]}") from None
    # Ports are plain decimal, 0 to 65535, without leading zeros (section 2.1).
    if not (port.isdigit() and port.isascii() and len(port) <= 5 and (port == b"0" or port[:1] != b"0")
            and int(port) <= 65535):
        raise ProxyProtocolError(f"PROXY v1 port {port[:8]!r} is not 0 to 65535")
    return str(address), int(port)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if not data.startswith(V2_SIGNATURE):
        if V2_SIGNATURE.startswith(data):
            return None
        raise ProxyProtocolError("no PROXY protocol header")
    if len(data) < V2_FIXED:
        return None
    version, command = data[12] >> 4, data[12] & 0x0F
    family, protocol = data[13] >> 4, data[13] & 0x0F
    length = int.from_bytes(data[14:16], "big")
    if version != 2:
        raise ProxyProtocolError(f"PROXY version {version} is not 2")
    if command > 1:
        raise ProxyProtocolError(f"PROXY v2 command {command} is neither LOCAL nor PROXY")
    if length > V2_MAX_LENGTH:
        raise ProxyProtocolError(f"PROXY v2 header of {length} bytes is over {V2_MAX_LENGTH}")
    total = V2_FIXED + length
    if len(data) < total:
        return None
    # LOCAL: the balancer speaking for itself (health checks). An unspecified
    # or unix family carries no IP address. Either way the peer is the client.
    if command == 0 or family not in _V2_ADDRESS_SIZES:
        if family > 3 or protocol > 2:
            raise ProxyProtocolError(f"PROXY v2 family/protocol byte {data[13]:#04x} is unknown")
        return ProxyHeader(None, None, total)
    if protocol != 1:
        raise ProxyProtocolError("PROXY v2 header is not for a stream (TCP) connection")
    size, block = _V2_ADDRESS_SIZES[family]
    if length < block:
        raise ProxyProtocolError(f"PROXY v2 address block of {length} bytes is shorter than {block}")
    body = data[V2_FIXED:V2_FIXED + block]
    address_class = ipaddress.IPv4Address if size == 4 else ipaddress.IPv6Address
    source = (str(address_class(body[:size])), int.from_bytes(body[2 * size:2 * size + 2], "big"))
    destination = (str(address_class(body[size:2 * size])), int.from_bytes(body[2 * size + 2:2 * size + 4], "big"))
    return ProxyHeader(source, destination, total)
