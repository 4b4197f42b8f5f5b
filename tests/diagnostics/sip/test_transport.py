"""The SIP client transport: RFC 3261 timers (pure), and real sockets on loopback for every failure kind."""

from __future__ import annotations

import errno
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from diagnostics.profile import Transport
from diagnostics.sip.message import Address, NameAddr, Response, build_options, parse
from diagnostics.sip.transport import (
    ClientTransaction,
    MalformedResponse,
    NoAnswer,
    SipConnection,
    TlsFailure,
    Unreachable,
    Unresolved,
    _decode_certificate,
    hostname_matches,
)
from tests.testbed.kamailio import Kamailio

pytestmark = pytest.mark.timeout(20)


def options(local: Address, transport: str = "udp", uri: str = "sip:127.0.0.1") -> bytes:
    return bytes(build_options(uri, transport=transport, local=local, from_uri="sip:probe@127.0.0.1",
                               contact=NameAddr(f"sip:probe@{local}")))  # fmt: skip


def reply_to(request: bytes, status: str) -> Response:
    parsed = parse(request)
    head = [f"SIP/2.0 {status}", *(f"{k}: {v}" for k, v in parsed.headers if k in ("Via", "CSeq", "Call-ID"))]
    response = parse(("\r\n".join([*head, "Content-Length: 0"]) + "\r\n\r\n").encode())
    assert isinstance(response, Response)
    return response


# --------------------------------------------------------------------------- the transaction (no sockets)


def test_udp_retransmissions_follow_timer_e_until_the_overall_timeout() -> None:
    request = parse(options(Address("127.0.0.1", 5062)))
    tx = ClientTransaction(request, reliable=False, timeout_s=3.0)  # type: ignore[arg-type]
    tx.start(0.0)
    timeline = []
    now = 0.0
    while (action := tx.poll(now)) != "timeout":
        if action == "retransmit":
            timeline.append(now)
        now = tx.wake_at()
    assert timeline == [0.5, 1.5]  # T1, then 2*T1 later; the next (3.5 s) is past the 3 s limit
    assert now == 3.0


def test_a_provisional_response_stretches_retransmissions_to_t2_and_tcp_never_retransmits() -> None:
    data = options(Address("127.0.0.1", 5062))
    tx = ClientTransaction(parse(data), reliable=False, timeout_s=30.0)  # type: ignore[arg-type]
    tx.start(0.0)
    other = parse(options(Address("127.0.0.1", 5062)))  # another branch: not ours
    assert not tx.receive(reply_to(bytes(other), "200 OK"))
    assert not tx.receive(reply_to(data, "100 Trying"))
    assert tx.poll(0.5) == "retransmit" and tx.wake_at() == 4.5  # T2 = 4 s after a provisional
    assert tx.receive(reply_to(data, "200 OK")) and tx.final is not None and len(tx.provisional) == 1

    tcp = ClientTransaction(parse(data), reliable=True, timeout_s=3.0)  # type: ignore[arg-type]
    tcp.start(10.0)
    assert tcp.poll(12.9) == "wait" and tcp.wake_at() == 13.0 and tcp.poll(13.0) == "timeout"


# --------------------------------------------------------------------------- real sockets


def closed_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.timeout(5)
def test_udp_to_a_closed_port_is_unreachable_at_once() -> None:
    port = closed_port(socket.SOCK_DGRAM)
    start = time.perf_counter()
    with SipConnection("127.0.0.1", port, Transport.UDP) as conn, pytest.raises(Unreachable) as info:
        assert conn.local is not None
        conn.exchange(parse(options(conn.local)))  # type: ignore[arg-type]
    assert time.perf_counter() - start < 0.5
    assert info.value.errno == errno.ECONNREFUSED
    assert str(info.value) == (f"udp:127.0.0.1:{port}: Connection refused (ECONNREFUSED): nothing listens on "
                               "that port (ICMP port unreachable)")  # fmt: skip


@pytest.mark.timeout(5)
def test_tcp_to_a_closed_port_is_refused() -> None:
    port = closed_port(socket.SOCK_STREAM)
    with pytest.raises(Unreachable, match=rf"^tcp:127.0.0.1:{port}: Connection refused \(ECONNREFUSED\)"):
        SipConnection("127.0.0.1", port, Transport.TCP).open()


@pytest.fixture
def silent_udp() -> Iterator[socket.socket]:
    """A UDP port that receives and never answers: a firewall that drops, or a wrong service."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.1)
        yield sock


def drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(65535))
        except TimeoutError:
            return out


def test_silence_is_no_answer_after_the_timeout_with_retransmissions(silent_udp: socket.socket) -> None:
    port = silent_udp.getsockname()[1]
    start = time.perf_counter()
    with SipConnection("127.0.0.1", port, Transport.UDP, timeout_s=1.2) as conn, pytest.raises(NoAnswer) as info:
        assert conn.local is not None
        conn.exchange(parse(options(conn.local)))  # type: ignore[arg-type]
    assert 1.15 < time.perf_counter() - start < 1.6
    assert "no final response to OPTIONS within 1.2 s, sent 2 times" in str(info.value)
    copies = drain(silent_udp)
    assert len(copies) == 2 and copies[0] == copies[1]  # a retransmission is the same bytes


def test_garbage_is_a_malformed_response(silent_udp: socket.socket) -> None:
    def answer() -> None:
        _, source = silent_udp.recvfrom(65535)
        silent_udp.sendto(b"HELLO WORLD\r\n\r\n", source)

    thread = threading.Thread(target=answer)
    thread.start()
    port = silent_udp.getsockname()[1]
    with SipConnection("127.0.0.1", port, Transport.UDP, timeout_s=2) as conn, pytest.raises(MalformedResponse) as info:
        assert conn.local is not None
        conn.exchange(parse(options(conn.local)))  # type: ignore[arg-type]
    thread.join()
    assert info.value.data == b"HELLO WORLD\r\n\r\n"
    assert "not a SIP message" in str(info.value) and "neither a request nor a status line" in str(info.value)


def test_an_invalid_host_name_is_unresolved_without_a_lookup() -> None:
    with pytest.raises(Unresolved, match=r"^udp:bad\.\.name:5060: not a valid host name"):
        SipConnection("bad..name", 5060, Transport.UDP).open()


@pytest.mark.testbed
@pytest.mark.parametrize("transport", [Transport.UDP, Transport.TCP, Transport.TLS])
def test_exchange_with_kamailio_keeps_the_exact_bytes(kamailio: Kamailio, transport: Transport) -> None:
    port = kamailio.port(transport.value)  # type: ignore[arg-type]
    with SipConnection(kamailio.host, port, transport, tls_ca_file=kamailio.ca_path) as conn:
        assert conn.local is not None
        request = parse(options(conn.local, transport.value, f"sip:{kamailio.host}:{port};transport={transport}"))
        exchange = conn.exchange(request)  # type: ignore[arg-type]
    assert exchange.sent == bytes(request)
    assert parse(exchange.received) == exchange.response and exchange.response.status == 200
    assert exchange.local == conn.local and exchange.remote == Address(kamailio.host, port)
    assert exchange.response.top_via.sent_by == str(conn.local)
    assert 0 < exchange.rtt_ms < 500 and exchange.retransmissions == 0
    if transport is Transport.TLS:
        assert conn.tls is not None and conn.tls.verified and conn.tls.hostname_ok


@pytest.mark.testbed
def test_certificate_decoding_agrees_with_the_ssl_module(kamailio: Kamailio) -> None:
    context = ssl.create_default_context(cafile=str(kamailio.ca_path))
    with (
        socket.create_connection((kamailio.host, kamailio.tls_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=kamailio.host) as tls,
    ):
        verified = tls.getpeercert()
        der = tls.getpeercert(binary_form=True)
    assert verified is not None and der is not None
    ours = _decode_certificate(der)
    assert ours.subject == "CN=" + dict(x[0] for x in verified["subject"])["commonName"]  # type: ignore[misc]
    assert ours.issuer == "CN=" + dict(x[0] for x in verified["issuer"])["commonName"]  # type: ignore[misc]
    not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(verified["notAfter"])), UTC)
    assert ours.not_after == not_after
    names = verified["subjectAltName"]
    assert set(ours.san) == {f"{kind}:{value}".replace("IP Address", "IP") for kind, value in names}


@pytest.mark.testbed
def test_tls_without_the_ca_is_untrusted_and_still_described(kamailio: Kamailio) -> None:
    with pytest.raises(TlsFailure) as info:
        SipConnection(kamailio.host, kamailio.tls_port, Transport.TLS).open()
    failure = info.value
    assert failure.cause == "untrusted" and "OpenSSL verify code 19" in failure.detail
    assert failure.tls is not None and failure.tls.subject == "CN=localhost" and failure.tls.hostname_ok
    assert failure.tls.issuer is not None and failure.tls.issuer.startswith("CN=phonekit test CA")
    assert failure.tls.days_left is not None and 29 < failure.tls.days_left <= 30
    # With verification off the same server is accepted, and said to be unverified.
    with SipConnection(kamailio.host, kamailio.tls_port, Transport.TLS, tls_verify=False) as conn:
        assert conn.tls is not None and not conn.tls.verified and conn.tls.hostname_ok


@pytest.mark.parametrize(
    ("host", "san", "ok"),
    [
        ("127.0.0.1", ["IP:127.0.0.1", "DNS:localhost"], True),
        ("::1", ["IP:0:0:0:0:0:0:0:1"], True),
        ("127.0.0.1", ["DNS:127.0.0.1"], False),  # an IP must be an IP SAN
        ("sip.example.com", ["DNS:SIP.example.com."], True),
        ("sip.example.com", ["DNS:*.example.com"], True),
        ("a.sip.example.com", ["DNS:*.example.com"], False),  # a wildcard covers one label
        ("example.com", ["DNS:*.example.com"], False),
        ("localhost", ["DNS:wrong-host.invalid"], False),
    ],
)
def test_hostname_matching(host: str, san: list[str], ok: bool) -> None:
    assert hostname_matches(host, san) is ok
