"""Check ``sip.options``: does the SIP server answer at all, and how fast? (RFC 3261 §11, OPTIONS)

Any final response proves the server is reachable: 200, 405 (OPTIONS not allowed) or
407 (authenticate first) all come from a SIP server that got our request. What
fails is the path: a name that does not resolve, a closed port, silence, a TLS
certificate we must refuse. :data:`TRANSPORT_VERDICTS` says what each of those
means and what to do; ``sip.register`` uses the same rows.

Targets: the profile's ``registrar`` when set (its port, or the transport's
default), else RFC 3263 server location (:func:`diagnostics.sip.dns.resolve_targets`).
Each target is probed over the profile's transport; when the first one answers,
the other transports are tried once, briefly, as extra measurements.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from diagnostics.checks import CheckContext
from diagnostics.errors import MeasurementError
from diagnostics.profile import AccountProfile, Transport, needs_profile, profile_of
from diagnostics.report import CheckResult, Status
from diagnostics.sip.message import Address, NameAddr, build_options
from diagnostics.sip.transport import (
    DEFAULT_TIMEOUT_S,
    SipConnection,
    TlsFailure,
    TlsInfo,
    TransportError,
)

__all__ = [
    "CERT_WARN_DAYS",
    "CHECK_ID",
    "OPTIONS_VERDICTS",
    "TRANSPORT_VERDICTS",
    "OptionsResult",
    "SipTarget",
    "Target",
    "Verdict",
    "assess_options",
    "check_options",
    "failure_outcome",
    "failure_values",
    "probe_options",
    "sip_targets",
]

log = logging.getLogger(__name__)

CHECK_ID = "sip.options"
CERT_WARN_DAYS = 14.0
"""A server certificate that expires sooner than this is worth a warning (renewal is overdue)."""
EXTRA_TIMEOUT_S = 1.0
"""Time allowed to each extra transport's probe: they are information, not the verdict."""
MAX_TARGETS = 3
"""Probe at most this many targets of the profile's transport (each silent one costs ``timeout_s``)."""


class SipTarget(Protocol):
    """Where to send SIP requests (what :func:`diagnostics.sip.dns.resolve_targets` returns)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def transport(self) -> Transport: ...
    @property
    def address(self) -> str: ...


@dataclass(frozen=True)
class Target:
    """A target named in the profile (``registrar``), resolved later by the OS resolver."""

    host: str
    port: int
    transport: Transport
    address: str


def sip_targets(ctx: CheckContext, profile: AccountProfile) -> list[SipTarget]:
    """The profile's registrar (no DNS), else RFC 3263 server location; raises ``DnsFailure`` when nothing resolves."""
    if profile.registrar is not None:
        port = profile.registrar.port or profile.transport.default_port
        return [Target(profile.registrar.host, port, profile.transport, profile.registrar.host)]
    from diagnostics.sip.dns import resolve_targets  # only without a registrar: needs dnspython and a DNS server

    return list(resolve_targets(ctx))


def _target_text(host: str, port: int, transport: Transport) -> str:
    return f"{transport.value}:{f'[{host}]' if ':' in host else host}:{port}"


# --------------------------------------------------------------------------- probe


@dataclass(frozen=True)
class OptionsResult:
    """One OPTIONS probe of one target."""

    target: str
    """``udp:127.0.0.1:5060``"""
    host: str
    port: int
    transport: Transport
    outcome: str
    """``answered``, or the failure: a :class:`~diagnostics.sip.transport.TransportError` outcome."""
    status: int | None = None
    reason: str | None = None
    rtt_ms: float | None = None
    server: str | None = None
    """The Server header: the server's software."""
    user_agent: str | None = None
    allow: tuple[str, ...] = ()
    tls: TlsInfo | None = None
    local: Address | None = None
    remote: Address | None = None
    detail: str | None = None
    """The failure in words (the exception text)."""
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def answered(self) -> bool:
        return self.outcome == "answered"

    def to_measurements(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "target": self.target,
            "transport": self.transport.value,
            "outcome": self.outcome,
            "status_code": self.status,
            "reason": self.reason,
            "rtt_ms": round(self.rtt_ms, 3) if self.rtt_ms is not None else None,
            "server": self.server,
            "user_agent": self.user_agent,
            "allow": list(self.allow),
            "local_address": str(self.local) if self.local else None,
            "remote_address": str(self.remote) if self.remote else None,
        }
        if self.detail:
            values["error"] = self.detail
        if self.tls is not None:
            values.update(self.tls.to_measurements())
        return values


def failure_outcome(exc: TransportError) -> str:
    """The verdict-table key of a transport failure: ``unreachable``, ``tls-expired`` ..."""
    return f"tls-{exc.cause}" if isinstance(exc, TlsFailure) else exc.outcome


def probe_options(
    host: str,
    port: int,
    transport: Transport,
    *,
    address: str | None = None,
    uri: str | None = None,
    from_uri: str | None = None,
    tls_ca_file: Path | None = None,
    tls_verify: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> OptionsResult:
    """Send one OPTIONS to ``transport:host:port`` (connecting to ``address`` when given); never raises
    for a network outcome: a failure is an :class:`OptionsResult` whose ``outcome`` names it."""
    connection = SipConnection(host, port, transport, address=address, timeout_s=timeout_s,
                               tls_ca_file=tls_ca_file, tls_verify=tls_verify)  # fmt: skip
    target = connection.target
    request_uri = uri or f"sip:{_host_text(host)}:{port};transport={transport.value}"
    try:
        with connection:
            assert connection.local is not None
            local = connection.local
            request = build_options(
                request_uri, transport=transport.value, local=local,
                from_uri=from_uri or f"sip:phonekit@{_host_text(local.host)}",
                contact=NameAddr(f"sip:phonekit@{local};transport={transport.value}"),
            )  # fmt: skip
            exchange = connection.exchange(request)
    except TransportError as exc:
        log.debug("OPTIONS %s: %s", target, exc)
        tls = exc.tls if isinstance(exc, TlsFailure) else connection.tls
        return OptionsResult(target, host, port, transport, failure_outcome(exc), tls=tls, detail=exc.reason,
                             local=connection.local, remote=connection.remote, timeout_s=timeout_s)  # fmt: skip
    response = exchange.response
    return OptionsResult(
        target, host, port, transport, "answered",
        status=response.status, reason=response.reason, rtt_ms=exchange.rtt_ms,
        server=response.headers.get("Server"), user_agent=response.headers.get("User-Agent"),
        allow=tuple(response.headers.values("Allow")), tls=connection.tls,
        local=exchange.local, remote=exchange.remote, timeout_s=timeout_s,
    )  # fmt: skip


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Verdict:
    """A verdict row: ``summary`` and ``remedy`` are format strings over :func:`failure_values`."""

    status: Status
    summary: str
    remedy: str | None = None


TRANSPORT_VERDICTS: Mapping[str, Verdict] = {
    "unresolved": Verdict(
        Status.FAIL, "{target}: the server name does not resolve ({detail})",
        "check the registrar in the profile for typos, and this computer's DNS settings",
    ),
    "unreachable": Verdict(
        Status.FAIL, "{target}: refused at once ({detail})",
        "nothing accepts SIP at that address and port, or a firewall rejects it: check account.registrar and "
        "account.transport against the provider's settings, and that the server is running",
    ),
    "no-answer": Verdict(
        Status.FAIL, "{target}: no answer within {timeout_s:g} s",
        "wrong server or port, or a firewall silently drops SIP: check account.registrar and account.transport; "
        "if UDP 5060 is blocked on this network, try TCP or TLS",
    ),
    "malformed": Verdict(
        Status.FAIL, "{target}: something answered, but not with usable SIP ({detail})",
        "the port runs another service, or a middlebox mangles SIP: check the port; TLS keeps middleboxes out",
    ),
    "tls-expired": Verdict(
        Status.FAIL, "{target}: the server's TLS certificate expired on {not_after} ({subject})",
        "the server's certificate must be renewed (tell the provider or server admin); "
        "if it should still be valid, check this computer's date and clock",
    ),
    "tls-not-yet-valid": Verdict(
        Status.FAIL, "{target}: the server's TLS certificate is not valid yet (from {not_before})",
        "check this computer's date and clock; if they are right, the server's certificate is dated in the future",
    ),
    "tls-hostname-mismatch": Verdict(
        Status.FAIL, "{target}: the server's TLS certificate is not for '{host}' (it names {san})",
        "use the name the certificate carries as registrar (or domain) in the profile, "
        "or have the server's certificate issued for '{host}'",
    ),
    "tls-untrusted": Verdict(
        Status.FAIL, "{target}: the server's TLS certificate is not from a trusted CA ({detail})",
        "install the CA that signed the server's certificate: set tls.ca_file in the profile to its PEM file "
        "(or add it to the system's trust store)",
    ),
    "tls-handshake": Verdict(
        Status.FAIL, "{target}: the TLS handshake failed ({detail})",
        "check that this port speaks TLS (usually 5061) and that the server accepts TLS 1.2 or newer",
    ),
}
"""Why a request got no final response, and what to do; shared by ``sip.options`` and ``sip.register``."""

OPTIONS_VERDICTS: Mapping[str, Verdict] = {
    "answered": Verdict(Status.PASS, "{target} answers: {status} {reason} in {rtt_ms:.1f} ms"),
    "answered-cert-expiring": Verdict(
        Status.WARN, "{target} answers ({status} {reason}, {rtt_ms:.1f} ms), but its TLS certificate expires "
        "in {days_left:.0f} days ({not_after})",
        "the server's certificate must be renewed before {not_after} (tell the provider or server admin)",
    ),
    "partly-answered": Verdict(
        Status.WARN, "{answered} of {probed} servers answer; {target} does not: {failure}",
        "phones fail over to the next server, but slowly: tell the provider that {target} does not answer",
    ),
    **TRANSPORT_VERDICTS,
}


def failure_values(target: str, host: str, detail: str | None, tls: TlsInfo | None,
                   timeout_s: float) -> dict[str, Any]:  # fmt: skip
    """The values a :class:`Verdict` row may name."""
    return {
        "target": target,
        "host": host,
        "detail": detail or "",
        "timeout_s": timeout_s,
        "subject": (tls.subject if tls else None) or "unknown subject",
        "san": ", ".join(tls.san) if tls and tls.san else "no names",
        "not_before": tls.not_before.date().isoformat() if tls and tls.not_before else "?",
        "not_after": tls.not_after.date().isoformat() if tls and tls.not_after else "?",
        "days_left": tls.days_left if tls and tls.days_left is not None else float("nan"),
    }


def _key(result: OptionsResult) -> str:
    if result.answered and result.tls and result.tls.days_left is not None and result.tls.days_left < CERT_WARN_DAYS:
        return "answered-cert-expiring"
    return result.outcome


def _values(result: OptionsResult) -> dict[str, Any]:
    return {
        **failure_values(result.target, result.host, result.detail, result.tls, result.timeout_s),
        "status": result.status,
        "reason": result.reason,
        "rtt_ms": result.rtt_ms,
    }


def assess_options(results: Sequence[OptionsResult], extras: Sequence[OptionsResult] = ()) -> CheckResult:
    """Verdict over the probes of every target (best first) and the extra transports' probes."""
    if not results:
        raise ValueError("assess_options needs at least one probe result")
    answered = [r for r in results if r.answered]
    main = answered[0] if answered else results[0]
    key, values = _key(main), _values(main)
    if answered and len(answered) < len(results) and key == "answered":
        failed = next(r for r in results if not r.answered)
        key = "partly-answered"
        values = {**_values(failed), "answered": len(answered), "probed": len(results),
                  "failure": OPTIONS_VERDICTS[failed.outcome].summary.format(**_values(failed))}  # fmt: skip
    row = OPTIONS_VERDICTS[key]
    measurements = main.to_measurements()
    if len(results) > 1:
        measurements["targets"] = [r.to_measurements() for r in results]
    if extras:
        measurements["other_transports"] = {r.transport.value: r.to_measurements() for r in extras}
    return CheckResult(
        CHECK_ID, row.status, row.summary.format(**values), measurements,
        remedy=row.remedy.format(**values) if row.remedy else None,
    )  # fmt: skip


# --------------------------------------------------------------------------- the check


def _sibling_port(port: int, source: Transport, wanted: Transport) -> int:
    """SIP's convention: UDP and TCP share a port, TLS listens one above (5060/5061)."""
    tls_offset = {Transport.UDP: 0, Transport.TCP: 0, Transport.TLS: 1}
    return port - tls_offset[source] + tls_offset[wanted]


def _extra_targets(profile: AccountProfile, first: SipTarget, targets: Sequence[SipTarget]) -> list[SipTarget]:
    """One target per other transport: from DNS when it offered them, else by the port convention."""
    extras: list[SipTarget] = []
    for transport in Transport:
        if transport is profile.transport:
            continue
        offered = next((t for t in targets if t.transport is transport), None)
        if offered is not None:
            extras.append(offered)
        elif profile.registrar is not None:
            port = _sibling_port(first.port, first.transport, transport)
            extras.append(Target(first.host, port, transport, first.address))
    return extras


def _probe(target: SipTarget, profile: AccountProfile, timeout_s: float) -> OptionsResult:
    return probe_options(
        target.host, target.port, target.transport, address=target.address or None,
        from_uri=f"sip:{profile.user}@{profile.domain}",
        tls_ca_file=profile.tls_ca_file, tls_verify=profile.tls_verify, timeout_s=timeout_s,
    )  # fmt: skip


def check_options(ctx: CheckContext, timeout_s: float = DEFAULT_TIMEOUT_S) -> CheckResult:
    profile = profile_of(ctx)
    if profile is None:
        return needs_profile(CHECK_ID)
    from diagnostics.sip.dns import DnsFailure

    try:
        targets = sip_targets(ctx, profile)
    except DnsFailure as exc:
        return CheckResult(CHECK_ID, Status.FAIL, str(exc), {"dns_cause": exc.cause.value}, remedy=exc.remedy)
    if not targets:
        raise MeasurementError(f"{CHECK_ID}: no SIP server to probe for {profile.domain}",
                               remedy="set account.registrar in the profile")  # fmt: skip
    primary = [t for t in targets if t.transport is profile.transport] or list(targets)
    results = [_probe(t, profile, timeout_s) for t in primary[:MAX_TARGETS]]
    extras: list[OptionsResult] = []
    if results[0].answered:
        extra_timeout_s = min(timeout_s, EXTRA_TIMEOUT_S)
        extras = [_probe(t, profile, extra_timeout_s) for t in _extra_targets(profile, primary[0], targets)]
    return assess_options(results, extras)
