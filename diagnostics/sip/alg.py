"""Check ``network.sip_alg``: does something on the path rewrite our SIP messages?

A SIP ALG (router "SIP helper", "SIP fixup") rewrites the addresses inside SIP
messages: the Contact, the Via, the SDP's ``c=``/``o=``/``m=`` lines. Softphones
that handle NAT themselves (rport, STUN, ICE) then break: one-way audio, calls
that drop after 30 s, registrations that vanish. The only way to see it from the
client is to compare what we sent with what arrived. Evidence, strongest first:

* a **reflector**: OPTIONS with an SDP body to ``sip:reflect@domain``; a server
  that offers it (the test bed's Kamailio does) answers ``200`` with the request
  exactly as it arrived as a ``message/sipfrag`` body. Any server without it
  answers something else and this evidence is simply absent.
* the **registrar**: the 2xx to REGISTER lists the bindings as stored (RFC 3261
  §10.3 step 8); ours is found by its ``pkid`` Contact parameter. (A registrar
  may also rewrite a Contact itself for NAT, so without a reflector a changed
  binding is a warning, not a failure.)
* the response's **Via** (RFC 3261 §18.2.1, RFC 3581): ``received``/``rport``
  show the address the server saw. Different from our sent-by means NAT, which is
  normal and fine as long as the Contact and SDP arrive intact.

Consumer ALGs often touch only INVITEs; an OPTIONS passes some untouched, so a
clean result here is good evidence, not proof.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from diagnostics.checks import CheckContext
from diagnostics.profile import AccountProfile, needs_profile, profile_of
from diagnostics.report import CheckResult, Status
from diagnostics.sip.message import Address, NameAddr, ParseError, Request, Response, build_options, parse
from diagnostics.sip.options import SipTarget, Target, Verdict
from diagnostics.sip.register import RegisterResult, registration_of
from diagnostics.sip.transport import DEFAULT_TIMEOUT_S, SipConnection, TransportError

__all__ = [
    "ALG_VERDICTS",
    "CHECK_ID",
    "REFLECTOR_USER",
    "AlgEvidence",
    "Comparison",
    "NatEvidence",
    "ReflectorProbe",
    "assess_alg",
    "check_sip_alg",
    "compare_reflection",
    "compare_registration",
    "gather",
    "message_fields",
    "nat_evidence",
    "probe_reflector",
    "sdp_offer",
]

log = logging.getLogger(__name__)

CHECK_ID = "network.sip_alg"
REFLECTOR_USER = "reflect"
"""The reflector's user part (tests/testbed/kamailio.cfg.tmpl, ``route[REFLECTOR]``)."""
SIPFRAG = "message/sipfrag"


# --------------------------------------------------------------------------- what we compare


def _sdp_lines(body: bytes, kind: str) -> list[str]:
    text = body.decode("utf-8", errors="replace")
    return [line[2:].strip() for line in text.splitlines() if line.startswith(f"{kind}=")]


def _sdp_origin(line: str) -> str:
    parts = line.split()  # o=<user> <sess-id> <sess-version> <nettype> <addrtype> <address> (RFC 4566 §5.2)
    return " ".join(parts[3:6]) if len(parts) >= 6 else line


def _sdp_media(line: str) -> str:
    parts = line.split()  # m=<media> <port> <proto> <fmt> ... (RFC 4566 §5.14): the media and its port
    return " ".join(parts[:2])


@dataclass(frozen=True)
class _Field:
    label: str
    """How the summary names it."""
    read: Callable[[Request], str | None]
    """The field's value in a request (None: not there)."""


_FIELDS: Mapping[str, _Field] = {
    "via_sent_by": _Field("Via", lambda m: m.top_via.sent_by if m.headers.get("Via") else None),
    "contact": _Field("Contact", lambda m: ", ".join(c.uri for c in m.contacts) or None),
    "sdp_connection": _Field("SDP c=", lambda m: " | ".join(_sdp_lines(m.body, "c")) or None),
    "sdp_origin": _Field("SDP o=", lambda m: " | ".join(_sdp_origin(x) for x in _sdp_lines(m.body, "o")) or None),
    "sdp_media": _Field("SDP m=", lambda m: " | ".join(_sdp_media(x) for x in _sdp_lines(m.body, "m")) or None),
}
"""The fields an ALG rewrites, by measurement name, in the order a summary lists them."""


def message_fields(request: Request) -> dict[str, str | None]:
    return {name: spec.read(request) for name, spec in _FIELDS.items()}


@dataclass(frozen=True)
class Comparison:
    """One field as we sent it and as the far end saw it."""

    source: str
    """``reflector`` (the request as it arrived) or ``registrar`` (the binding / the response's Via)."""
    field: str
    sent: str
    seen: str | None
    """None: the field did not come back (no conclusion)."""

    @property
    def rewritten(self) -> bool:
        return self.seen is not None and self.seen != self.sent

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "field": self.field, "sent": self.sent, "seen": self.seen,
                "rewritten": self.rewritten}  # fmt: skip


def compare_reflection(sent: Request, reflected: Request) -> tuple[Comparison, ...]:
    """Every ALG field we sent, compared with the reflected request."""
    ours, theirs = message_fields(sent), message_fields(reflected)
    return tuple(
        Comparison("reflector", name, value, theirs[name]) for name, value in ours.items() if value is not None
    )


@dataclass(frozen=True)
class NatEvidence:
    """Our Via sent-by and what the server saw (RFC 3581 ``received``/``rport``)."""

    sent_by: Address
    received: str | None
    rport: int | None

    @property
    def public(self) -> Address:
        return Address(self.received or self.sent_by.host, self.rport or self.sent_by.port)

    @property
    def translated(self) -> bool:
        return self.public != self.sent_by


def nat_evidence(sent: Request, response: Response) -> NatEvidence | None:
    """What the server saw of our source address, from the response's Via that carries our branch."""
    ours = sent.top_via
    via = next((v for v in response.vias if v.branch == ours.branch), None)
    if via is None or ours.port is None:
        return None
    return NatEvidence(Address(ours.host, ours.port), via.received, via.rport)


def compare_registration(result: RegisterResult) -> tuple[Comparison, ...]:
    """Our Contact against the binding the registrar stored, and our Via against the response's."""
    if result.exchange is None:
        return ()
    sent, response = result.exchange.request, result.exchange.response
    out = []
    via = next((v for v in response.vias if v.branch == sent.top_via.branch), None)
    out.append(Comparison("registrar", "via_sent_by", sent.top_via.sent_by, via.sent_by if via else None))
    if result.contact is not None and response.status // 100 == 2:
        binding = result.own_binding
        seen = _hostport(binding) if binding else None
        out.append(Comparison("registrar", "contact", _hostport(result.contact), seen))
    return tuple(out)


def _hostport(contact: NameAddr) -> str:
    try:
        return contact.sip_uri.hostport
    except ParseError:
        return contact.uri


# --------------------------------------------------------------------------- the reflector probe


def sdp_offer(local: Address, rtp_port: int) -> bytes:
    """A plain audio offer naming our address (RFC 4566), as a phone would put in an INVITE."""
    family = "IP6" if ":" in local.host else "IP4"
    session = secrets.randbelow(2**31)
    return (
        "v=0\r\n"
        f"o=phonekit {session} 1 IN {family} {local.host}\r\n"
        "s=phonekit\r\n"
        f"c=IN {family} {local.host}\r\n"
        "t=0 0\r\n"
        f"m=audio {rtp_port} RTP/AVP 0 8 101\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=sendrecv\r\n"
    ).encode()


@dataclass(frozen=True)
class ReflectorProbe:
    """The reflector OPTIONS: what we sent, what came back, and whether it was a reflection."""

    status: str
    """``used``, or why not: ``not offered (404 Not Found)``, ``unreachable: …``."""
    sent: Request | None = None
    reflected: Request | None = None
    response: Response | None = None

    @property
    def used(self) -> bool:
        return self.reflected is not None


def probe_reflector(target: SipTarget, profile: AccountProfile, timeout_s: float = DEFAULT_TIMEOUT_S) -> ReflectorProbe:
    """Send OPTIONS with an SDP offer to ``sip:reflect@domain`` and read the reflection, if the server offers one."""
    connection = SipConnection(target.host, target.port, target.transport, address=target.address or None,
                               timeout_s=timeout_s, tls_ca_file=profile.tls_ca_file,
                               tls_verify=profile.tls_verify)  # fmt: skip
    transport = target.transport.value
    try:
        with connection:
            assert connection.local is not None
            local = connection.local
            request = build_options(
                f"sip:{REFLECTOR_USER}@{profile.domain}", transport=transport, local=local,
                from_uri=f"sip:{profile.user}@{profile.domain}",
                contact=NameAddr(f"sip:{profile.user}@{local};transport={transport}"),
                body=sdp_offer(local, profile.rtp_ports[0]), content_type="application/sdp",
            )  # fmt: skip
            exchange = connection.exchange(request)
    except TransportError as exc:
        return ReflectorProbe(f"{exc.outcome}: {exc.reason}")
    response = exchange.response
    content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if response.status != 200 or content_type != SIPFRAG:
        return ReflectorProbe(f"not offered ({response.status} {response.reason})", request, response=response)
    try:
        reflected = parse(response.body)
    except ParseError as exc:
        return ReflectorProbe(f"unusable reflection: {exc}", request, response=response)
    if not isinstance(reflected, Request):
        return ReflectorProbe("unusable reflection: the body is a response", request, response=response)
    return ReflectorProbe("used", request, reflected, response)


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class AlgEvidence:
    comparisons: tuple[Comparison, ...]
    nat: NatEvidence | None
    reflector: str
    """``used`` or why it was not."""
    registration: str
    """The registration's outcome (``registered``, ``auth-rejected``, …) or why there was none."""

    @property
    def rewritten(self) -> tuple[Comparison, ...]:
        return tuple(c for c in self.comparisons if c.rewritten)

    @property
    def reflector_used(self) -> bool:
        return self.reflector == "used"


def _path_rewrote(e: AlgEvidence) -> bool:
    """Proof: the request arrived changed, or the Via came back changed."""
    return any(c.source == "reflector" or c.field == "via_sent_by" for c in e.rewritten)


def _binding_only(e: AlgEvidence) -> bool:
    """Only the stored binding differs and no reflector could say who changed it."""
    return not e.reflector_used and any(c.field == "contact" for c in e.rewritten)


_RULES: tuple[tuple[str, Callable[[AlgEvidence], bool]], ...] = (
    ("no-evidence", lambda e: not e.comparisons and e.nat is None),
    ("rewritten", _path_rewrote),
    ("binding-rewritten", _binding_only),
    ("nat", lambda e: e.nat is not None and e.nat.translated),
    ("clean", lambda e: True),
)
"""The first row whose test holds decides."""

_REMEDY_ALG = (
    "turn off the SIP ALG on the router or firewall (often called 'SIP ALG', 'SIP helper', 'SIP fixup' or "
    "'SIP passthrough'); if you cannot, use transport = \"tls\": an ALG cannot read encrypted SIP"
)

ALG_VERDICTS: Mapping[str, Verdict] = {
    "no-evidence": Verdict(
        Status.SKIP, "not checked: no registration ({registration}) and no reflector ({reflector}) to compare with",
        "get sip.register to pass first: the registrar's answer is the evidence this check reads",
    ),
    "rewritten": Verdict(Status.FAIL, "something on the path rewrites SIP (a SIP ALG?): {changes}", _REMEDY_ALG),
    "binding-rewritten": Verdict(
        Status.WARN, "the registrar stored a different Contact than we sent ({changes}): a SIP ALG on the path, "
        "or the server's own NAT handling",
        "if calls have one-way audio or drop after about 30 s: " + _REMEDY_ALG,
    ),
    "nat": Verdict(
        Status.PASS, "no rewriting seen; NAT without ALG: the server sees {sent_by} as {public}, and {checked} "
        "arrived intact (normal NAT)",
    ),
    "clean": Verdict(Status.PASS, "no rewriting seen: {checked} arrived as sent"),
}


def _changes(rewritten: Sequence[Comparison]) -> str:
    return "; ".join(f"{_FIELDS[c.field].label} {c.sent} -> {c.seen} ({c.source})" for c in rewritten)


def assess_alg(evidence: AlgEvidence) -> CheckResult:
    key = next(name for name, test in _RULES if test(evidence))
    row = ALG_VERDICTS[key]
    rewritten = evidence.rewritten
    checked = [_FIELDS[name].label for name in _FIELDS if any(c.field == name and c.seen for c in evidence.comparisons)]
    nat = evidence.nat
    values = {
        "changes": _changes(rewritten),
        "checked": ", ".join(checked) or "the Via",
        "sent_by": str(nat.sent_by) if nat else "?",
        "public": str(nat.public) if nat else "?",
        "reflector": evidence.reflector,
        "registration": evidence.registration,
    }
    measurements: dict[str, Any] = {
        "rewritten_fields": sorted({c.field for c in rewritten}, key=list(_FIELDS).index),
        "nat_detected": nat.translated if nat else None,
        "via_sent_by": str(nat.sent_by) if nat else None,
        "via_received": nat.received if nat else None,
        "via_rport": nat.rport if nat else None,
        "public_address": str(nat.public) if nat else None,
        "reflector": evidence.reflector,
        "registration": evidence.registration,
        "comparisons": [c.to_dict() for c in evidence.comparisons],
    }
    for comparison in rewritten:  # the reflector's word first: it saw the request itself
        measurements.setdefault(f"{comparison.field}_sent", comparison.sent)
        measurements.setdefault(f"{comparison.field}_seen", comparison.seen)
    return CheckResult(
        CHECK_ID, row.status, row.summary.format(**values), measurements,
        remedy=row.remedy.format(**values) if row.remedy else None,
    )  # fmt: skip


def gather(registration: RegisterResult | CheckResult, reflector: ReflectorProbe) -> AlgEvidence:
    """Everything the registration and the reflector probe show, as one :class:`AlgEvidence`."""
    comparisons: list[Comparison] = []
    nat: NatEvidence | None = None
    if reflector.reflected is not None and reflector.sent is not None:
        comparisons += compare_reflection(reflector.sent, reflector.reflected)
    if reflector.sent is not None and reflector.response is not None:
        nat = nat_evidence(reflector.sent, reflector.response)
    if isinstance(registration, RegisterResult):
        comparisons += compare_registration(registration)
        if nat is None and registration.exchange is not None:
            nat = nat_evidence(registration.exchange.request, registration.exchange.response)
        status = registration.outcome
    else:
        status = f"{registration.status.value}: {registration.summary}"
    return AlgEvidence(tuple(comparisons), nat, reflector.status, status)


def _reflector(registration: RegisterResult | CheckResult, profile: AccountProfile,
               timeout_s: float) -> ReflectorProbe:  # fmt: skip
    """Ask the server we registered at; not when it could not be reached (it would only time out again)."""
    if not isinstance(registration, RegisterResult):
        return ReflectorProbe("not tried: no server (see sip.register)")
    if registration.status is None:
        return ReflectorProbe(f"not tried: the server was not reached ({registration.outcome})")
    target = Target(registration.host, registration.port, registration.transport,
                    registration.address or registration.host)  # fmt: skip
    return probe_reflector(target, profile, timeout_s)


def check_sip_alg(ctx: CheckContext, timeout_s: float = DEFAULT_TIMEOUT_S) -> CheckResult:
    profile = profile_of(ctx)
    if profile is None:
        return needs_profile(CHECK_ID)
    registration = registration_of(ctx, timeout_s)
    reflector = _reflector(registration, profile, timeout_s)
    log.debug("%s: reflector %s", CHECK_ID, reflector.status)
    return assess_alg(gather(registration, reflector))
