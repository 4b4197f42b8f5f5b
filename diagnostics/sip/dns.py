"""Check ``sip.dns``: where is the account's SIP server? RFC 3263 §4 server location, step by step.

::

    an IP address                      → that address, no lookup (§4.2)
    host:port                          → A/AAAA of host (§4.2)
    else NAPTR of the domain (§4.1)    → SRV of each supported service, by order and preference
      no usable NAPTR (§4.1)           → SRV _sips._tcp, _sip._tcp, _sip._udp, the profile's transport first
      no SRV (§4.2)                    → A/AAAA of the domain, the transport's default port
    SRV records by priority, then weight (RFC 2782)  → A/AAAA of each SRV target

:func:`resolve` walks those steps without touching a socket: it asks a :data:`Query`
for one record type of one name at a time and gets a :class:`Step` back. The only
class here that talks to a DNS server is :class:`DnsQuery` (dnspython).
:func:`resolve_targets` is what other SIP checks use: it resolves once per run
and raises :class:`DnsFailure` when nothing resolves::

    MeasurementError     (diagnostics.errors)
    └── DnsFailure       nothing resolves; ``cause`` (:class:`DnsCause`) says why, ``remedy`` what to do

Every query and its answer is kept (:attr:`Resolution.steps`) and goes into the
report, so a helpdesk sees what was asked and what came back.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import dns.exception
import dns.name
import dns.nameserver
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.NAPTR
import dns.rdtypes.IN.SRV
import dns.resolver

from diagnostics.checks import CheckContext
from diagnostics.errors import MeasurementError, UsageError
from diagnostics.profile import AccountProfile, HostPort, Transport, needs_profile, parse_host_port, profile_of
from diagnostics.report import CheckResult, Status

__all__ = [
    "CAUSES",
    "DNS_PORT",
    "QUERY_LIFETIME_S",
    "SERVICES",
    "CauseText",
    "DnsCause",
    "DnsFailure",
    "DnsQuery",
    "Method",
    "Naptr",
    "Outcome",
    "Query",
    "Record",
    "RecordType",
    "Resolution",
    "Service",
    "Srv",
    "Step",
    "Target",
    "assess_dns",
    "check_dns",
    "order_srv",
    "resolution_of",
    "resolve",
    "resolve_profile",
    "resolve_targets",
]

log = logging.getLogger(__name__)

QUERY_LIFETIME_S = 2.0
"""How long one query may take, retries included. A timeout ends the resolution: the server is not answering."""

DNS_PORT = 53


class RecordType(StrEnum):
    NAPTR = "NAPTR"
    SRV = "SRV"
    A = "A"
    AAAA = "AAAA"


class Outcome(StrEnum):
    """What one query came back with."""

    ANSWER = "answer"
    NODATA = "nodata"
    """The name exists but has no records of this type."""
    NXDOMAIN = "nxdomain"
    """The name does not exist."""
    TIMEOUT = "timeout"
    """No answer in time, or the query could not be sent (no route to the DNS server)."""
    SERVER_ERROR = "server_error"
    """Every server refused or failed the query (REFUSED, SERVFAIL)."""
    NO_SERVER = "no_server"
    """No DNS server is configured to ask."""


@dataclass(frozen=True)
class Naptr:
    """A NAPTR record (RFC 3403 §4.1)."""

    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str

    def __str__(self) -> str:
        return f'{self.order} {self.preference} "{self.flags}" "{self.service}" "{self.regexp}" {self.replacement}'


@dataclass(frozen=True)
class Srv:
    """An SRV record (RFC 2782)."""

    priority: int
    weight: int
    port: int
    target: str

    def __str__(self) -> str:
        return f"{self.priority} {self.weight} {self.port} {self.target}"


Record = Naptr | Srv | str
"""A NAPTR or SRV record, or an address (A/AAAA) as text."""


@dataclass(frozen=True)
class Step:
    """One DNS query and what came back."""

    rdtype: RecordType
    name: str
    outcome: Outcome
    records: tuple[Record, ...] = ()
    elapsed_ms: float = 0.0
    detail: str = ""
    """The resolver's words when the outcome is a failure."""

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "query": f"{self.rdtype.value} {self.name}",
            "outcome": self.outcome.value,
            "records": [str(r) for r in self.records],
            "elapsed_ms": round(self.elapsed_ms, 3),
        }
        if self.detail:
            found["detail"] = self.detail
        return found


Query = Callable[[str, RecordType], Step]
"""Ask for the records of one type of one name; never raises for a DNS outcome."""


@dataclass(frozen=True)
class Service:
    """A SIP transport as NAPTR and SRV name it (RFC 3263 §4.1)."""

    naptr: str
    srv: str
    """SRV owner-name prefix, put before the domain."""
    transport: Transport


SERVICES: tuple[Service, ...] = (  # what phonekit and its phone support; SCTP and WebSocket are not among them
    Service("SIPS+D2T", "_sips._tcp", Transport.TLS),
    Service("SIP+D2T", "_sip._tcp", Transport.TCP),
    Service("SIP+D2U", "_sip._udp", Transport.UDP),
)


class Method(StrEnum):
    """How the targets were found (or, when none were, the last stage tried)."""

    IP_LITERAL = "ip-literal"
    HOST_PORT = "host-port"
    NAPTR = "naptr"
    SRV = "srv"
    ADDRESS = "address"


_METHOD_WORDS = {
    Method.IP_LITERAL: "an IP address, no lookup",
    Method.HOST_PORT: "A/AAAA, port from the profile",
    Method.NAPTR: "NAPTR → SRV → A/AAAA",
    Method.SRV: "SRV → A/AAAA",
    Method.ADDRESS: "A/AAAA without SRV, default port",
}


class DnsCause(StrEnum):
    """Why nothing resolved."""

    NXDOMAIN = "nxdomain"
    NO_RECORDS = "no_records"
    TIMEOUT = "timeout"
    SERVER_ERROR = "server_error"
    NO_SERVER = "no_server"


@dataclass(frozen=True)
class CauseText:
    summary: str
    """May use ``{name}``, ``{server}``, ``{query}`` (the failed query) and ``{detail}``."""
    remedy: str


CAUSES: Mapping[DnsCause, CauseText] = {
    DnsCause.NXDOMAIN: CauseText(
        "{name} does not exist in DNS (NXDOMAIN from {server})",
        "check the domain (or registrar) in the profile for typos; if it is right, the DNS server in use does not "
        "know it: check the DNS settings (a company-internal name needs the company's DNS server, often via VPN)",
    ),
    DnsCause.NO_RECORDS: CauseText(
        "{name} exists, but no NAPTR, SRV or A/AAAA record leads to a SIP server (asked {server})",
        'ask the provider for the SIP server\'s host name and port and set registrar = "host:port" in the profile',
    ),
    DnsCause.TIMEOUT: CauseText(
        "no answer from the DNS server {server}: {query} {detail}",
        "check the network connection and the DNS server (dns_server in the profile, or the system's); a firewall "
        'may block DNS, and some routers drop NAPTR and SRV queries: then set registrar = "host:port"',
    ),
    DnsCause.SERVER_ERROR: CauseText(
        "the DNS server {server} refused or failed every query for {name} ({detail})",
        "use another DNS server (dns_server in the profile, or the system's): this one does not resolve the name",
    ),
    DnsCause.NO_SERVER: CauseText(
        "no DNS server is configured on this machine",
        "configure a DNS server (DHCP, or the network settings), or set dns_server in the profile",
    ),
}


@dataclass(frozen=True)
class Target:
    """One place to send SIP requests to, in the order RFC 3263 says to try them."""

    host: str
    port: int
    transport: Transport
    address: str
    priority: int = 0
    """SRV priority (0 without SRV)."""
    weight: int = 0
    """SRV weight (0 without SRV)."""

    def __str__(self) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        where = address if self.host == self.address else f"{self.host} = {address}"
        return f"{self.transport.value} {where}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "transport": self.transport.value,
            "address": self.address,
            "priority": self.priority,
            "weight": self.weight,
        }


@dataclass(frozen=True)
class Resolution:
    """The outcome of RFC 3263 server location for one name."""

    name: str
    """The host resolved: the account's domain, or the registrar's host."""
    port: int | None
    method: Method
    targets: tuple[Target, ...]
    steps: tuple[Step, ...]
    lookup_ms: float
    server: str
    """The DNS server asked: ``host:port``, or ``system (…)``."""
    cause: DnsCause | None = None
    """Why there are no targets; None when there are."""

    def __post_init__(self) -> None:
        if (self.cause is None) != bool(self.targets):
            raise ValueError(
                f"{self.name}: a resolution has targets or a cause, not both or neither "
                f"(got {len(self.targets)} target(s), cause {self.cause!r})"
            )

    @property
    def offered(self) -> tuple[Transport, ...]:
        """Transports of the targets, in the order they first appear."""
        return tuple(dict.fromkeys(t.transport for t in self.targets))

    def for_transport(self, transport: Transport) -> tuple[Target, ...]:
        return tuple(t for t in self.targets if t.transport is transport)

    def failed_step(self) -> Step | None:
        return next((s for s in reversed(self.steps) if s.outcome not in (Outcome.ANSWER, Outcome.NODATA)), None)

    def describe_cause(self) -> str:
        """The failure in plain words (``CAUSES``' summary filled in); empty when it resolved."""
        if self.cause is None:
            return ""
        step = self.failed_step()
        return CAUSES[self.cause].summary.format(
            name=self.name,
            server=self.server,
            query=f"{step.rdtype.value} {step.name}" if step else "",
            detail=step.detail if step else "",
        )


class DnsFailure(MeasurementError):
    """Nothing resolves: ``cause`` says why, ``resolution`` holds every query, ``remedy`` what to do.

    The SIP checks that need a server catch it to name "DNS failure" as their cause.
    """

    def __init__(self, resolution: Resolution) -> None:
        if resolution.cause is None:
            raise ValueError(f"{resolution.name}: resolved to {len(resolution.targets)} target(s), not a failure")
        super().__init__(f"DNS failure: {resolution.describe_cause()}", remedy=CAUSES[resolution.cause].remedy)
        self.resolution = resolution
        self.cause = resolution.cause


# --------------------------------------------------------------------------- the walk (sans-I/O)


class _Unreachable(Exception):
    """The DNS server does not answer: further queries would only wait as long again."""


class _Walk:
    """Asks the queries, keeps the steps, and asks A/AAAA of each host once."""

    def __init__(self, query: Query, method: Method) -> None:
        self.query = query
        self.method = method  # the stage reached; the method of the targets once they are found
        self.steps: list[Step] = []
        self._addresses: dict[str, tuple[str, ...]] = {}
        self._asked_srv: set[str] = set()
        self.srv_found = False

    def ask(self, name: str, rdtype: RecordType) -> Step:
        step = self.query(name, rdtype)
        self.steps.append(step)
        log.debug("%s %s: %s %s", rdtype.value, name, step.outcome.value, [str(r) for r in step.records])
        if step.outcome in (Outcome.TIMEOUT, Outcome.NO_SERVER):
            raise _Unreachable
        return step

    def addresses(self, host: str) -> tuple[str, ...]:
        """A, then AAAA (IPv4 first: it passes NAT and firewalls more often)."""
        if host not in self._addresses:
            found = [r for rdtype in (RecordType.A, RecordType.AAAA) for r in self.ask(host, rdtype).records]
            self._addresses[host] = tuple(r for r in found if isinstance(r, str))
        return self._addresses[host]

    def address_targets(self, host: str, port: int, transport: Transport) -> list[Target]:
        return [Target(host, port, transport, address) for address in self.addresses(host)]

    def srv_targets(self, name: str, transport: Transport, rng: random.Random | None) -> list[Target]:
        if name in self._asked_srv:
            return []
        self._asked_srv.add(name)
        records = [r for r in self.ask(name, RecordType.SRV).records if isinstance(r, Srv)]
        # RFC 2782: a target of "." means "decidedly not available at this domain".
        usable = [r for r in records if r.target not in ("", ".")]
        self.srv_found |= bool(usable)
        return [
            Target(r.target, r.port, transport, address, r.priority, r.weight)
            for r in order_srv(usable, rng)
            for address in self.addresses(r.target)
        ]


def order_srv(records: Sequence[Srv], rng: random.Random | None = None) -> list[Srv]:
    """RFC 2782 order: lowest priority first; within one priority, weighted random selection.

    Without ``rng`` the order is the selection's most likely one (higher weight
    first, then by name): stable, so that two reports of one domain agree.
    """
    ordered: list[Srv] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority]
        if rng is None:
            ordered.extend(sorted(group, key=lambda r: (-r.weight, r.target, r.port)))
            continue
        pool = sorted(group, key=lambda r: r.weight != 0)  # zero weights first, as RFC 2782 asks
        while pool:
            pick = rng.randint(0, sum(r.weight for r in pool))
            running = 0
            for index, record in enumerate(pool):
                running += record.weight
                if running >= pick:
                    ordered.append(pool.pop(index))
                    break
    return ordered


def _naptr_services(records: Sequence[Record]) -> list[tuple[Service, str]]:
    """Supported services with the SRV name each points to, by order, then preference (RFC 3403 §4.1)."""
    by_field = {s.naptr: s for s in SERVICES}
    naptrs = sorted((r for r in records if isinstance(r, Naptr)), key=lambda r: (r.order, r.preference))
    return [
        (by_field[r.service.upper()], r.replacement)
        for r in naptrs
        # RFC 3263 §4.1: flag "s" means the next lookup is SRV; other flags are not for SIP server location.
        if r.flags.lower() == "s" and r.service.upper() in by_field and r.replacement not in ("", ".")
    ]


def _locate(walk: _Walk, where: HostPort, transport: Transport, rng: random.Random | None) -> list[Target]:
    """RFC 3263 §4.2 for host:port, §4.1 and §4.2 for a domain alone; ``walk.method`` follows the stages."""
    if where.port is not None:
        return walk.address_targets(where.host, where.port, transport)
    targets: list[Target] = []
    for service, srv_name in _naptr_services(walk.ask(where.host, RecordType.NAPTR).records):
        targets += walk.srv_targets(srv_name, service.transport, rng)
    if targets:
        return targets
    walk.method = Method.SRV
    for service in sorted(SERVICES, key=lambda s: s.transport is not transport):  # the profile's transport first
        targets += walk.srv_targets(f"{service.srv}.{where.host}", service.transport, rng)
    if targets or walk.srv_found:  # §4.2: A/AAAA of the domain only when there is no SRV record at all
        return targets
    walk.method = Method.ADDRESS
    return walk.address_targets(where.host, transport.default_port, transport)


def _cause(steps: Sequence[Step], name: str) -> DnsCause:
    """Why nothing resolved, judged first on the server, then on the name's own queries (NAPTR or A/AAAA)."""
    outcomes = {s.outcome for s in steps}
    if Outcome.NO_SERVER in outcomes:
        return DnsCause.NO_SERVER
    if Outcome.TIMEOUT in outcomes:
        return DnsCause.TIMEOUT
    own = {s.outcome for s in steps if s.name == name}
    if Outcome.ANSWER not in outcomes:
        if own == {Outcome.SERVER_ERROR}:
            return DnsCause.SERVER_ERROR
        if Outcome.NXDOMAIN in own and own <= {Outcome.NXDOMAIN, Outcome.SERVER_ERROR}:
            return DnsCause.NXDOMAIN
    return DnsCause.NO_RECORDS


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def resolve(
    where: HostPort,
    transport: Transport,
    query: Query,
    server: str = "",
    rng: random.Random | None = None,
) -> Resolution:
    """Locate the SIP server for ``where`` (RFC 3263 §4), asking ``query``; ``transport`` is the profile's.

    ``server`` only names the DNS server in the result. ``rng`` makes the RFC 2782
    weighted choice random (see :func:`order_srv`).
    """
    start = time.perf_counter()
    literal = _ip_literal(where.host)
    first_stage = (
        Method.IP_LITERAL if literal is not None else Method.HOST_PORT if where.port is not None else Method.NAPTR
    )
    walk = _Walk(query, first_stage)
    targets: list[Target] = []
    if literal is not None:
        targets = [Target(literal, where.port or transport.default_port, transport, literal)]
    else:
        try:
            targets = _locate(walk, where, transport, rng)
        except _Unreachable:
            targets = []  # the cause comes from the steps
    return Resolution(
        name=where.host,
        port=where.port,
        method=walk.method,
        targets=tuple(targets),
        steps=tuple(walk.steps),
        lookup_ms=(time.perf_counter() - start) * 1000.0,
        server=server,
        cause=None if targets else _cause(walk.steps, where.host),
    )


# --------------------------------------------------------------------------- the DNS client (I/O)


def _rdata_record(rdata: object) -> Record | None:
    if isinstance(rdata, dns.rdtypes.IN.NAPTR.NAPTR):
        return Naptr(
            int(rdata.order),
            int(rdata.preference),
            rdata.flags.decode(errors="replace"),
            rdata.service.decode(errors="replace"),
            rdata.regexp.decode(errors="replace"),
            rdata.replacement.to_text(omit_final_dot=True),
        )
    if isinstance(rdata, dns.rdtypes.IN.SRV.SRV):
        return Srv(int(rdata.priority), int(rdata.weight), int(rdata.port), rdata.target.to_text(omit_final_dot=True))
    if isinstance(rdata, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
        return str(rdata.address)
    return None


def _no_nameservers(exc: dns.resolver.NoNameservers) -> tuple[Outcome, str]:
    """Tell "could not reach it" (no route, port closed over TCP) from "the server said no" (REFUSED, SERVFAIL)."""
    errors = [e[3] for e in exc.kwargs.get("errors") or []]
    if errors and all(isinstance(e, OSError) for e in errors):
        reasons = [getattr(e, "strerror", None) or str(e) for e in errors]
        return Outcome.TIMEOUT, "could not be sent: " + "; ".join(dict.fromkeys(reasons))
    said = [f"answered {e}" if isinstance(e, str) else f"{type(e).__name__}: {e}" for e in errors]
    return Outcome.SERVER_ERROR, "; ".join(dict.fromkeys(said)) or "no server left to ask"


class DnsQuery:
    """Asks one DNS server (``server``) or the system's, one query at a time, ``lifetime_s`` each.

    The system's servers come from ``resolv_conf`` (on Windows, from the registry).
    """

    def __init__(
        self,
        server: HostPort | None = None,
        lifetime_s: float = QUERY_LIFETIME_S,
        resolv_conf: str = "/etc/resolv.conf",
    ) -> None:
        self.lifetime_s = lifetime_s
        self._no_server = ""
        if server is not None:
            self._resolver = dns.resolver.Resolver(configure=False)
            port = server.port or DNS_PORT
            self._resolver.nameservers = [dns.nameserver.Do53Nameserver(server.host, port)]
            self.server = str(HostPort(server.host, port))
        else:
            try:
                self._resolver = dns.resolver.Resolver(filename=resolv_conf)
            except dns.resolver.NoResolverConfiguration as exc:
                self._resolver = dns.resolver.Resolver(configure=False)
                self._no_server = f"{resolv_conf}: {exc}"
            names = [str(HostPort(str(ns), DNS_PORT)) for ns in self._resolver.nameservers]
            self.server = f"system ({', '.join(names) or 'none'})"
        # One try per server within the lifetime, so that a second system server gets its turn.
        self._resolver.lifetime = lifetime_s
        self._resolver.timeout = lifetime_s / max(1, len(self._resolver.nameservers))

    def __call__(self, name: str, rdtype: RecordType) -> Step:
        if self._no_server:
            return Step(rdtype, name, Outcome.NO_SERVER, detail=self._no_server)
        start = time.perf_counter()
        records: tuple[Record, ...] = ()
        detail = ""
        try:
            answer = self._resolver.resolve(
                dns.name.from_text(name), rdtype.value, search=False, raise_on_no_answer=False
            )
            records = tuple(r for r in map(_rdata_record, answer.rrset or ()) if r is not None)
            outcome = Outcome.ANSWER if records else Outcome.NODATA
        except dns.resolver.NXDOMAIN:
            outcome = Outcome.NXDOMAIN
        except dns.exception.Timeout:
            outcome, detail = Outcome.TIMEOUT, f"timed out after {self.lifetime_s:g} s"
        except dns.resolver.NoNameservers as exc:
            outcome, detail = _no_nameservers(exc)
        except dns.exception.DNSException as exc:  # YXDOMAIN, a malformed answer: the server's fault
            outcome, detail = Outcome.SERVER_ERROR, f"{type(exc).__name__}: {exc}"
        return Step(rdtype, name, outcome, records, (time.perf_counter() - start) * 1000.0, detail)


# --------------------------------------------------------------------------- the check


def _name_to_resolve(profile: AccountProfile) -> tuple[HostPort, str]:
    """The registrar when the profile names one (it overrides the domain), else the account's domain."""
    if profile.registrar is not None:
        where, source, key = profile.registrar, "registrar", "account.registrar"
    else:
        source, key = "domain", "account.domain"
        try:
            where = parse_host_port(profile.domain)
        except ValueError as exc:
            raise UsageError(f"{profile.path}: field '{key}' must be host[:port] (got {profile.domain!r})") from exc
    if _ip_literal(where.host) is None:
        try:
            dns.name.from_text(where.host)
        except dns.exception.DNSException as exc:
            raise UsageError(f"{profile.path}: field '{key}' is not a DNS name: {exc} (got {where.host!r})") from exc
    return where, source


def resolve_profile(profile: AccountProfile, lifetime_s: float = QUERY_LIFETIME_S) -> Resolution:
    """Resolve the profile's registrar or domain through its ``dns_server`` (else the system's resolver)."""
    where, _ = _name_to_resolve(profile)
    query = DnsQuery(profile.dns_server, lifetime_s)
    return resolve(where, profile.transport, query, server=query.server)


def resolution_of(ctx: CheckContext) -> Resolution:
    """The run's resolution, done once and shared by every SIP check; a profile is required."""
    cached = ctx.cache.get("sip.dns")
    if cached is None:
        profile = profile_of(ctx)
        if profile is None:
            raise MeasurementError(
                "sip.dns: no account profile given, so no SIP domain to resolve", remedy="pass --profile FILE"
            )
        cached = resolve_profile(profile)
        ctx.cache["sip.dns"] = cached
    assert isinstance(cached, Resolution)
    return cached


def resolve_targets(ctx: CheckContext) -> list[Target]:
    """Where to send SIP requests, best first; raises :class:`DnsFailure` when nothing resolves."""
    resolution = resolution_of(ctx)
    if resolution.cause is not None:
        raise DnsFailure(resolution)
    return list(resolution.targets)


def assess_dns(resolution: Resolution, transport: Transport, source: str = "domain") -> CheckResult:
    """Verdict on a resolution; ``transport`` is the profile's, ``source`` what the name came from."""
    measurements: dict[str, Any] = {
        "name": resolution.name,
        "resolved_from": source,
        "method": resolution.method.value,
        "server": resolution.server,
        "transport": transport.value,
        "targets": [t.to_dict() for t in resolution.targets],
        "offered_transports": [t.value for t in resolution.offered],
        "query_count": len(resolution.steps),
        "steps": [s.to_dict() for s in resolution.steps],
        "lookup_ms": round(resolution.lookup_ms, 3),
    }
    if resolution.cause is not None:
        return CheckResult(
            "sip.dns",
            Status.FAIL,
            f"DNS failure: {resolution.describe_cause()}",
            {**measurements, "cause": resolution.cause.value},
            remedy=CAUSES[resolution.cause].remedy,
        )
    first = resolution.targets[0]
    summary = (
        f"{resolution.name}: {len(resolution.targets)} target(s) by {_METHOD_WORDS[resolution.method]} "
        f"in {resolution.lookup_ms:.1f} ms; first {first}"
    )
    if transport not in resolution.offered:
        offered = ", ".join(t.value for t in resolution.offered)
        return CheckResult(
            "sip.dns",
            Status.WARN,
            f"{summary}; the server offers {offered}, but the profile uses {transport.value}",
            measurements,
            remedy=f'set transport = "{resolution.offered[0].value}" in the profile (or another one the server '
            f"offers: {offered}), or ask the provider whether {transport.value} works",
        )
    return CheckResult("sip.dns", Status.PASS, summary, measurements)


def check_dns(ctx: CheckContext) -> CheckResult:
    profile = profile_of(ctx)
    if profile is None:
        return needs_profile("sip.dns")
    _, source = _name_to_resolve(profile)
    return assess_dns(resolution_of(ctx), profile.transport, source)
