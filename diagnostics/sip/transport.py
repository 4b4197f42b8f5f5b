"""One SIP request, one final response: a small blocking client over UDP, TCP or TLS.

The only module of :mod:`diagnostics.sip` with sockets. The transaction logic
(RFC 3261 §17.1.2: which response is ours, when to retransmit) is the sans-I/O
:class:`ClientTransaction`; :class:`SipConnection` moves its bytes.

Why not a SIP stack: a diagnostic must answer in seconds and say why. UDP uses a
*connected* socket, so an ICMP port-unreachable comes back at once as
ECONNREFUSED (pjsua2 ignores it and waits 32 s for Timer F); retransmissions
follow Timer E (T1 = 500 ms, doubling) but the whole transaction gives up after
``timeout_s`` (3 s by default), not 32 s. Every byte sent and received is kept
(SIP ALG detection compares them), with the local address the OS chose.

Exceptions (each names the target, e.g. ``udp:127.0.0.1:5060``, and why)::

    TransportError (PhonekitError)   no usable final response; .target, .outcome
    ├── Unresolved                   the host name does not resolve
    ├── Unreachable                  refused at once: ICMP port/host unreachable, TCP reset; .errno
    ├── NoAnswer                     nothing within the timeout: a firewall drops it, or wrong host/port
    ├── TlsFailure                   the TLS handshake failed; .cause (one of TLS_CAUSES), .tls (what was seen)
    └── MalformedResponse            bytes came back, but not a SIP response we can use; .data
"""

from __future__ import annotations

import errno as errnos
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from diagnostics.errors import PhonekitError
from diagnostics.profile import Transport
from diagnostics.sip.message import Address, Message, ParseError, Request, Response, StreamReader, parse

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "T1_S",
    "T2_S",
    "TLS_CAUSES",
    "ClientTransaction",
    "Exchange",
    "MalformedResponse",
    "NoAnswer",
    "SipConnection",
    "TlsFailure",
    "TlsInfo",
    "TransportError",
    "Unreachable",
    "Unresolved",
    "hostname_matches",
]

log = logging.getLogger(__name__)

T1_S = 0.5
"""RFC 3261 §17.1.1.1: round-trip estimate; the first UDP retransmission comes after T1."""
T2_S = 4.0
"""RFC 3261 §17.1.2.2: the longest retransmit interval of a non-INVITE request."""
DEFAULT_TIMEOUT_S = 3.0
"""Our overall limit per transaction (RFC 3261's Timer F is 64*T1 = 32 s: far too long for a check)."""

_RECV_BYTES = 65535


# --------------------------------------------------------------------------- exceptions


class TransportError(PhonekitError):
    """No usable final response from ``target``; ``outcome`` is the verdict tables' key."""

    outcome = "transport"

    def __init__(self, target: str, message: str) -> None:
        super().__init__(f"{target}: {message}")
        self.target = target
        self.reason = message
        """The message without the target."""


class Unresolved(TransportError):
    outcome = "unresolved"


class Unreachable(TransportError):
    outcome = "unreachable"

    def __init__(self, target: str, message: str, errno: int | None = None) -> None:
        super().__init__(target, message)
        self.errno = errno


class NoAnswer(TransportError):
    outcome = "no-answer"


class MalformedResponse(TransportError):
    outcome = "malformed"

    def __init__(self, target: str, message: str, data: bytes = b"") -> None:
        super().__init__(target, message)
        self.data = data


TlsCause = Literal["expired", "not-yet-valid", "hostname-mismatch", "untrusted", "handshake"]

TLS_CAUSES: Mapping[int, TlsCause] = {
    # OpenSSL X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code) -> our cause.
    2: "untrusted",  # UNABLE_TO_GET_ISSUER_CERT
    7: "untrusted",  # CERT_SIGNATURE_FAILURE
    9: "not-yet-valid",  # CERT_NOT_YET_VALID
    10: "expired",  # CERT_HAS_EXPIRED
    18: "untrusted",  # DEPTH_ZERO_SELF_SIGNED_CERT
    19: "untrusted",  # SELF_SIGNED_CERT_IN_CHAIN
    20: "untrusted",  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21: "untrusted",  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
    23: "untrusted",  # CERT_REVOKED
    24: "untrusted",  # INVALID_CA
    27: "untrusted",  # CERT_UNTRUSTED
    28: "untrusted",  # CERT_REJECTED
    62: "hostname-mismatch",  # HOSTNAME_MISMATCH
    64: "hostname-mismatch",  # IP_ADDRESS_MISMATCH
}
"""Certificate verification errors by OpenSSL code; any other verify error counts as ``untrusted``."""


@dataclass(frozen=True)
class TlsInfo:
    """What the TLS handshake showed of the server (its leaf certificate, decoded without trusting it)."""

    verified: bool
    """Chain and name verified against the CA list (False when verification was off or failed)."""
    hostname_ok: bool | None
    """The certificate names the host we asked for (None when no certificate could be read)."""
    subject: str | None = None
    issuer: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    days_left: float | None = None
    """Days until not_after at the time of the probe (negative: expired)."""
    san: tuple[str, ...] = ()
    """subjectAltName entries, ``DNS:name`` / ``IP:address``."""
    version: str | None = None
    cipher: str | None = None
    error_cause: TlsCause | None = None
    error_detail: str | None = None

    def to_measurements(self, prefix: str = "tls_") -> dict[str, Any]:
        values: dict[str, Any] = {
            "verified": self.verified,
            "hostname_ok": self.hostname_ok,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_after": self.not_after.isoformat().replace("+00:00", "Z") if self.not_after else None,
            "days_left": round(self.days_left, 2) if self.days_left is not None else None,
            "san": list(self.san),
            "version": self.version,
            "cipher": self.cipher,
            "error": self.error_cause,
            "error_detail": self.error_detail,
        }
        return {prefix + key: value for key, value in values.items()}


class TlsFailure(TransportError):
    outcome = "tls"

    def __init__(self, target: str, cause: TlsCause, detail: str, tls: TlsInfo | None = None) -> None:
        super().__init__(target, f"TLS {cause}: {detail}")
        self.cause: TlsCause = cause
        self.detail = detail
        self.tls = tls


# --------------------------------------------------------------------------- the transaction, sans-I/O


class ClientTransaction:
    """A non-INVITE client transaction (RFC 3261 §17.1.2), cut short at ``timeout_s``.

    Drive it with the clock: :meth:`start`, then :meth:`poll` says ``retransmit``,
    ``timeout`` or ``wait`` (until :meth:`wake_at`); feed every response to
    :meth:`receive`, which says whether it was our final one.
    """

    def __init__(self, request: Request, *, reliable: bool, timeout_s: float = DEFAULT_TIMEOUT_S,
                 t1_s: float = T1_S, t2_s: float = T2_S) -> None:  # fmt: skip
        if timeout_s <= 0:
            raise ValueError(f"transaction timeout must be > 0 s (got {timeout_s})")
        self.request = request
        self.branch = request.top_via.branch
        self.method = request.method
        self.reliable = reliable
        self.timeout_s = timeout_s
        self.t1_s, self.t2_s = t1_s, t2_s
        self.interval_s = t1_s
        self.started_at = 0.0
        self.deadline = 0.0
        self.next_send_at: float | None = None
        self.provisional: list[Response] = []
        self.final: Response | None = None

    def start(self, now: float) -> None:
        self.started_at = now
        self.deadline = now + self.timeout_s
        # Timer E (§17.1.2.2) only over unreliable transports.
        self.next_send_at = None if self.reliable else now + self.interval_s

    def poll(self, now: float) -> Literal["wait", "retransmit", "timeout"]:
        if now >= self.deadline:
            return "timeout"
        if self.next_send_at is not None and now >= self.next_send_at:
            # Doubling up to T2; after a provisional response, every T2 (§17.1.2.2).
            self.interval_s = self.t2_s if self.provisional else min(2 * self.interval_s, self.t2_s)
            self.next_send_at = now + self.interval_s
            return "retransmit"
        return "wait"

    def wake_at(self) -> float:
        return self.deadline if self.next_send_at is None else min(self.deadline, self.next_send_at)

    def matches(self, response: Response) -> bool:
        """§17.1.3: same top Via branch and same CSeq method."""
        return response.top_via.branch == self.branch and response.cseq.method == self.method

    def receive(self, response: Response) -> bool:
        """Take one response; True when it is our final response. Raises ParseError on a broken one."""
        if not self.matches(response):
            return False
        if response.is_final:
            self.final = response
            return True
        self.provisional.append(response)
        return False


# --------------------------------------------------------------------------- the connection


@dataclass(frozen=True)
class Exchange:
    """One request and its final response, with exactly the bytes that went each way."""

    request: Request
    response: Response
    sent: bytes
    """The request as written to the socket (retransmissions were identical)."""
    received: bytes
    """The final response as read from the socket."""
    provisional: tuple[Response, ...]
    rtt_ms: float
    """From the first transmission to the final response (includes any retransmission wait)."""
    retransmissions: int
    local: Address
    remote: Address
    transport: Transport


class SipConnection:
    """A socket to one SIP server for a few requests: open, :meth:`exchange` (repeatedly), close.

    ``host`` names the server (for TLS verification and SNI); ``address`` is the IP to
    connect to when already resolved (DNS SRV), else ``host`` is resolved here. Connect,
    TLS handshake and each transaction are each limited to ``timeout_s``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        transport: Transport,
        *,
        address: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        tls_ca_file: Path | None = None,
        tls_verify: bool = True,
    ) -> None:
        if not 0 < port < 65536:
            raise ValueError(f"port must be 1..65535 (got {port})")
        if timeout_s <= 0:
            raise ValueError(f"timeout must be > 0 s (got {timeout_s})")
        self.host = host
        self.port = port
        self.transport = transport
        self.address = address
        self.timeout_s = timeout_s
        self.tls_ca_file = tls_ca_file
        self.tls_verify = tls_verify
        self.tls: TlsInfo | None = None
        self._sock: socket.socket | None = None
        self._reader = StreamReader()
        self.local: Address | None = None
        """Our end of the socket, as the OS chose it (set by :meth:`open`)."""
        self.remote: Address | None = None

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport.value}:{host}:{self.port}"

    def __enter__(self) -> SipConnection:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # ----------------------------------------------------------------- opening

    def _resolve(self) -> tuple[int, tuple[Any, ...]]:
        kind = socket.SOCK_DGRAM if self.transport is Transport.UDP else socket.SOCK_STREAM
        try:
            infos = socket.getaddrinfo(self.address or self.host, self.port, type=kind)
        except socket.gaierror as exc:
            raise Unresolved(self.target, f"cannot resolve {self.address or self.host!r}: {exc.strerror}") from exc
        except UnicodeError as exc:  # the IDNA codec refuses it before any lookup
            raise Unresolved(self.target, f"not a valid host name ({self.address or self.host!r}): {exc}") from exc
        family, _, _, _, sockaddr = infos[0]
        return family, sockaddr

    def open(self) -> None:
        family, sockaddr = self._resolve()
        kind = socket.SOCK_DGRAM if self.transport is Transport.UDP else socket.SOCK_STREAM
        sock = socket.socket(family, kind)
        try:
            sock.settimeout(self.timeout_s)
            try:
                sock.connect(sockaddr)
            except TimeoutError as exc:
                why = f"no answer to the TCP connection within {self.timeout_s:g} s"
                raise NoAnswer(self.target, f"{why} (a firewall drops it, or nothing is at that address)") from exc
            except OSError as exc:
                raise _unreachable(self.target, exc) from exc
            if self.transport is Transport.TLS:
                sock = self._handshake(sock, family, sockaddr)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.local = Address(*sock.getsockname()[:2])
        self.remote = Address(*sock.getpeername()[:2])
        log.debug("%s: open, local %s, remote %s", self.target, self.local, self.remote)

    def _context(self, verify: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.tls_ca_file) if self.tls_ca_file else None)
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _handshake(self, sock: socket.socket, family: int, sockaddr: tuple[Any, ...]) -> ssl.SSLSocket:
        try:
            tls = self._context(self.tls_verify).wrap_socket(sock, server_hostname=self.host)
        except ssl.SSLCertVerificationError as exc:
            cause = TLS_CAUSES.get(exc.verify_code, "untrusted")
            detail = f"{exc.verify_message} (OpenSSL verify code {exc.verify_code})"
            seen = self._peek_certificate(family, sockaddr)
            info = _tls_info(seen[0], self.host, False, seen[1], seen[2], cause, detail) if seen else None
            raise TlsFailure(self.target, cause, detail, info) from exc
        except ssl.SSLError as exc:
            raise TlsFailure(self.target, "handshake", exc.reason or str(exc)) from exc
        except TimeoutError as exc:
            raise TlsFailure(self.target, "handshake", f"no TLS handshake answer within {self.timeout_s:g} s "
                                                       "(is this a TLS port?)") from exc  # fmt: skip
        except OSError as exc:
            why = f"connection failed during the handshake: {exc.strerror or exc}"
            raise TlsFailure(self.target, "handshake", why) from exc
        der = tls.getpeercert(binary_form=True) or b""
        cipher = tls.cipher()
        self.tls = _tls_info(der, self.host, self.tls_verify, tls.version(), cipher[0] if cipher else None)
        return tls

    def _peek_certificate(self, family: int, sockaddr: tuple[Any, ...]) -> tuple[bytes, str | None, str | None] | None:
        """Shake hands again without verifying, only to read the certificate that failed (for the report)."""
        try:
            with socket.socket(family, socket.SOCK_STREAM) as raw:
                raw.settimeout(self.timeout_s)
                raw.connect(sockaddr)
                with self._context(verify=False).wrap_socket(raw, server_hostname=self.host) as tls:
                    cipher = tls.cipher()
                    return tls.getpeercert(binary_form=True) or b"", tls.version(), cipher[0] if cipher else None
        except OSError as exc:  # ssl.SSLError is an OSError
            log.debug("%s: could not read the refused certificate: %s", self.target, exc)
            return None

    # ----------------------------------------------------------------- one transaction

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise _unreachable(self.target, exc) from exc

    def _receive(self, wait_s: float) -> tuple[float, list[tuple[bytes, Message]]]:
        """When something arrived within ``wait_s``, and what (possibly nothing), parsed."""
        assert self._sock is not None
        self._sock.settimeout(max(wait_s, 0.001))
        try:
            data = self._sock.recv(_RECV_BYTES)
        except TimeoutError:
            return time.perf_counter(), []
        except OSError as exc:  # ECONNREFUSED here is the ICMP port-unreachable of an earlier send
            raise _unreachable(self.target, exc) from exc
        return time.perf_counter(), self._parse(data)

    def _parse(self, data: bytes) -> list[tuple[bytes, Message]]:
        if self.transport is Transport.UDP:
            if not data.strip(b"\r\n"):
                return []  # a keepalive
            try:
                return [(data, parse(data))]
            except ParseError as exc:
                raise MalformedResponse(self.target, f"not a SIP message: {exc}", data) from exc
        if not data:
            raise NoAnswer(self.target, "the server closed the connection without a final response")
        try:
            return self._reader.feed(data)
        except ParseError as exc:
            raise MalformedResponse(self.target, f"broken SIP stream: {exc}", data) from exc

    def exchange(self, request: Request) -> Exchange:
        """Send ``request`` and return its final response; raises a :class:`TransportError` subclass."""
        if self._sock is None or self.local is None or self.remote is None:
            raise RuntimeError(f"{self.target}: connection not open")
        local, remote = self.local, self.remote
        transaction = ClientTransaction(request, reliable=self.transport is not Transport.UDP,
                                        timeout_s=self.timeout_s)  # fmt: skip
        data = bytes(request)
        retransmissions = 0
        log.debug("%s: sending %s (%d bytes):\n%s", self.target, request.method, len(data), _text(data))
        started = time.perf_counter()
        transaction.start(started)
        self._send(data)
        while True:
            now = time.perf_counter()
            action = transaction.poll(now)
            if action == "timeout":
                sent = f", sent {retransmissions + 1} times" if retransmissions else ""
                raise NoAnswer(self.target, f"no final response to {request.method} within {self.timeout_s:g} s{sent} "
                                            "(a firewall drops it, or nothing SIP is at that address)")  # fmt: skip
            if action == "retransmit":
                retransmissions += 1
                log.debug("%s: retransmitting %s (%d)", self.target, request.method, retransmissions)
                self._send(data)
            arrived, messages = self._receive(transaction.wake_at() - time.perf_counter())
            for raw, message in messages:
                if not isinstance(message, Response):
                    log.debug("%s: ignoring a %s request from the server", self.target, message.method)
                    continue
                try:
                    final = transaction.receive(message)
                except ParseError as exc:
                    raise MalformedResponse(self.target, f"response without usable Via/CSeq: {exc}", raw) from exc
                if not final:
                    log.debug("%s: %d %s", self.target, message.status, message.reason)
                    continue
                rtt_ms = (arrived - started) * 1000.0  # the bytes' arrival, not our parsing
                log.debug("%s: received (%d bytes, %.2f ms):\n%s", self.target, len(raw), rtt_ms, _text(raw))
                return Exchange(
                    request=request, response=message, sent=data, received=raw,
                    provisional=tuple(transaction.provisional), rtt_ms=rtt_ms, retransmissions=retransmissions,
                    local=local, remote=remote, transport=self.transport,
                )  # fmt: skip


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _unreachable(target: str, exc: OSError) -> TransportError:
    code = exc.errno
    name = errnos.errorcode.get(code, "?") if code is not None else "?"
    text = os.strerror(code) if code is not None else str(exc)
    refused = "ICMP port unreachable" if target.startswith("udp:") else "TCP reset"
    why = {
        errnos.ECONNREFUSED: f"nothing listens on that port ({refused})",
        errnos.EHOSTUNREACH: "no route to that host",
        errnos.ENETUNREACH: "no route to that network",
        errnos.ECONNRESET: "the server reset the connection",
    }.get(code or 0, "the network refused it")
    return Unreachable(target, f"{text} ({name}): {why}", code)


# --------------------------------------------------------------------------- certificates

# A minimal DER reader for the few X.509 fields a report needs (RFC 5280 §4.1), so a
# certificate that failed verification can still be described (the ssl module only
# decodes certificates it verified).

_OID_NAMES = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
    "1.2.840.113549.1.9.1": "emailAddress",
}  # fmt: skip
_SAN_OID = "2.5.29.17"


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError(f"DER element at {pos} runs past the end ({length} bytes)")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out, pos = [], start
    while pos < end:
        element = _tlv(data, pos)
        out.append(element)
        pos = element[2]
    return out


def _oid(raw: bytes) -> str:
    parts, value = [raw[0] // 40, raw[0] % 40], 0
    for byte in raw[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _string(tag: int, raw: bytes) -> str:
    return raw.decode("utf-16-be" if tag == 0x1E else "utf-8", errors="replace")


def _name(data: bytes, start: int, end: int) -> str:
    parts = []
    for _, set_start, set_end in _children(data, start, end):
        for _, seq_start, seq_end in _children(data, set_start, set_end):
            (_, oid_start, oid_end), (tag, value_start, value_end) = _children(data, seq_start, seq_end)[:2]
            oid = _oid(data[oid_start:oid_end])
            parts.append(f"{_OID_NAMES.get(oid, oid)}={_string(tag, data[value_start:value_end])}")
    return ", ".join(parts)


def _time(tag: int, raw: bytes) -> datetime:
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ (RFC 5280 §4.1.2.5.1: YY >= 50 is 19YY)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _san(data: bytes, start: int, end: int) -> tuple[str, ...]:
    names = []
    _, seq_start, seq_end = _tlv(data, start)
    for tag, value_start, value_end in _children(data, seq_start, seq_end):
        raw = data[value_start:value_end]
        if tag == 0x82:
            names.append("DNS:" + raw.decode("ascii", errors="replace"))
        elif tag == 0x87 and len(raw) in (4, 16):
            names.append(f"IP:{ipaddress.ip_address(raw)}")
    return tuple(names)


@dataclass(frozen=True)
class _Certificate:
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    san: tuple[str, ...]


def _decode_certificate(der: bytes) -> _Certificate:
    _, cert_start, cert_end = _tlv(der, 0)
    _, tbs_start, tbs_end = _children(der, cert_start, cert_end)[0]
    fields = _children(der, tbs_start, tbs_end)
    if fields and fields[0][0] == 0xA0:  # [0] EXPLICIT version
        fields = fields[1:]
    _serial, _algorithm, issuer, validity, subject = fields[:5]
    (nb_tag, nb_start, nb_end), (na_tag, na_start, na_end) = _children(der, validity[1], validity[2])[:2]
    san: tuple[str, ...] = ()
    for tag, start, _ in fields[6:]:
        if tag != 0xA3:  # [3] EXPLICIT extensions
            continue
        _, exts_start, exts_end = _tlv(der, start)
        for _, ext_start, ext_end in _children(der, exts_start, exts_end):
            parts = _children(der, ext_start, ext_end)
            if _oid(der[parts[0][1] : parts[0][2]]) == _SAN_OID:
                _, value_start, value_end = parts[-1]
                san = _san(der, value_start, value_end)
    return _Certificate(
        subject=_name(der, subject[1], subject[2]),
        issuer=_name(der, issuer[1], issuer[2]),
        not_before=_time(nb_tag, der[nb_start:nb_end]),
        not_after=_time(na_tag, der[na_start:na_end]),
        san=san,
    )


def hostname_matches(host: str, san: Sequence[str]) -> bool:
    """Whether subjectAltName entries name ``host`` (RFC 6125 §6.4: IP exactly, DNS with a leftmost ``*``)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    for entry in san:
        kind, _, value = entry.partition(":")
        if ip is not None:
            if kind == "IP" and ipaddress.ip_address(value) == ip:
                return True
            continue
        pattern, name = value.lower().rstrip("."), host.lower().rstrip(".")
        if kind != "DNS":
            continue
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name and name.split(".", 1)[1] == pattern[2:]:
            return True
    return False


def _tls_info(
    der: bytes,
    host: str,
    verified: bool,
    version: str | None,
    cipher: str | None,
    cause: TlsCause | None = None,
    detail: str | None = None,
) -> TlsInfo:
    try:
        cert = _decode_certificate(der)
    except (ValueError, IndexError) as exc:
        log.debug("cannot decode the server certificate (%d bytes): %s", len(der), exc)
        return TlsInfo(verified, None, version=version, cipher=cipher, error_cause=cause, error_detail=detail)
    days_left = (cert.not_after - datetime.now(UTC)).total_seconds() / 86400.0
    return TlsInfo(
        verified=verified,
        hostname_ok=hostname_matches(host, cert.san),
        subject=cert.subject,
        issuer=cert.issuer,
        not_before=cert.not_before,
        not_after=cert.not_after,
        days_left=days_left,
        san=cert.san,
        version=version,
        cipher=cipher,
        error_cause=cause,
        error_detail=detail,
    )
