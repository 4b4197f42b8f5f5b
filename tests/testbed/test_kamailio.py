"""The Kamailio test bed does what the product's SIP tests rely on.

Checked with tools independent of the product (sipsak, raw sockets, Python's
ssl), so a broken test bed shows up here and not as a mysterious product bug.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import socket
import ssl
import struct
import subprocess
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from tests.testbed.kamailio import Kamailio, Transport, sip_options

log = logging.getLogger(__name__)



# --------------------------------------------------------------------------- helpers


def sipsak_register(
    server: Kamailio, user: str, password: str, transport: Transport
) -> subprocess.CompletedProcess[str]:
    """REGISTER with digest auth through sipsak (an independent SIP client)."""
    argv = ["sipsak", "-U", "-i", "-x", "60", "-E", transport, "-a", password,
            "-s", f"sip:{user}@{server.host}:{server.port(transport)}"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


@dataclass
class SipReply:
    status: int
    headers: list[tuple[str, str]]
    body: str

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


def parse_reply(data: bytes) -> SipReply:
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = []
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers.append((key.strip(), value.strip()))
    return SipReply(status, headers, body)


def digest_header(challenge: str, user: str, password: str, method: str, uri: str) -> str:
    """Answer a Digest challenge (with or without qop=auth) as RFC 2617 says."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = params["realm"], params["nonce"]
    ha1, ha2 = _md5(f"{user}:{realm}:{password}"), _md5(f"{method}:{uri}")
    answer = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", algorithm=MD5'
    if "qop" in params:
        cnonce, nc = secrets.token_hex(8), "00000001"
        response = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        answer += f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        response = _md5(f"{ha1}:{nonce}:{ha2}")
    if "opaque" in params:
        answer += f', opaque="{params["opaque"]}"'
    return answer + f', response="{response}"'


@dataclass
class RawCaller:
    """A minimal UDP SIP caller: just enough to place one authenticated call.

    Deliberately not a SIP stack, so it tests Kamailio's routing and the echo
    service without depending on pjsua2 or the product.
    """

    server: Kamailio
    user: str
    sock: socket.socket = field(init=False)
    rtp: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5.0)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.call_id = secrets.token_hex(8) + "@127.0.0.1"
        self.tag = secrets.token_hex(4)
        self.cseq = 0

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def close(self) -> None:
        self.sock.close()
        self.rtp.close()

    def _request(self, method: str, ruri: str, to: str, extra: str = "", body: str = "", cseq: int | None = None,
                 branch: str | None = None) -> tuple[bytes, str]:  # fmt: skip
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        branch = branch or "z9hG4bK" + secrets.token_hex(6)
        msg = (
            f"{method} {ruri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{self.user}@{self.server.domain}>;tag={self.tag}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>\r\n"
            f"{extra}"
            + ("Content-Type: application/sdp\r\n" if body else "")
            + f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
        )
        return msg.encode(), branch

    def _send(self, data: bytes) -> None:
        self.sock.sendto(data, (self.server.host, self.server.udp_port))

    def _final(self, method: str) -> SipReply:
        """Wait for the final reply to our latest ``method`` (provisionals skipped)."""
        while True:
            reply = parse_reply(self.sock.recv(65535))
            if reply.header("CSeq") == f"{self.cseq} {method}" and reply.status >= 200:
                return reply

    def sdp(self) -> str:
        port = self.rtp.getsockname()[1]
        return (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        )

    def register(self, expires: int = 60) -> SipReply:
        """REGISTER this socket as the user's contact, answering the 401 challenge."""
        ruri, to = f"sip:{self.server.domain}", f"<sip:{self.user}@{self.server.domain}>"
        expiry = f"Expires: {expires}\r\n"
        self._send(self._request("REGISTER", ruri, to, expiry)[0])
        reply = self._final("REGISTER")
        if reply.status == 401:
            auth = digest_header(reply.header("WWW-Authenticate") or "", self.user,
                                 self.server.users[self.user], "REGISTER", ruri)  # fmt: skip
            self._send(self._request("REGISTER", ruri, to, f"{expiry}Authorization: {auth}\r\n")[0])
            reply = self._final("REGISTER")
        return reply

    def invite(self, callee: str, wait: bool = True) -> SipReply | None:
        """INVITE ``callee``, answer the 407 challenge, return the final reply."""
        ruri, to = f"sip:{callee}@{self.server.domain}", f"<sip:{callee}@{self.server.domain}>"
        data, branch = self._request("INVITE", ruri, to, body=self.sdp())
        self._send(data)
        reply = self._final("INVITE")
        if reply.status == 407:
            self._ack_error(ruri, reply, branch)
            auth = digest_header(reply.header("Proxy-Authenticate") or "", self.user,
                                 self.server.users[self.user], "INVITE", ruri)  # fmt: skip
            data, branch = self._request("INVITE", ruri, to, f"Proxy-Authorization: {auth}\r\n", self.sdp())
            self._send(data)
            if not wait:
                return None
            reply = self._final("INVITE")
        if reply.status >= 300:
            self._ack_error(ruri, reply, branch)
        return reply

    def _ack_error(self, ruri: str, reply: SipReply, branch: str) -> None:
        data, _ = self._request("ACK", ruri, reply.header("To") or "", cseq=self.cseq, branch=branch)
        self._send(data)

    def _in_dialog(self, method: str, ok: SipReply, cseq: int | None = None) -> None:
        contact = re.search(r"<([^>]+)>", ok.header("Contact") or "")
        assert contact, f"200 without Contact: {ok.headers}"
        route = "".join(f"Route: {rr}\r\n" for rr in reversed(ok.all("Record-Route")))
        data, _ = self._request(method, contact.group(1), ok.header("To") or "", route, cseq=cseq)
        self._send(data)

    def ack(self, ok: SipReply) -> None:
        self._in_dialog("ACK", ok, cseq=self.cseq)

    def bye(self, ok: SipReply) -> SipReply:
        self._in_dialog("BYE", ok)
        return self._final("BYE")


def ulaw_encode(samples: np.ndarray) -> bytes:
    """G.711 mu-law, enough to feed the echo a known tone."""
    x = np.clip(samples.astype(np.int32), -32635, 32635)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.abs(x) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return bytes((~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes())


def ulaw_decode(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, np.uint8).astype(np.int32) & 0xFF
    mag = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)
    return np.where(u & 0x80, 0x84 - mag, mag - 0x84).astype(np.float64)


def exchange_rtp(caller: RawCaller, answer: SipReply, seconds: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Send a tone burst as PCMU in real time; return (sent, received) audio."""
    media = re.search(r"m=audio (\d+)", answer.body)
    conn = re.search(r"c=IN IP4 (\S+)", answer.body)
    assert media and conn, f"no audio in answer SDP:\n{answer.body}"
    dest = (conn.group(1), int(media.group(1)))
    frames = int(seconds * 50)
    t = np.arange(frames * 160) / 8000
    sent = np.where((t > 0.2) & (t < 0.6), 8000 * np.sin(2 * np.pi * 700 * t), 0.0)
    received = bytearray()
    caller.rtp.setblocking(False)
    ssrc, start = secrets.randbits(32), time.monotonic()
    for n in range(frames + 25):  # 25 more frames of silence to catch the tail
        chunk = sent[n * 160 : (n + 1) * 160] if n < frames else np.zeros(160)
        header = struct.pack("!BBHII", 0x80, 0, n & 0xFFFF, (n * 160) & 0xFFFFFFFF, ssrc)
        caller.rtp.sendto(header + ulaw_encode(chunk), dest)
        while time.monotonic() < start + (n + 1) * 0.02:
            try:
                packet = caller.rtp.recv(2048)
            except BlockingIOError:
                time.sleep(0.002)
                continue
            if len(packet) > 12 and packet[1] & 0x7F == 0:
                received += packet[12:]
    return sent, ulaw_decode(bytes(received))


# --------------------------------------------------------------------------- tests


@pytest.mark.timeout(15)
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_options_answered(kamailio: Kamailio, transport: Transport) -> None:
    mark = kamailio.log_position()
    assert sip_options(kamailio.host, kamailio.port(transport), transport, ca_path=kamailio.ca_path) == 200
    logged = kamailio.wait_for_request("OPTIONS", since=mark)
    assert (logged.transport, logged.src_ip) == (transport, "127.0.0.1")


@pytest.mark.timeout(10)
def test_tls_certificate_verifies_against_test_ca(kamailio: Kamailio) -> None:
    context = ssl.create_default_context(cafile=str(kamailio.ca_path))
    with (
        socket.create_connection((kamailio.host, kamailio.tls_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}
    # And verification is real: without the test CA the same server is refused.
    with (
        socket.create_connection((kamailio.host, kamailio.tls_port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("user", "transport"), [("1001", "udp"), ("1002", "tcp")])
def test_register_with_right_password(kamailio: Kamailio, user: str, transport: Transport) -> None:
    kamailio.unregister(user)
    assert not kamailio.registered(user)
    mark = kamailio.log_position()
    done = sipsak_register(kamailio, user, kamailio.users[user], transport)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert kamailio.registered(user)
        assert {r.transport for r in kamailio.requests(mark, "REGISTER")} == {transport}
    finally:
        kamailio.unregister(user)


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("user", "transport"), [("1003", "udp"), ("1003", "tcp"), ("9999", "udp")])
def test_register_with_wrong_password_is_rechallenged(kamailio: Kamailio, user: str, transport: Transport) -> None:
    kamailio.unregister(user)
    done = sipsak_register(kamailio, user, "not-the-password", transport)
    assert done.returncode != 0
    assert "SIP/2.0 401" in done.stdout + done.stderr
    assert not kamailio.registered(user)


@pytest.mark.timeout(20)
def test_echo_extension_answers_and_echoes_audio(kamailio: Kamailio) -> None:
    caller = RawCaller(kamailio, "1004")
    mark = kamailio.log_position()
    try:
        answer = caller.invite(kamailio.echo_extension)
        assert answer is not None and answer.status == 200, answer
        caller.ack(answer)
        sent, received = exchange_rtp(caller, answer)
        assert caller.bye(answer).status == 200
    finally:
        caller.close()
    invites = kamailio.requests(mark, "INVITE")
    assert invites and all(r.ruri.startswith(f"sip:{kamailio.echo_extension}@") for r in invites)
    assert kamailio.requests(mark, "BYE"), "BYE did not pass through Kamailio (record-route broken?)"

    assert len(received) >= len(sent) // 2, f"only {len(received)} echoed samples for {len(sent)} sent"
    burst = sent[1600:4800]  # the 0.2-0.6 s tone burst
    at = int(np.argmax(np.abs(np.correlate(received, burst, "valid"))))
    lag_ms = (at - 1600) / 8
    level_ratio = np.sqrt(np.mean(received[at : at + len(burst)] ** 2) / np.mean(burst**2))
    log.info("echo: round trip %.1f ms (after this caller's own sending), level ratio %.2f", lag_ms, level_ratio)
    assert 0 <= lag_ms < 500
    assert 0.5 < level_ratio < 2.0


@pytest.mark.timeout(20)
def test_call_to_unregistered_user_is_404(kamailio: Kamailio) -> None:
    kamailio.unregister("1002")
    caller = RawCaller(kamailio, "1004")
    try:
        reply = caller.invite("1002")
        assert reply is not None and reply.status == 404
    finally:
        caller.close()


@pytest.mark.timeout(20)
def test_call_reaches_registered_user(kamailio: Kamailio) -> None:
    """Routing via the location table: a registered callee gets the INVITE, record-routed."""
    callee, caller = RawCaller(kamailio, "1001"), RawCaller(kamailio, "1004")
    try:
        assert callee.register().status == 200
        assert kamailio.registered("1001")
        assert caller.invite("1001", wait=False) is None
        while True:
            forwarded = callee.sock.recv(65535).decode(errors="replace")
            if forwarded.startswith("INVITE "):
                break
        assert forwarded.startswith(f"INVITE sip:1001@127.0.0.1:{callee.port} SIP/2.0")
        assert "Record-Route:" in forwarded
    finally:
        caller.close()
        callee.close()
        kamailio.unregister("1001")
