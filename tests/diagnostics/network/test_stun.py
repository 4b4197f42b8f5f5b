"""STUN codec against RFC 5769's test vectors and itself; the Binding client against coturn and real sockets."""

from __future__ import annotations

import inspect
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from diagnostics.network import stun
from diagnostics.network.stun import (
    CHANGE_REQUEST,
    ERROR_CODE,
    FINGERPRINT,
    MESSAGE_INTEGRITY,
    OTHER_ADDRESS,
    RESPONSE_ORIGIN,
    SOFTWARE,
    UNKNOWN_ATTRIBUTES,
    USERNAME,
    XOR_MAPPED_ADDRESS,
    Address,
    Attribute,
    ChangeRequest,
    ErrorCode,
    Message,
    MessageClass,
    Method,
    ServerUnreachable,
    StunParseError,
    TransactionFailed,
    TransactionTimeout,
    binding,
    binding_request,
    parse,
    retransmit_times,
)
from tests.testbed.coturn import Coturn


def vector(text: str) -> bytes:
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


# RFC 5769 §2.1 Sample Request (SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY, FINGERPRINT)
REQUEST = vector("""
    0001 0058 2112 a442 b7e7 a701 bc34 d686 fa87 dfae
    8022 0010 5354 554e 2074 6573 7420 636c 6965 6e74   # SOFTWARE "STUN test client"
    0024 0004 6e00 01ff                                 # PRIORITY (not in our table: kept raw)
    8029 0008 932f f9b1 5126 3b36                       # ICE-CONTROLLED (not in our table)
    0006 0009 6576 746a 3a68 3676 5920 2020             # USERNAME "evtj:h6vY", padded with spaces
    0008 0014 9aea a70c bfd8 cb56 781e f2b5 b2d3 f249 c1b5 71a2
    8028 0004 e57a 3bcf
""")
# RFC 5769 §2.2 Sample IPv4 Response
RESPONSE_V4 = vector("""
    0101 003c 2112 a442 b7e7 a701 bc34 d686 fa87 dfae
    8022 000b 7465 7374 2076 6563 746f 7220             # SOFTWARE "test vector", padded with a space
    0020 0008 0001 a147 e112 a643                       # XOR-MAPPED-ADDRESS 192.0.2.1:32853
    0008 0014 2b91 f599 fd9e 90c3 8c74 89f9 2af9 ba53 f06b e7d7
    8028 0004 c07d 4c96
""")
# RFC 5769 §2.3 Sample IPv6 Response
RESPONSE_V6 = vector("""
    0101 0048 2112 a442 b7e7 a701 bc34 d686 fa87 dfae
    8022 000b 7465 7374 2076 6563 746f 7220
    0020 0014 0002 a147 0113 a9fa a5d3 f179 bc25 f4b5 bed2 b9d9
    0008 0014 a382 954e 4be6 7bf1 1784 c97c 8292 c275 bfe3 ed41
    8028 0004 c8fb 0b4c
""")
TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")


def test_rfc5769_ipv4_response() -> None:
    message = parse(RESPONSE_V4)
    assert (message.method, message.message_class, message.transaction_id) == (
        Method.BINDING,
        MessageClass.SUCCESS,
        TID,
    )
    assert message.get(XOR_MAPPED_ADDRESS) == Address("192.0.2.1", 32853)
    assert message.get(SOFTWARE) == "test vector"
    assert message.get(FINGERPRINT) == 0xC07D4C96
    assert message.get(MESSAGE_INTEGRITY) == bytes.fromhex("2b91f599fd9e90c38c7489f92af9ba53f06be7d7")
    assert bytes(message) == RESPONSE_V4


def test_rfc5769_ipv6_response() -> None:
    message = parse(RESPONSE_V6)
    assert message.get(XOR_MAPPED_ADDRESS) == Address("2001:db8:1234:5678:11:2233:4455:6677", 32853)
    assert str(message.get(XOR_MAPPED_ADDRESS)) == "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
    assert bytes(message) == RESPONSE_V6


def test_rfc5769_request_keeps_unknown_attributes_and_padding() -> None:
    message = parse(REQUEST)
    assert message.message_class is MessageClass.REQUEST
    assert message.get(SOFTWARE) == "STUN test client"
    assert message.get(USERNAME) == "evtj:h6vY"
    assert [a.name for a in message.attributes] == [
        "SOFTWARE", "0x0024", "0x8029", "USERNAME", "MESSAGE-INTEGRITY", "FINGERPRINT",
    ]  # fmt: skip
    # PRIORITY (0x0024) is comprehension-required and not ours: a response carrying it would be refused.
    assert message.unknown_required() == (0x0024,)
    assert bytes(message) == REQUEST


def test_fingerprint_is_recomputed_like_rfc5769() -> None:
    message = parse(RESPONSE_V4)
    without = Message(message.method, message.message_class, TID, message.attributes[:-1])
    assert without.with_fingerprint().get(FINGERPRINT) == 0xC07D4C96


@pytest.mark.parametrize(
    "attributes",
    [
        (),
        (CHANGE_REQUEST(ChangeRequest(change_ip=True, change_port=True)),),
        (CHANGE_REQUEST(ChangeRequest(change_port=True)),),
        (XOR_MAPPED_ADDRESS(Address("203.0.113.9", 40000)), RESPONSE_ORIGIN(Address("198.51.100.1", 3478)),
         OTHER_ADDRESS(Address("198.51.100.2", 3479)), SOFTWARE("Coturn-4.6.1 'Gorst'")),
        (XOR_MAPPED_ADDRESS(Address("2001:db8::1", 1)), OTHER_ADDRESS(Address("2001:db8::2", 65535))),
        (ERROR_CODE(ErrorCode(420, "Unknown Attribute")), UNKNOWN_ATTRIBUTES((0x0003, 0x0024, 0x0025))),
        (Attribute(0x7F00, b"\x01\x02\x03"), Attribute(0xC001, b"")),
    ],
)  # fmt: skip
def test_round_trip(attributes: tuple[Attribute, ...]) -> None:
    message = Message(Method.BINDING, MessageClass.SUCCESS, TID, attributes).with_fingerprint()
    data = bytes(message)
    assert parse(data) == message
    assert bytes(parse(data)) == data


@pytest.mark.parametrize(
    ("cls", "wire_type"),
    [(MessageClass.REQUEST, 0x0001), (MessageClass.INDICATION, 0x0011), (MessageClass.SUCCESS, 0x0101),
     (MessageClass.ERROR, 0x0111)],
)  # fmt: skip
def test_message_type_bits(cls: MessageClass, wire_type: int) -> None:
    """RFC 5389 §6: the class bits are interleaved with the method bits."""
    assert bytes(Message(Method.BINDING, cls, TID))[:2] == wire_type.to_bytes(2, "big")


def test_binding_request_with_change_request() -> None:
    request = binding_request(change_ip=True, change_port=False, tid=TID)
    assert request.get(CHANGE_REQUEST) == ChangeRequest(change_ip=True, change_port=False)
    # RFC 5780 §7.2: flag A (0x4) is "change IP"; a FINGERPRINT follows.
    assert bytes(request)[20:28] == bytes.fromhex("0003000400000004")
    assert request.attributes[-1].type == FINGERPRINT.type
    assert binding_request(tid=TID).get(CHANGE_REQUEST) is None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\x00\x01\x00", "STUN message shorter than its 20-byte header (got 3 bytes)"),
        (b"\x80\x01\x00\x00\x21\x12\xa4\x42" + TID, "not STUN: the first two bits must be zero (got type 0x8001)"),
        (b"\x00\x01\x00\x00\x00\x00\x00\x00" + TID, "not STUN: wrong magic cookie (got 0x00000000)"),
        (b"\x00\x01\x00\x08\x21\x12\xa4\x42" + TID, "STUN length field says 8 bytes, 0 follow the header"),
        (b"\x00\x03\x00\x00\x21\x12\xa4\x42" + TID, "unknown STUN method 0x003"),
        (b"\x01\x01\x00\x0c\x21\x12\xa4\x42" + TID + bytes.fromhex("0020000800030001e112a643"),
         "STUN XOR-MAPPED-ADDRESS at byte 20: unknown address family 3 (got 00030001e112a643)"),
        (b"\x01\x01\x00\x08\x21\x12\xa4\x42" + TID + bytes.fromhex("00200008000100"),
         "STUN length field says 8 bytes, 7 follow the header"),
        (b"\x01\x01\x00\x04\x21\x12\xa4\x42" + TID + bytes.fromhex("00200008"),
         "STUN attribute 0x0020 at byte 20 runs past the end"),
    ],
)  # fmt: skip
def test_parse_errors_say_what_and_where(data: bytes, error: str) -> None:
    with pytest.raises(StunParseError) as excinfo:
        parse(data)
    assert str(excinfo.value) == error


def test_fingerprint_mismatch_is_refused() -> None:
    broken = RESPONSE_V4[:-1] + b"\x97"
    with pytest.raises(StunParseError, match=r"STUN FINGERPRINT mismatch \(got 0xc07d4c97, computed 0xc07d4c96\)"):
        parse(broken)


def test_retransmit_schedule_follows_rfc5389_and_stops_at_the_timeout() -> None:
    assert retransmit_times(100.0) == (0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5)  # RFC 5389 §7.2.1 example
    assert retransmit_times(3.0) == (0.0, 0.5, 1.5)
    assert retransmit_times(1.0, rto_s=0.25) == (0.0, 0.25, 0.75)


def test_public_api_is_all() -> None:
    defined = {
        name for name, obj in vars(stun).items()
        if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == stun.__name__
    }  # fmt: skip
    assert defined <= set(stun.__all__) <= set(vars(stun))


# --- the client on real sockets -----------------------------------------------------------------


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


@pytest.mark.timeout(10)
def test_binding_against_coturn_reports_our_own_address(coturn: Coturn, udp: socket.socket) -> None:
    result = binding(udp, (coturn.host, coturn.port), timeout_s=2.0)
    assert result.mapped == udp.getsockname()
    assert result.server == result.source == Address(coturn.host, coturn.port)
    assert result.other_address is None  # the session's coturn has one address: no RFC 5780
    assert result.software is not None and result.software.startswith("Coturn")
    assert result.requests == 1 and 0 < result.rtt_ms < 1000


@pytest.mark.timeout(10)
def test_silent_server_times_out_after_retransmissions(udp: socket.socket) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        address = Address(*silent.getsockname())
        start = time.monotonic()
        with pytest.raises(TransactionTimeout) as excinfo:
            binding(udp, silent.getsockname(), timeout_s=0.7, rto_s=0.1)
        assert 0.7 <= time.monotonic() - start < 1.5
        received = 0
        silent.setblocking(False)
        while True:
            try:
                silent.recv(2048)
            except BlockingIOError:
                break
            received += 1
    assert received == excinfo.value.requests == 3  # at 0, 0.1 and 0.3 s
    assert str(excinfo.value) == f"no STUN answer from {address} within 0.7 s (3 requests sent)"


@pytest.mark.timeout(10)
def test_closed_port_fails_at_once_from_the_icmp_error(udp: socket.socket) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        address = closed.getsockname()
    start = time.monotonic()
    with pytest.raises(ServerUnreachable, match="unreachable: Connection refused"):
        binding(udp, address, timeout_s=3.0)
    assert time.monotonic() - start < 0.4


@pytest.mark.timeout(10)
def test_stray_datagrams_and_other_transactions_are_ignored(udp: socket.socket) -> None:
    good = Message(Method.BINDING, MessageClass.SUCCESS, attributes=(XOR_MAPPED_ADDRESS(Address("192.0.2.7", 7)),))
    other = Message(Method.BINDING, MessageClass.SUCCESS, attributes=(XOR_MAPPED_ADDRESS(Address("192.0.2.8", 8)),))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        # The responder copies the request's transaction id into "good" (XOR-MAPPED-ADDRESS depends on it).
        thread = threading.Thread(target=_answer_with, args=(server, [b"not stun at all", bytes(other)], good))
        thread.start()
        result = binding(udp, server.getsockname(), timeout_s=2.0)
        thread.join()
    assert result.mapped == Address("192.0.2.7", 7)


def _answer_with(server: socket.socket, noise: list[bytes], good: Message) -> None:
    request, client = server.recvfrom(2048)
    for datagram in noise:
        server.sendto(datagram, client)
    server.sendto(bytes(Message(good.method, good.message_class, request[8:20], good.attributes)), client)


@pytest.mark.timeout(10)
def test_error_response_fails_with_its_code(udp: socket.socket) -> None:
    refusal = (ERROR_CODE(ErrorCode(420, "Unknown Attribute")), UNKNOWN_ATTRIBUTES((0x0003,)))
    error = Message(Method.BINDING, MessageClass.ERROR, attributes=refusal)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        address = Address(*server.getsockname())
        thread = threading.Thread(target=_answer_with, args=(server, [], error))
        thread.start()
        with pytest.raises(TransactionFailed) as excinfo:
            binding(udp, server.getsockname(), change_port=True, timeout_s=2.0)
        thread.join()
    assert str(excinfo.value) == (
        f"STUN server {address} answered error 420 Unknown Attribute (does not understand 0x0003)"
    )


def test_binding_wants_an_ip_address(udp: socket.socket) -> None:
    with pytest.raises(ValueError, match="a STUN server must be given as an IP address and port \\(got 'localhost'\\)"):
        binding(udp, ("localhost", 3478))
