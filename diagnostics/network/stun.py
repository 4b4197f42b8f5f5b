"""STUN messages (RFC 5389) with the NAT behaviour discovery attributes of RFC 5780, and a small Binding client.

The codec is sans-I/O: :func:`parse` turns bytes into a frozen :class:`Message`
and ``bytes(message)`` turns it back, byte for byte (RFC 5769's test vectors
round-trip). Attributes are rows of one table, :data:`ATTRIBUTES`; each row is
an :class:`AttributeSpec` that also builds and reads its attribute::

    request = binding_request(change_ip=True)           # CHANGE-REQUEST, RFC 5780 §7.2
    mapped = parse(data).get(XOR_MAPPED_ADDRESS)        # Address(host, port) or None

Only :func:`binding` touches a socket: one Binding transaction over UDP with
the retransmission schedule of RFC 5389 §7.2.1, cut short by an overall
timeout (a diagnostic must answer in seconds, not the RFC's 39.5 s).

Exceptions::

    StunError                   base (a PhonekitError)
    ├── StunParseError          the bytes are not a well-formed STUN message
    └── TransactionError        a Binding transaction got no usable answer
        ├── TransactionTimeout  nothing came back before the timeout
        ├── ServerUnreachable   an ICMP error said nobody listens there (or no route)
        └── TransactionFailed   an error response, or a success response we cannot use
"""

from __future__ import annotations

import binascii
import errno
import ipaddress
import logging
import os
import secrets
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, Generic, NamedTuple, TypeVar, cast

from diagnostics.errors import PhonekitError

__all__ = [
    "ATTRIBUTES",
    "CHANGE_REQUEST",
    "ERROR_CODE",
    "FINGERPRINT",
    "MAGIC_COOKIE",
    "MAPPED_ADDRESS",
    "MESSAGE_INTEGRITY",
    "OTHER_ADDRESS",
    "RESPONSE_ORIGIN",
    "SOFTWARE",
    "UNKNOWN_ATTRIBUTES",
    "USERNAME",
    "XOR_MAPPED_ADDRESS",
    "Address",
    "Attribute",
    "AttributeSpec",
    "BindingResult",
    "ChangeRequest",
    "ErrorCode",
    "Message",
    "MessageClass",
    "Method",
    "ServerUnreachable",
    "StunError",
    "StunParseError",
    "TransactionError",
    "TransactionFailed",
    "TransactionTimeout",
    "binding",
    "binding_request",
    "parse",
    "retransmit_times",
    "transaction_id",
]

log = logging.getLogger(__name__)

MAGIC_COOKIE = 0x2112A442
"""RFC 5389 §6: tells a STUN message from RFC 3489's and from other traffic on the port."""
_HEADER = struct.Struct("!HHI12s")
_ATTR_HEADER = struct.Struct("!HH")
_FINGERPRINT_XOR = 0x5354554E  # RFC 5389 §15.5: "STUN" in ASCII
_FAMILY_IPV4 = 0x01
_FAMILY_IPV6 = 0x02
_MAX_UDP = 65535

# RFC 5389 §7.2.1 retransmission: RTO starts at 500 ms and doubles, Rc = 7 requests,
# then the client waits Rm × RTO after the last one (0, 0.5, 1.5, … 31.5 s; gives up at 39.5 s).
RTO_S = 0.5
RC = 7
RM = 16


# --- errors -----------------------------------------------------------------------------------


class StunError(PhonekitError):
    """Base of the STUN errors."""


class StunParseError(StunError, ValueError):
    """The bytes are not a well-formed STUN message; the message says what is wrong and where."""


class TransactionError(StunError):
    """A Binding transaction to ``server`` got no usable answer; ``detail`` says why without naming the server."""

    def __init__(self, message: str, server: Address, detail: str) -> None:
        super().__init__(message)
        self.server = server
        self.detail = detail


class TransactionTimeout(TransactionError):
    """No answer before the overall timeout."""

    def __init__(self, server: Address, timeout_s: float, requests: int) -> None:
        detail = f"no answer within {timeout_s:g} s ({requests} requests sent)"
        super().__init__(
            f"no STUN answer from {server} within {timeout_s:g} s ({requests} requests sent)", server, detail
        )
        self.timeout_s = timeout_s
        self.requests = requests


class ServerUnreachable(TransactionError):
    """An ICMP error (port, host or network unreachable) came back for the request."""

    def __init__(self, server: Address, error: OSError) -> None:
        reason = error.strerror or str(error)
        super().__init__(f"STUN server {server} unreachable: {reason}", server, reason)
        self.errno = error.errno


class TransactionFailed(TransactionError):
    """The server answered, but with an error response or a success response we cannot use.

    ``detail`` reads on from "the server …": ``answered error 420 Unknown Attribute``.
    """

    def __init__(self, detail: str, server: Address, response: Message) -> None:
        super().__init__(f"STUN server {server} {detail}", server, detail)
        self.response = response


# --- values carried by attributes ---------------------------------------------------------------


class Address(NamedTuple):
    """A transport address; usable wherever a socket wants ``(host, port)``."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class ChangeRequest:
    """RFC 5780 §7.2: ask the server to answer from its other IP address and/or port."""

    change_ip: bool = False
    change_port: bool = False


@dataclass(frozen=True)
class ErrorCode:
    """RFC 5389 §15.6: a three-digit code 300–699 and a reason phrase."""

    code: int
    reason: str = ""

    def __post_init__(self) -> None:
        if not 300 <= self.code <= 699:
            raise ValueError(f"STUN error code must be 300..699 (got {self.code})")

    def __str__(self) -> str:
        return f"{self.code} {self.reason}".strip()


# --- the attribute table ------------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class AttributeSpec(Generic[T]):
    """One row of :data:`ATTRIBUTES`: a wire type, its name, and how its value goes to and from bytes.

    ``pack``/``unpack`` get the message's transaction id as well, which the XOR
    address needs (RFC 5389 §15.2). Calling a spec makes an attribute:
    ``SOFTWARE("phonekit")``.
    """

    type: int
    name: str
    pack: Callable[[T, bytes], bytes] = field(repr=False)
    unpack: Callable[[bytes, bytes], T] = field(repr=False)

    def __call__(self, value: T) -> Attribute:
        return Attribute(self.type, value)


@dataclass(frozen=True)
class Attribute:
    """One attribute of a message: its wire type and decoded value (raw bytes for types not in the table)."""

    type: int
    value: Any
    padding: bytes = field(default=b"", compare=False, repr=False)
    """The padding as received. RFC 5389 §15 lets a sender fill it with anything (RFC 5769 §2.2 uses
    spaces) and a receiver ignore it; keeping it makes ``bytes(parse(x)) == x``. Empty sends zeros."""

    @property
    def name(self) -> str:
        spec = _BY_TYPE.get(self.type)
        return spec.name if spec else f"0x{self.type:04X}"

    @property
    def comprehension_required(self) -> bool:
        """RFC 5389 §15: types 0x0000–0x7FFF must be understood by the receiver."""
        return self.type < 0x8000


def _pack_address(value: Address, tid: bytes) -> bytes:
    ip = ipaddress.ip_address(value.host)
    family = _FAMILY_IPV4 if ip.version == 4 else _FAMILY_IPV6
    return struct.pack("!BBH", 0, family, value.port) + ip.packed


def _unpack_address(data: bytes, tid: bytes) -> Address:
    """RFC 5389 §15.1: 8 bits reserved, 8 bits family, 16 bits port, 32 or 128 bits address."""
    if len(data) < 4:
        raise ValueError(f"address needs at least 4 bytes (got {len(data)})")
    family, port = data[1], int.from_bytes(data[2:4], "big")
    expected = {_FAMILY_IPV4: 8, _FAMILY_IPV6: 20}.get(family)
    if expected is None:
        raise ValueError(f"unknown address family {family}")
    if len(data) != expected:
        raise ValueError(f"address of family {family} must be {expected} bytes (got {len(data)})")
    return Address(str(ipaddress.ip_address(data[4:])), port)


def _xor(data: bytes, tid: bytes) -> bytes:
    """RFC 5389 §15.2: port XOR the cookie's top 16 bits; address XOR cookie (IPv4) or cookie ‖ tid (IPv6)."""
    key = struct.pack("!I", MAGIC_COOKIE) + tid
    port = bytes(b ^ k for b, k in zip(data[2:4], key[:2], strict=False))
    address = bytes(b ^ k for b, k in zip(data[4:], key, strict=False))
    return data[:2] + port + address + data[4 + len(key) :]


def _pack_xor_address(value: Address, tid: bytes) -> bytes:
    return _xor(_pack_address(value, tid), tid)


def _unpack_xor_address(data: bytes, tid: bytes) -> Address:
    return _unpack_address(_xor(data, tid), tid)


def _pack_change_request(value: ChangeRequest, tid: bytes) -> bytes:
    return struct.pack("!I", (0x4 if value.change_ip else 0) | (0x2 if value.change_port else 0))


def _unpack_change_request(data: bytes, tid: bytes) -> ChangeRequest:
    """RFC 5780 §7.2: 32 bits, A (0x4) change IP, B (0x2) change port."""
    flags = _unpack_u32(data, tid)
    return ChangeRequest(change_ip=bool(flags & 0x4), change_port=bool(flags & 0x2))


def _pack_error_code(value: ErrorCode, tid: bytes) -> bytes:
    return struct.pack("!HBB", 0, value.code // 100, value.code % 100) + value.reason.encode()


def _unpack_error_code(data: bytes, tid: bytes) -> ErrorCode:
    """RFC 5389 §15.6: 21 reserved bits, class (hundreds, 3 bits), number (0–99), UTF-8 reason."""
    if len(data) < 4:
        raise ValueError(f"needs at least 4 bytes (got {len(data)})")
    return ErrorCode((data[2] & 0x07) * 100 + data[3], data[4:].decode())


def _pack_u16_list(value: tuple[int, ...], tid: bytes) -> bytes:
    return b"".join(struct.pack("!H", v) for v in value)


def _unpack_u16_list(data: bytes, tid: bytes) -> tuple[int, ...]:
    if len(data) % 2:
        raise ValueError(f"must be a list of 16-bit types (got {len(data)} bytes)")
    return tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


def _pack_u32(value: int, tid: bytes) -> bytes:
    return struct.pack("!I", value)


def _unpack_u32(data: bytes, tid: bytes) -> int:
    if len(data) != 4:
        raise ValueError(f"must be 4 bytes (got {len(data)})")
    return int.from_bytes(data, "big")


def _pack_text(value: str, tid: bytes) -> bytes:
    return value.encode()


def _unpack_text(data: bytes, tid: bytes) -> str:
    return data.decode()


def _pack_bytes(value: bytes, tid: bytes) -> bytes:
    return value


def _unpack_bytes(data: bytes, tid: bytes) -> bytes:
    return data


MAPPED_ADDRESS = AttributeSpec(0x0001, "MAPPED-ADDRESS", _pack_address, _unpack_address)
"""RFC 5389 §15.1: the reflexive address, as RFC 3489 servers send it (not XOR-ed)."""
CHANGE_REQUEST = AttributeSpec(0x0003, "CHANGE-REQUEST", _pack_change_request, _unpack_change_request)
"""RFC 5780 §7.2."""
USERNAME = AttributeSpec(0x0006, "USERNAME", _pack_text, _unpack_text)
"""RFC 5389 §15.3 (carried through; Binding for NAT discovery needs no credentials)."""
MESSAGE_INTEGRITY = AttributeSpec(0x0008, "MESSAGE-INTEGRITY", _pack_bytes, _unpack_bytes)
"""RFC 5389 §15.4: HMAC-SHA1, carried through unverified (no credentials here)."""
ERROR_CODE = AttributeSpec(0x0009, "ERROR-CODE", _pack_error_code, _unpack_error_code)
"""RFC 5389 §15.6."""
UNKNOWN_ATTRIBUTES = AttributeSpec(0x000A, "UNKNOWN-ATTRIBUTES", _pack_u16_list, _unpack_u16_list)
"""RFC 5389 §15.9: with error 420, the comprehension-required types the server did not understand."""
XOR_MAPPED_ADDRESS = AttributeSpec(0x0020, "XOR-MAPPED-ADDRESS", _pack_xor_address, _unpack_xor_address)
"""RFC 5389 §15.2: the reflexive address, XOR-ed so that ALGs do not rewrite it."""
SOFTWARE = AttributeSpec(0x8022, "SOFTWARE", _pack_text, _unpack_text)
"""RFC 5389 §15.10."""
FINGERPRINT = AttributeSpec(0x8028, "FINGERPRINT", _pack_u32, _unpack_u32)
"""RFC 5389 §15.5: CRC-32 of the message before it, XOR 0x5354554E; always the last attribute."""
RESPONSE_ORIGIN = AttributeSpec(0x802B, "RESPONSE-ORIGIN", _pack_address, _unpack_address)
"""RFC 5780 §7.3: the address the response was sent from."""
OTHER_ADDRESS = AttributeSpec(0x802C, "OTHER-ADDRESS", _pack_address, _unpack_address)
"""RFC 5780 §7.4: the server's alternate address (other IP and other port) for behaviour tests."""

ATTRIBUTES: tuple[AttributeSpec[Any], ...] = (
    MAPPED_ADDRESS,
    CHANGE_REQUEST,
    USERNAME,
    MESSAGE_INTEGRITY,
    ERROR_CODE,
    UNKNOWN_ATTRIBUTES,
    XOR_MAPPED_ADDRESS,
    SOFTWARE,
    FINGERPRINT,
    RESPONSE_ORIGIN,
    OTHER_ADDRESS,
)
_BY_TYPE: dict[int, AttributeSpec[Any]] = {spec.type: spec for spec in ATTRIBUTES}


# --- messages -----------------------------------------------------------------------------------


class Method(IntEnum):
    """RFC 5389 §18.1 (only Binding is used here)."""

    BINDING = 0x001


class MessageClass(IntEnum):
    """RFC 5389 §6: the two class bits C1 C0."""

    REQUEST = 0b00
    INDICATION = 0b01
    SUCCESS = 0b10
    ERROR = 0b11


def _message_type(method: int, cls: int) -> int:
    """RFC 5389 §6 Figure 3: the class bits sit between method bits M3|M4 and M6|M7."""
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((cls & 0b01) << 4)
        | ((cls & 0b10) << 7)
    )


def _split_type(message_type: int) -> tuple[int, int]:
    method = (message_type & 0x000F) | ((message_type & 0x00E0) >> 1) | ((message_type & 0x3E00) >> 2)
    cls = ((message_type >> 4) & 0b01) | ((message_type >> 7) & 0b10)
    return method, cls


def transaction_id() -> bytes:
    """RFC 5389 §6: 96 bits, uniformly and cryptographically random."""
    return secrets.token_bytes(12)


@dataclass(frozen=True)
class Message:
    """One STUN message; ``bytes(message)`` is its wire form."""

    method: Method
    message_class: MessageClass
    transaction_id: bytes = field(default_factory=transaction_id)
    attributes: tuple[Attribute, ...] = ()

    def __post_init__(self) -> None:
        if len(self.transaction_id) != 12:
            raise ValueError(f"a STUN transaction id is 12 bytes (got {len(self.transaction_id)})")

    def get(self, spec: AttributeSpec[T]) -> T | None:
        """The value of the first attribute of that type, or None (RFC 5389 §15: later duplicates are ignored)."""
        for attribute in self.attributes:
            if attribute.type == spec.type:
                return cast(T, attribute.value)
        return None

    def unknown_required(self) -> tuple[int, ...]:
        """Comprehension-required types not in :data:`ATTRIBUTES` (RFC 5389 §7.3.3 discards such a response)."""
        return tuple(a.type for a in self.attributes if a.comprehension_required and a.type not in _BY_TYPE)

    def __bytes__(self) -> bytes:
        body = b"".join(_encode_attribute(a, self.transaction_id) for a in self.attributes)
        header = _HEADER.pack(
            _message_type(self.method, self.message_class), len(body), MAGIC_COOKIE, self.transaction_id
        )
        return header + body

    def with_fingerprint(self) -> Message:
        """This message with a FINGERPRINT computed over it as the last attribute (RFC 5389 §15.5)."""
        rest = tuple(a for a in self.attributes if a.type != FINGERPRINT.type)
        data = bytes(replace(self, attributes=rest))
        return replace(self, attributes=(*rest, FINGERPRINT(_fingerprint(data))))


def _fingerprint(data: bytes) -> int:
    """CRC-32 over ``data`` with its length field already counting the 8-byte FINGERPRINT that follows."""
    length = int.from_bytes(data[2:4], "big") + 8
    return binascii.crc32(data[:2] + length.to_bytes(2, "big") + data[4:]) ^ _FINGERPRINT_XOR


def _encode_attribute(attribute: Attribute, tid: bytes) -> bytes:
    spec = _BY_TYPE.get(attribute.type)
    value = spec.pack(attribute.value, tid) if spec else bytes(attribute.value)
    if len(value) > 0xFFFF:
        raise ValueError(f"STUN {attribute.name} value is too long ({len(value)} bytes)")
    pad = -len(value) % 4
    padding = attribute.padding if len(attribute.padding) == pad else bytes(pad)
    return _ATTR_HEADER.pack(attribute.type, len(value)) + value + padding


def parse(data: bytes) -> Message:
    """Decode one STUN message (RFC 5389 §6, §15); FINGERPRINT, when present, must be last and match.

    Raises :class:`StunParseError` naming what is wrong, e.g.
    ``STUN XOR-MAPPED-ADDRESS at byte 32: unknown address family 3 (got 0003a147e112a643)``.
    """
    if len(data) < _HEADER.size:
        raise StunParseError(f"STUN message shorter than its 20-byte header (got {len(data)} bytes)")
    message_type, length, cookie, tid = _HEADER.unpack_from(data)
    if message_type & 0xC000:
        raise StunParseError(f"not STUN: the first two bits must be zero (got type 0x{message_type:04x})")
    if cookie != MAGIC_COOKIE:
        raise StunParseError(f"not STUN: wrong magic cookie (got 0x{cookie:08x})")
    if length % 4 or length != len(data) - _HEADER.size:
        raise StunParseError(f"STUN length field says {length} bytes, {len(data) - _HEADER.size} follow the header")
    method, cls = _split_type(message_type)
    try:
        known_method = Method(method)
    except ValueError:
        raise StunParseError(f"unknown STUN method 0x{method:03x}") from None
    attributes: list[Attribute] = []
    pos = _HEADER.size
    while pos < len(data):
        if pos + _ATTR_HEADER.size > len(data):
            raise StunParseError(f"STUN attribute header at byte {pos} runs past the end")
        attr_type, attr_len = _ATTR_HEADER.unpack_from(data, pos)
        start, end = pos + _ATTR_HEADER.size, pos + _ATTR_HEADER.size + attr_len
        padded_end = end + (-attr_len % 4)
        if padded_end > len(data):
            raise StunParseError(f"STUN attribute 0x{attr_type:04x} at byte {pos} runs past the end")
        value = data[start:end]
        spec = _BY_TYPE.get(attr_type)
        decoded: Any = value
        if spec is not None:
            try:
                decoded = spec.unpack(value, tid)
            except (ValueError, UnicodeDecodeError) as exc:
                raise StunParseError(f"STUN {spec.name} at byte {pos}: {exc} (got {value.hex()})") from exc
        if attributes and attributes[-1].type == FINGERPRINT.type:
            raise StunParseError(f"STUN attribute 0x{attr_type:04x} at byte {pos} follows FINGERPRINT")
        if attr_type == FINGERPRINT.type:
            expected = _fingerprint(data[:2] + (pos - _HEADER.size).to_bytes(2, "big") + data[4:pos])
            if decoded != expected:
                raise StunParseError(f"STUN FINGERPRINT mismatch (got 0x{decoded:08x}, computed 0x{expected:08x})")
        attributes.append(Attribute(attr_type, decoded, data[end:padded_end]))
        pos = padded_end
    return Message(known_method, MessageClass(cls), tid, tuple(attributes))


def binding_request(change_ip: bool = False, change_port: bool = False, tid: bytes | None = None) -> Message:
    """A Binding request (RFC 5389 §10.1), with CHANGE-REQUEST when asked (RFC 5780 §4.4), and a FINGERPRINT."""
    attributes: tuple[Attribute, ...] = ()
    if change_ip or change_port:
        attributes = (CHANGE_REQUEST(ChangeRequest(change_ip, change_port)),)
    return Message(Method.BINDING, MessageClass.REQUEST, tid or transaction_id(), attributes).with_fingerprint()


# --- the blocking client ------------------------------------------------------------------------


def retransmit_times(timeout_s: float, rto_s: float = RTO_S, requests: int = RC) -> tuple[float, ...]:
    """When to send, in seconds after the first request: RFC 5389 §7.2.1's doubling RTO, cut at ``timeout_s``.

    ``retransmit_times(3.0)`` is ``(0.0, 0.5, 1.5)``; the RFC's full schedule runs to 31.5 s.
    """
    times: list[float] = []
    at, rto = 0.0, rto_s
    for _ in range(requests):
        if at >= timeout_s:
            break
        times.append(at)
        at, rto = at + rto, rto * 2
    return tuple(times)


def _rfc_timeout_s(rto_s: float) -> float:
    """RFC 5389 §7.2.1: Rc requests, then Rm × RTO of waiting (39.5 s for RTO 500 ms)."""
    return rto_s * ((1 << (RC - 1)) - 1 + RM)  # RTO·(1 + 2 + … + 2^(Rc−2)) + Rm·RTO


@dataclass(frozen=True)
class BindingResult:
    """The answer to one Binding request."""

    server: Address
    """Where the request went."""
    source: Address
    """Where the response came from (differs from ``server`` when CHANGE-REQUEST was honoured)."""
    mapped: Address
    """The reflexive address: XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS from an RFC 3489 server."""
    response_origin: Address | None
    other_address: Address | None
    software: str | None
    rtt_ms: float
    """From the first request to the answer (so it includes the wait when a request was lost)."""
    requests: int
    """Requests sent; more than 1 means retransmissions."""


# errnos an ICMP error turns into on the socket (Windows reports port-unreachable as a reset)
_ICMP_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET})
_IP_RECVERR = 11  # Linux <linux/in.h>; Python 3.11 does not export it
_IPV6_RECVERR = 25  # Linux <linux/in6.h>


def _report_icmp_errors(sock: socket.socket) -> bool:
    """Linux: ask for ICMP errors on this unconnected socket (ip(7) IP_RECVERR), so that an unreachable
    server ends the transaction at once instead of at the timeout. True when the error queue is on."""
    if not sys.platform.startswith("linux"):
        return False
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
    return True


def _icmp_error_for(sock: socket.socket, server: Address, errqueue: bool) -> OSError | None:
    """Drain the socket's error queue; the error whose original destination was ``server``, if any.

    ip(7): with IP_RECVERR, ``recvmsg(MSG_ERRQUEUE)`` returns the failed datagram's destination as
    its address and ``struct sock_extended_err`` (errno first) as control data.
    """
    if not errqueue:
        return OSError(errno.ECONNREFUSED, "ICMP error (destination not reported on this OS)")
    found: OSError | None = None
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        while True:
            try:
                _, ancillary, _, destination = sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            for _, _, cmsg in ancillary:
                code = struct.unpack_from("=I", cmsg)[0] if len(cmsg) >= 4 else errno.EIO
                if Address(destination[0], destination[1]) == server:
                    found = OSError(code, os.strerror(code))
    finally:
        sock.settimeout(timeout)
    return found


def _address(server: Iterable[Any]) -> Address:
    host, port, *_ = server
    try:
        return Address(str(ipaddress.ip_address(host)), int(port))
    except ValueError:
        raise ValueError(f"a STUN server must be given as an IP address and port (got {host!r})") from None


def binding(
    sock: socket.socket,
    server: tuple[str, int] | Address,
    change_ip: bool = False,
    change_port: bool = False,
    timeout_s: float = 3.0,
    rto_s: float = RTO_S,
) -> BindingResult:
    """One Binding transaction from ``sock`` (an unconnected UDP socket) to ``server`` (IP address, port).

    Retransmits per RFC 5389 §7.2.1 until an answer with this transaction id
    arrives from anywhere (a CHANGE-REQUEST answer comes from another address)
    or ``timeout_s`` runs out. Stray datagrams, late answers to earlier
    transactions and non-STUN packets are ignored. On Linux the socket gets
    IP_RECVERR, so an ICMP error for ``server`` ends the wait at once.
    """
    destination = _address(server)
    timeout_s = min(timeout_s, _rfc_timeout_s(rto_s))
    request = binding_request(change_ip, change_port)
    wire = bytes(request)
    schedule = retransmit_times(timeout_s, rto_s)
    errqueue = _report_icmp_errors(sock)
    previous_timeout = sock.gettimeout()
    start = time.monotonic()
    deadline = start + timeout_s
    sent = 0
    try:
        while True:
            now = time.monotonic()
            if sent < len(schedule) and now >= start + schedule[sent]:
                log.debug("STUN Binding %s to %s (request %d)", request.transaction_id.hex(), destination, sent + 1)
                try:
                    sock.sendto(wire, destination)
                except OSError as exc:
                    if exc.errno not in _ICMP_ERRNOS:
                        raise
                    raise ServerUnreachable(destination, exc) from exc
                sent += 1
                continue
            if now >= deadline:
                raise TransactionTimeout(destination, timeout_s, sent)
            wake = start + schedule[sent] if sent < len(schedule) else deadline
            sock.settimeout(max(min(wake, deadline) - now, 0.001))
            try:
                packet, source = sock.recvfrom(_MAX_UDP)
            except TimeoutError:
                continue
            except OSError as exc:
                if exc.errno not in _ICMP_ERRNOS:
                    raise
                error = _icmp_error_for(sock, destination, errqueue)
                if error is not None:
                    raise ServerUnreachable(destination, error) from exc
                continue  # an ICMP error about an earlier test's destination: not ours
            answer = _match(packet, request.transaction_id)
            if answer is not None:
                return _result(answer, destination, _address(source), (time.monotonic() - start) * 1000.0, sent)
    finally:
        sock.settimeout(previous_timeout)


def _match(packet: bytes, tid: bytes) -> Message | None:
    try:
        message = parse(packet)
    except StunParseError as exc:
        log.debug("ignoring a datagram that is not a STUN message: %s", exc)
        return None
    if message.transaction_id != tid or message.message_class not in (MessageClass.SUCCESS, MessageClass.ERROR):
        log.debug("ignoring a STUN message of another transaction (%s)", message.transaction_id.hex())
        return None
    return message


def _result(answer: Message, server: Address, source: Address, rtt_ms: float, requests: int) -> BindingResult:
    if answer.message_class is MessageClass.ERROR:
        code = answer.get(ERROR_CODE)
        unknown = answer.get(UNKNOWN_ATTRIBUTES)
        detail = f" (does not understand {', '.join(f'0x{t:04x}' for t in unknown)})" if unknown else ""
        raise TransactionFailed(f"answered error {code or '(no ERROR-CODE)'}{detail}", server, answer)
    unknown_required = answer.unknown_required()
    if unknown_required:  # RFC 5389 §7.3.3
        types = ", ".join(f"0x{t:04x}" for t in unknown_required)
        raise TransactionFailed(f"answered with attributes it requires us to understand: {types}", server, answer)
    mapped = answer.get(XOR_MAPPED_ADDRESS) or answer.get(MAPPED_ADDRESS)
    if mapped is None:
        raise TransactionFailed("answered without a mapped address", server, answer)
    return BindingResult(
        server=server,
        source=source,
        mapped=mapped,
        response_origin=answer.get(RESPONSE_ORIGIN),
        other_address=answer.get(OTHER_ADDRESS),
        software=answer.get(SOFTWARE),
        rtt_ms=rtt_ms,
        requests=requests,
    )
