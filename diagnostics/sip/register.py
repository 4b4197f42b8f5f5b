"""Check ``sip.register``: can this account register, and if not, why? (RFC 3261 §10)

:func:`register` does what a phone does at start-up: REGISTER, answer the digest
challenge (401 from a registrar, 407 from a proxy; RFC 3261 §22.2, §22.3), and
then, unlike a phone, removes its own binding again (``Expires: 0`` for exactly
our Contact, never ``Contact: *``, which would log out the user's real phones),
so a check leaves nothing behind.

Why it failed is read off the final response with :data:`STATUS_OUTCOMES`, then
:data:`REGISTER_VERDICTS` turns the outcome into a status, a summary and a remedy.
Kamailio (and most servers) re-challenge a wrong password *and* an unknown user
with another 401, so the two cannot be told apart from outside.

The password comes only from ``profile.password`` (a :class:`~diagnostics.secret.Secret`)
and only :mod:`diagnostics.sip.digest` reveals it, to hash it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from diagnostics.checks import CheckContext
from diagnostics.errors import MeasurementError
from diagnostics.profile import AccountProfile, Transport, needs_profile, profile_of
from diagnostics.report import CheckResult, Status
from diagnostics.secret import Secret
from diagnostics.sip import digest
from diagnostics.sip.message import Address, NameAddr, Request, Response, build_register, new_call_id, new_tag, param
from diagnostics.sip.options import TRANSPORT_VERDICTS, SipTarget, Verdict, failure_outcome, failure_values, sip_targets
from diagnostics.sip.transport import DEFAULT_TIMEOUT_S, Exchange, SipConnection, TlsFailure, TlsInfo, TransportError

__all__ = [
    "BINDING_PARAM",
    "CHECK_ID",
    "REGISTER_VERDICTS",
    "STATUS_OUTCOMES",
    "RegisterParams",
    "RegisterResult",
    "assess_register",
    "check_register",
    "register",
    "registration_of",
]

log = logging.getLogger(__name__)

CHECK_ID = "sip.register"
BINDING_PARAM = "pkid"
"""A Contact URI parameter with a random value: finds our own binding among the user's others in the 200 OK."""
EXPIRES_S = 60
"""Asked binding lifetime: short, so a binding we fail to remove is gone within a minute."""
MAX_REQUESTS = 5
"""REGISTERs per registration at most: challenge, a proxy's challenge, stale nonce, 423 Interval Too Brief."""
MAX_TARGETS = 3


@dataclass(frozen=True)
class RegisterParams:
    """Everything one registration needs; :meth:`from_profile` fills it from an account profile."""

    host: str
    port: int
    transport: Transport
    user: str
    domain: str
    password: Secret = field(repr=False)
    auth_user: str = ""
    display_name: str = ""
    address: str | None = None
    """IP to connect to when DNS already resolved ``host``."""
    tls_ca_file: Path | None = None
    tls_verify: bool = True
    expires_s: int = EXPIRES_S
    unregister: bool = True
    """Remove the binding again after a successful registration."""

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    @property
    def digest_user(self) -> str:
        return self.auth_user or self.user

    @classmethod
    def from_profile(cls, profile: AccountProfile, target: SipTarget) -> RegisterParams:
        return cls(
            host=target.host, port=target.port, transport=target.transport, user=profile.user,
            domain=profile.domain, password=profile.password, auth_user=profile.auth_user,
            display_name=profile.display_name, address=target.address or None, tls_ca_file=profile.tls_ca_file,
            tls_verify=profile.tls_verify,
        )  # fmt: skip


@dataclass(frozen=True)
class RegisterResult:
    """How one registration went."""

    target: str
    """``udp:127.0.0.1:5060``"""
    host: str
    port: int
    transport: Transport
    address: str | None
    aor: str
    auth_user: str
    outcome: str
    """A key of :data:`REGISTER_VERDICTS`."""
    status: int | None = None
    reason: str | None = None
    duration_ms: float | None = None
    """From the first REGISTER sent to the final response of the last one (challenges included)."""
    connect_ms: float | None = None
    """Opening the connection (TCP connect, TLS handshake) before that."""
    requests: int = 0
    realm: str | None = None
    algorithm: str | None = None
    qop: str | None = None
    contact: NameAddr | None = None
    """The Contact we registered."""
    bindings: tuple[NameAddr, ...] = ()
    """Every Contact the registrar listed in its 2xx: the user's bindings (ours among them)."""
    expires_s: int | None = None
    """The lifetime the registrar granted our binding."""
    unregistered: bool | None = None
    """Our binding was removed again (None: not attempted)."""
    unregister_detail: str | None = None
    server: str | None = None
    exchange: Exchange | None = field(default=None, repr=False, compare=False)
    """The last REGISTER and its final response, byte for byte (SIP ALG detection reads them)."""
    local: Address | None = None
    remote: Address | None = None
    tls: TlsInfo | None = None
    detail: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def registered(self) -> bool:
        return self.outcome == "registered"

    @property
    def own_binding(self) -> NameAddr | None:
        """Our binding in the 2xx, found by its :data:`BINDING_PARAM`, as the registrar stored it."""
        if self.contact is None:
            return None
        token = param(self.contact.sip_uri.params, BINDING_PARAM)
        for binding in self.bindings:
            try:
                if param(binding.sip_uri.params, BINDING_PARAM) == token:
                    return binding
            except ValueError:  # a tel: or otherwise odd binding of another device
                continue
        return None

    def to_measurements(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "target": self.target,
            "aor": self.aor,
            "auth_user": self.auth_user,
            "outcome": self.outcome,
            "status_code": self.status,
            "reason": self.reason,
            "register_ms": round(self.duration_ms, 3) if self.duration_ms is not None else None,
            "connect_ms": round(self.connect_ms, 3) if self.connect_ms is not None else None,
            "requests": self.requests,
            "realm": self.realm,
            "digest_algorithm": self.algorithm,
            "digest_qop": self.qop,
            "contact": str(self.contact) if self.contact else None,
            "binding_count": len(self.bindings),
            "expires_s": self.expires_s,
            "unregistered": self.unregistered,
            "server": self.server,
            "local_address": str(self.local) if self.local else None,
            "remote_address": str(self.remote) if self.remote else None,
        }
        if self.exchange is not None:
            via = self.exchange.response.top_via
            values["via_received"] = via.received
            values["via_rport"] = via.rport
        if self.detail:
            values["error"] = self.detail
        if self.unregister_detail:
            values["unregister_error"] = self.unregister_detail
        if self.tls is not None:
            values.update(self.tls.to_measurements())
        return values


# --------------------------------------------------------------------------- causes

STATUS_OUTCOMES: Mapping[int, str] = {
    401: "auth-rejected",
    403: "forbidden",
    404: "not-found",
    407: "auth-rejected",
    408: "timeout",
    423: "interval-too-brief",
    480: "unavailable",
    500: "server-error",
    503: "unavailable",
    504: "timeout",
}
"""Final response codes with a cause of their own; other 2xx register, 3xx redirect, the rest are rejected."""

_CLASS_OUTCOMES = {2: "registered", 3: "redirected"}

REGISTER_VERDICTS: Mapping[str, Verdict] = {
    "registered": Verdict(
        Status.PASS, "registered {aor} at {target} in {duration_ms:.1f} ms ({status} {reason}); test binding removed",
    ),
    "registered-not-removed": Verdict(
        Status.WARN, "registered {aor} at {target} in {duration_ms:.1f} ms, but removing the test binding failed "
        "({unregister_detail})",
        "nothing to do: the test binding expires by itself within {expires_s} s; until then a call may also "
        "ring at this test's address",
    ),
    "auth-rejected": Verdict(
        Status.FAIL, "{target} refused the credentials of '{auth_user}' ({status} {reason} after answering the "
        "challenge of realm '{realm}'): wrong password, or the user/auth user is unknown to the server",
        "check the password (the profile's password source) and account.auth_user / account.user against the "
        "provider's settings; passwords are case-sensitive",
    ),
    "forbidden": Verdict(
        Status.FAIL, "{target} answered {status} {reason}: the identity or realm does not match the credentials, "
        "or the account is disabled",
        "check account.user, account.domain (the provider's SIP domain/realm) and account.auth_user; if they are "
        "right, ask the provider whether the account is enabled",
    ),
    "not-found": Verdict(
        Status.FAIL, "{target} answered {status} {reason}: the server does not know the user or domain of {aor}",
        "check account.user and account.domain against the provider's settings",
    ),
    "timeout": Verdict(
        Status.FAIL, "{target}: no final answer to REGISTER ({answer})",
        "wrong server or port, or a firewall drops SIP: check account.registrar and account.transport; "
        "if UDP 5060 is blocked on this network, try TCP or TLS",
    ),
    "unavailable": Verdict(
        Status.FAIL, "{target} answered {status} {reason}: the server is unavailable (overloaded or in maintenance)",
        "try again in a few minutes; if it persists, tell the provider (their server answers {status})",
    ),
    "server-error": Verdict(
        Status.FAIL, "{target} answered {status} {reason}: the server failed",
        "tell the provider: their server fails to handle the registration ({status} {reason})",
    ),
    "interval-too-brief": Verdict(
        Status.FAIL, "{target} answered {status} {reason} even for the interval it asked for",
        "tell the provider: their registrar rejects every registration interval",
    ),
    "redirected": Verdict(
        Status.FAIL, "{target} redirects the registration ({status} {reason}) to {redirect}",
        "set account.registrar to the server it names ({redirect})",
    ),
    "rejected": Verdict(
        Status.FAIL, "{target} refused REGISTER: {status} {reason}",
        "tell the provider the server refuses the registration with {status} {reason}",
    ),
    "unsupported-auth": Verdict(
        Status.FAIL, "{target} asks for authentication phonekit cannot answer ({detail})",
        "ask the provider for Digest authentication with MD5 or SHA-256",
    ),
    **{key: row for key, row in TRANSPORT_VERDICTS.items() if key != "no-answer"},
}
"""Outcome -> (status, summary, remedy); the network rows are ``sip.options``'s."""

_TRANSPORT_ALIASES = {"no-answer": "timeout"}  # "408 or no answer at all": one cause


def _status_outcome(status: int) -> str:
    return STATUS_OUTCOMES.get(status) or _CLASS_OUTCOMES.get(status // 100, "rejected")


# --------------------------------------------------------------------------- the registration


class _Credentials:
    """The challenges answered, per header (Authorization, Proxy-Authorization), with their nonce counts."""

    def __init__(self, params: RegisterParams) -> None:
        self.params = params
        self.answered: dict[str, tuple[digest.Challenge, int]] = {}
        self.tried: set[str] = set()
        """Headers answered in the current transaction chain: a second challenge there refuses our credentials."""

    def take(self, response: Response) -> bool:
        """Learn the 401/407's challenge; False when it re-challenges credentials already sent in this chain.

        A ``stale`` challenge (RFC 7616 §3.3) only says the nonce expired: answered again.
        """
        proxy = response.status == 407
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        offered = [c for value in response.headers.get_all(name) for c in digest.parse_challenges(value, proxy=proxy)]
        challenge = digest.choose(offered)
        if challenge.header_name in self.tried and not challenge.stale:
            return False
        self.tried.add(challenge.header_name)
        self.answered[challenge.header_name] = (challenge, 0)
        return True

    def headers(self, method: str, uri: str) -> list[tuple[str, str]]:
        """Authorization headers for the next request (the nonce count grows per use, RFC 7616 §3.4)."""
        out = []
        for name, (challenge, count) in list(self.answered.items()):
            self.answered[name] = (challenge, count + 1)
            value = digest.authorization(challenge, method, uri, self.params.digest_user, self.params.password,
                                         nc=count + 1)  # fmt: skip
            out.append((name, value))
        return out

    @property
    def first(self) -> digest.Challenge | None:
        return next((c for c, _ in self.answered.values()), None)


@dataclass
class _Registration:
    """One binding's REGISTERs (RFC 3261 §10.2: one Call-ID and From tag, a growing CSeq)."""

    params: RegisterParams
    connection: SipConnection
    contact: NameAddr
    call_id: str
    credentials: _Credentials
    tag: str = field(default_factory=new_tag)
    cseq: int = 0
    requests: int = 0

    def request(self, expires_s: int) -> Request:
        assert self.connection.local is not None
        self.cseq += 1
        self.requests += 1
        uri = f"sip:{self.params.domain}"
        return build_register(
            uri, self.params.aor, transport=self.params.transport.value, local=self.connection.local,
            contact=self.contact, expires=expires_s, call_id=self.call_id, tag=self.tag, cseq=self.cseq,
            display_name=self.params.display_name, authorization=self.credentials.headers("REGISTER", uri),
        )  # fmt: skip

    def run(self, expires_s: int) -> Exchange:
        """REGISTER until a final answer that is not a challenge we can answer (or a 423 we can fix)."""
        self.credentials.tried.clear()
        while True:
            exchange = self.connection.exchange(self.request(expires_s))
            response = exchange.response
            if self.requests >= MAX_REQUESTS:
                return exchange
            if response.status in (401, 407):
                if not self.credentials.take(response):
                    return exchange  # our credentials were refused
                continue
            min_expires = response.headers.get("Min-Expires") or ""
            if response.status == 423 and expires_s > 0 and min_expires.isdigit() and int(min_expires) > expires_s:
                expires_s = int(min_expires)  # RFC 3261 §10.2.8 (never when removing: that would re-register)
                continue
            return exchange


def _granted(response: Response, binding: NameAddr | None) -> int | None:
    value = param(binding.params, "expires") if binding is not None else None
    value = value or response.headers.get("Expires")
    return int(value) if value and value.isdigit() else None


def register(params: RegisterParams, timeout_s: float = DEFAULT_TIMEOUT_S) -> RegisterResult:
    """Register ``params.aor`` at ``params``' server and (by default) remove the binding again.

    Never raises for a network or SIP outcome: the result's ``outcome`` names it.
    """
    connection = SipConnection(params.host, params.port, params.transport, address=params.address,
                               timeout_s=timeout_s, tls_ca_file=params.tls_ca_file,
                               tls_verify=params.tls_verify)  # fmt: skip
    base = RegisterResult(connection.target, params.host, params.port, params.transport, params.address,
                          params.aor, params.digest_user, "rejected", timeout_s=timeout_s)  # fmt: skip
    started = time.perf_counter()
    try:
        connection.open()
    except TransportError as exc:
        return _failed(base, exc, connection)
    connect_ms = (time.perf_counter() - started) * 1000.0
    try:
        return _register_open(params, connection, replace(base, connect_ms=connect_ms, tls=connection.tls))
    finally:
        connection.close()


def _failed(base: RegisterResult, exc: TransportError, connection: SipConnection, **more: Any) -> RegisterResult:
    log.debug("REGISTER %s: %s", base.target, exc)
    outcome = failure_outcome(exc)
    tls = exc.tls if isinstance(exc, TlsFailure) else connection.tls
    return replace(base, outcome=_TRANSPORT_ALIASES.get(outcome, outcome), detail=exc.reason, tls=tls,
                   local=connection.local, remote=connection.remote, **more)  # fmt: skip


def _register_open(params: RegisterParams, connection: SipConnection, base: RegisterResult) -> RegisterResult:
    assert connection.local is not None
    contact_uri = (f"sip:{params.user}@{connection.local};transport={params.transport.value}"
                   f";{BINDING_PARAM}={secrets.token_hex(6)}")  # fmt: skip
    contact = NameAddr(contact_uri)
    credentials = _Credentials(params)
    dialog = _Registration(params, connection, contact, new_call_id(connection.local.host), credentials)
    base = replace(base, contact=contact, local=connection.local, remote=connection.remote)
    started = time.perf_counter()
    try:
        exchange = dialog.run(params.expires_s)
    except TransportError as exc:
        return _failed(base, exc, connection, requests=dialog.requests)
    except digest.DigestError as exc:
        return replace(base, outcome="unsupported-auth", detail=str(exc), requests=dialog.requests)
    duration_ms = (time.perf_counter() - started) * 1000.0
    response = exchange.response
    challenge = credentials.first
    result = replace(
        base, outcome=_status_outcome(response.status), status=response.status, reason=response.reason,
        duration_ms=duration_ms, requests=dialog.requests, exchange=exchange,
        realm=challenge.realm if challenge else None, algorithm=challenge.algorithm if challenge else None,
        qop=next((q for q in ("auth", "auth-int") if challenge and q in challenge.qop), None),
        server=response.headers.get("Server"), bindings=response.contacts if response.status // 100 == 2 else (),
    )  # fmt: skip
    if not result.registered:
        return result
    result = replace(result, expires_s=_granted(response, result.own_binding))
    if not params.unregister:
        return result
    return _unregister(dialog, result)


def _unregister(dialog: _Registration, result: RegisterResult) -> RegisterResult:
    """Remove exactly our binding (Expires: 0 with our Contact; RFC 3261 §10.2.2)."""
    try:
        exchange = dialog.run(0)
    except (TransportError, digest.DigestError) as exc:
        result = replace(result, requests=dialog.requests)
        log.debug("unregistering %s failed: %s", result.target, exc)
        detail = exc.reason if isinstance(exc, TransportError) else str(exc)
        return replace(result, unregistered=False, unregister_detail=detail, outcome="registered-not-removed")
    result = replace(result, requests=dialog.requests)
    status = exchange.response.status
    if status // 100 != 2:
        detail = f"{status} {exchange.response.reason}"
        return replace(result, unregistered=False, unregister_detail=detail, outcome="registered-not-removed")
    return replace(result, unregistered=True)


# --------------------------------------------------------------------------- verdict and check


def assess_register(result: RegisterResult) -> CheckResult:
    row = REGISTER_VERDICTS[result.outcome]
    redirect = result.exchange.response.headers.get("Contact") if result.exchange else None
    values = {
        **failure_values(result.target, result.host, result.detail, result.tls, result.timeout_s),
        "aor": result.aor,
        "auth_user": result.auth_user,
        "status": result.status,
        "reason": result.reason,
        "realm": result.realm or "?",
        "duration_ms": result.duration_ms if result.duration_ms is not None else float("nan"),
        "expires_s": result.expires_s or EXPIRES_S,
        "unregister_detail": result.unregister_detail or "",
        "redirect": redirect or "no Contact given",
        "answer": f"answered {result.status} {result.reason}" if result.status is not None
        else f"nothing came back within {result.timeout_s:g} s",
    }  # fmt: skip
    return CheckResult(
        CHECK_ID, row.status, row.summary.format(**values), result.to_measurements(),
        remedy=row.remedy.format(**values) if row.remedy else None,
    )  # fmt: skip


def registration_of(ctx: CheckContext, timeout_s: float = DEFAULT_TIMEOUT_S) -> RegisterResult | CheckResult:
    """The run's registration attempt (done once, shared with ``network.sip_alg``), or the verdict that
    stopped it before it began (no profile, DNS failure)."""
    cached = ctx.cache.get(CHECK_ID)
    if isinstance(cached, RegisterResult | CheckResult):
        return cached
    outcome = _registration(ctx, timeout_s)
    ctx.cache[CHECK_ID] = outcome
    return outcome


def _registration(ctx: CheckContext, timeout_s: float) -> RegisterResult | CheckResult:
    profile = profile_of(ctx)
    if profile is None:
        return needs_profile(CHECK_ID)
    from diagnostics.sip.dns import DnsFailure

    try:
        targets = sip_targets(ctx, profile)
    except DnsFailure as exc:
        return CheckResult(CHECK_ID, Status.FAIL, str(exc), {"outcome": "dns", "dns_cause": exc.cause.value},
                           remedy=exc.remedy)  # fmt: skip
    primary = [t for t in targets if t.transport is profile.transport] or list(targets)
    if not primary:
        raise MeasurementError(f"{CHECK_ID}: no SIP server to register at for {profile.domain}",
                               remedy="set account.registrar in the profile")  # fmt: skip
    result: RegisterResult | None = None
    for target in primary[:MAX_TARGETS]:  # like a phone: the next server only when this one is unreachable
        result = register(RegisterParams.from_profile(profile, target), timeout_s)
        if result.status is not None:
            break
    assert result is not None
    return result


def check_register(ctx: CheckContext, timeout_s: float = DEFAULT_TIMEOUT_S) -> CheckResult:
    outcome = registration_of(ctx, timeout_s)
    return outcome if isinstance(outcome, CheckResult) else assess_register(outcome)
