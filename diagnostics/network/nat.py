"""Check ``network.nat``: is there a NAT between the phone and its STUN server, and how does it map and filter?

From one local UDP socket, the NAT behaviour discovery of RFC 5780 §4 against
the profile's STUN server:

* Test I (§4.3): a Binding to the server. Its mapped address against the
  socket's own address says whether there is a NAT at all, and whether it kept
  the port.
* Filtering (§4.4), before any packet goes to the server's other address (a
  packet sent there would open the very pinhole being tested): a Binding with
  CHANGE-REQUEST "change IP and port", then "change port". Which answers get
  back tells endpoint-independent, address-dependent or
  address-and-port-dependent filtering.
* Mapping (§4.3): Bindings to the server's OTHER-ADDRESS IP on the primary
  port, then on the other port. Whether the mapped address changes tells
  endpoint-independent, address-dependent or address-and-port-dependent
  ("symmetric") mapping. Only the last two break media for a phone that puts
  its STUN address in SDP, unless ICE/TURN or a latching SBC is used.

A server without OTHER-ADDRESS (RFC 5389 only, or coturn with one address)
gets a second Binding from the same socket instead: that only shows whether
the mapping is stable, so the behaviour is reported as ``unknown`` and the
detection as ``limited``.

:func:`classify_mapping`, :func:`classify_filtering` and :func:`assess_nat`
are pure; :func:`probe_nat` does the I/O. ``python -m diagnostics.network.nat
--profile FILE [--json]`` runs this one check.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from diagnostics.checks import CheckContext, CheckSpec, run_checks
from diagnostics.errors import UsageError
from diagnostics.network.stun import (
    Address,
    ServerUnreachable,
    TransactionError,
    TransactionFailed,
    TransactionTimeout,
    binding,
)
from diagnostics.profile import needs_profile, profile_of
from diagnostics.report import EXIT_USAGE, CheckResult, Status, exit_code

__all__ = [
    "CHECK_ID",
    "DEFAULT_STUN_PORT",
    "RULES",
    "Detection",
    "FilteringBehaviour",
    "MappingBehaviour",
    "NatObservation",
    "Rule",
    "assess_nat",
    "check_nat",
    "classify_filtering",
    "classify_mapping",
    "failure_measurements",
    "main",
    "probe_nat",
]

log = logging.getLogger(__name__)

CHECK_ID = "network.nat"
DEFAULT_STUN_PORT = 3478
"""RFC 5389 §9: STUN over UDP."""
TIMEOUT_S = 3.0
"""Test I: RFC 5389 retransmissions at 0, 0.5 and 1.5 s, then give up at 3 s (the RFC's own limit is 39.5 s)."""
BEHAVIOUR_TIMEOUT_S = 1.0
"""Each later test (or 4 × test I's round trip, if longer): a lost answer is an expected result there."""


class MappingBehaviour(StrEnum):
    """RFC 5780 §4.3 (RFC 4787 §4.1 terms)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"
    """A "symmetric" NAT."""
    UNKNOWN = "unknown"


class FilteringBehaviour(StrEnum):
    """RFC 5780 §4.4 (RFC 4787 §5 terms)."""

    ENDPOINT_INDEPENDENT = "endpoint-independent"
    ADDRESS_DEPENDENT = "address-dependent"
    ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"
    UNKNOWN = "unknown"


class Detection(StrEnum):
    """How the behaviour was found."""

    RFC5780 = "rfc5780"
    """The server gave an OTHER-ADDRESS and the §4.3/§4.4 tests ran."""
    LIMITED = "limited"
    """No usable OTHER-ADDRESS: only a repeat Binding to the same server."""


def classify_mapping(local: Address, test1: Address, test2: Address | None, test3: Address | None) -> MappingBehaviour:
    """RFC 5780 §4.3 from the mapped addresses of tests I–III (None: the test did not run or got no answer).

    Test II goes to the server's other IP on the primary port, test III to the other IP and other port.
    Without a NAT (test I maps to the socket's own address) the mapping is trivially endpoint-independent.
    """
    if _same(test1, local) or test2 == test1:
        return MappingBehaviour.ENDPOINT_INDEPENDENT
    if test2 is None or test3 is None:
        return MappingBehaviour.UNKNOWN
    if test3 == test2:
        return MappingBehaviour.ADDRESS_DEPENDENT
    return MappingBehaviour.ADDRESS_AND_PORT_DEPENDENT


def classify_filtering(change_both: bool | None, change_port: bool | None) -> FilteringBehaviour:
    """RFC 5780 §4.4 from whether the answers to CHANGE-REQUEST tests II (IP and port) and III (port) arrived.

    None means the test could not tell (not run, or the server ignored the change and answered from its
    primary address).
    """
    if change_both:
        return FilteringBehaviour.ENDPOINT_INDEPENDENT
    if change_both is None or change_port is None:
        return FilteringBehaviour.UNKNOWN
    if change_port:
        return FilteringBehaviour.ADDRESS_DEPENDENT
    return FilteringBehaviour.ADDRESS_AND_PORT_DEPENDENT


def _same(a: Address, b: Address) -> bool:
    return ipaddress.ip_address(a.host) == ipaddress.ip_address(b.host) and a.port == b.port


@dataclass(frozen=True)
class NatObservation:
    """What the probe found; :meth:`measurements` is the check's measurement table."""

    server: Address
    local: Address
    """The probe socket's own address (the source address the OS picked towards the server)."""
    mapped: Address
    """Test I's reflexive address: how the STUN server saw the probe socket."""
    rtt_ms: float
    other_address: Address | None
    mapping: MappingBehaviour
    filtering: FilteringBehaviour
    detection: Detection

    @property
    def nat_present(self) -> bool:
        return not _same(self.mapped, self.local)

    @property
    def port_preserved(self) -> bool:
        return self.mapped.port == self.local.port

    def measurements(self) -> dict[str, Any]:
        return {
            "server": str(self.server),
            "local_address": str(self.local),
            "mapped_address": str(self.mapped),
            "nat_present": self.nat_present,
            "port_preserved": self.port_preserved,
            "mapping_behaviour": self.mapping.value,
            "filtering_behaviour": self.filtering.value,
            "rtt_ms": round(self.rtt_ms, 3),
            "other_address": str(self.other_address) if self.other_address else None,
            "behaviour_detection": self.detection.value,
        }


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, Address]:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    family, sockaddr = info[0], info[4]
    return family, Address(str(sockaddr[0]), int(sockaddr[1]))


def _source_towards(family: socket.AddressFamily, server: Address) -> str:
    """The local address the OS routes towards ``server`` (connect() on UDP sends nothing)."""
    with socket.socket(family, socket.SOCK_DGRAM) as route:
        route.connect(server)
        return str(route.getsockname()[0]).split("%", 1)[0]


def _mapped(sock: socket.socket, server: Address, timeout_s: float) -> Address | None:
    """A mapping test: the mapped address, or None when the answer was lost or unusable."""
    try:
        return binding(sock, server, timeout_s=timeout_s).mapped
    except TransactionError as exc:
        log.info("NAT mapping test to %s: %s", server, exc)
        return None


def _filter_test(sock: socket.socket, server: Address, timeout_s: float, change_ip: bool) -> bool | None:
    """A filtering test: True when the answer came back from the changed address, False when it was lost,
    None when the test cannot tell (an error answer, or the server ignored CHANGE-REQUEST)."""
    try:
        result = binding(sock, server, change_ip=change_ip, change_port=True, timeout_s=timeout_s)
    except TransactionTimeout:
        return False
    except TransactionError as exc:
        log.info("NAT filtering test to %s: %s", server, exc)
        return None
    moved = (ipaddress.ip_address(result.source.host) != ipaddress.ip_address(server.host),
             result.source.port != server.port)  # fmt: skip
    if moved != (change_ip, True):
        log.info("STUN server %s answered CHANGE-REQUEST from %s: it ignores the change", server, result.source)
        return None
    return True


def probe_nat(
    host: str, port: int = DEFAULT_STUN_PORT, timeout_s: float = TIMEOUT_S,
    behaviour_timeout_s: float = BEHAVIOUR_TIMEOUT_S,
) -> NatObservation:  # fmt: skip
    """Run RFC 5780 §4.3 and §4.4 from one UDP socket against the STUN server ``host:port``.

    Raises :class:`socket.gaierror` when the name does not resolve, :class:`OSError` when nothing can be
    sent there, and :class:`~diagnostics.network.stun.TransactionError` when Test I gets no usable answer.
    """
    family, server = _resolve(host, port)
    local_ip = _source_towards(family, server)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((local_ip, 0))
        local = Address(local_ip, int(sock.getsockname()[1]))
        first = binding(sock, server, timeout_s=timeout_s)
        log.info("STUN %s: %s maps to %s (other address %s)", server, local, first.mapped, first.other_address)
        other = first.other_address
        nat = not _same(first.mapped, local)
        wait_s = min(timeout_s, max(behaviour_timeout_s, 4 * first.rtt_ms / 1000.0))  # a slow link gets longer

        def observed(mapping: MappingBehaviour, filtering: FilteringBehaviour, detection: Detection) -> NatObservation:
            return NatObservation(server, local, first.mapped, first.rtt_ms, other, mapping, filtering, detection)

        if other is None or ipaddress.ip_address(other.host) == ipaddress.ip_address(server.host):
            # RFC 5780 §7.4 wants another IP: without one, only a repeat Binding to the same server is possible.
            again = _mapped(sock, server, wait_s) if nat else None
            mapping = classify_mapping(local, first.mapped, None, None)
            if again is not None and again != first.mapped:
                # A new mapping even for the same server: at least as bad as address-and-port-dependent.
                mapping = MappingBehaviour.ADDRESS_AND_PORT_DEPENDENT
            return observed(mapping, FilteringBehaviour.UNKNOWN, Detection.LIMITED)

        # Filtering first: the mapping tests below send to the other address and would open its pinhole.
        both = _filter_test(sock, server, wait_s, change_ip=True)
        port_only = None if both else _filter_test(sock, server, wait_s, change_ip=False)
        filtering = classify_filtering(both, port_only)

        test2 = _mapped(sock, Address(other.host, server.port), wait_s) if nat else None
        test3 = None
        if test2 is not None and test2 != first.mapped and other.port != server.port:
            test3 = _mapped(sock, other, wait_s)
        return observed(classify_mapping(local, first.mapped, test2, test3), filtering, Detection.RFC5780)


# --- verdicts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """When every ``when`` item equals the measurement of that name, this is the verdict."""

    when: Mapping[str, object]
    status: Status
    summary: str
    remedy: str | None = None


_SERVER_REMEDY = (
    "check network.stun_server in the profile (host and port, usually 3478) and that the firewall lets UDP out "
    "to it; without STUN answers the phone cannot learn its public address"
)
_TRAVERSAL_REMEDY = (
    "use a SIP server or SBC that latches media onto where RTP really comes from (symmetric RTP/comedia, or an "
    "outbound proxy), or turn on ICE with a TURN server in the phone; otherwise ask the network admin for an "
    "endpoint-independent (port-preserving) NAT rule for this host, or use a VPN to the phone system"
)

# fmt: off
RULES: tuple[Rule, ...] = (
    Rule({"cause": "dns"}, Status.FAIL,
         "the STUN server name in {server} does not resolve: {error}",
         "check the spelling of network.stun_server in the profile and this machine's DNS settings"),
    Rule({"cause": "no-route"}, Status.FAIL,
         "no route to the STUN server {server}: {error}",
         "connect to the network (see network.route) or fix network.stun_server in the profile"),
    Rule({"cause": "timeout"}, Status.FAIL,
         "the STUN server {server} did not answer within {timeout_s:g} s",
         _SERVER_REMEDY),
    Rule({"cause": "unreachable"}, Status.FAIL,
         "the STUN server {server} is unreachable: {error}",
         _SERVER_REMEDY),
    Rule({"cause": "error-response"}, Status.FAIL,
         "the STUN server {server} {error}",
         "use a STUN server that answers plain Binding requests (RFC 5389) in network.stun_server"),
    Rule({"cause": "socket-error"}, Status.FAIL,
         "could not send to the STUN server {server}: {error}",
         "a local firewall may block outgoing UDP: allow UDP to the STUN server (and the phone's SIP and RTP ports)"),
    Rule({"nat_present": False}, Status.PASS,
         "no NAT: the STUN server {server} sees this machine's own address {local_address}"),
    Rule({"mapping_behaviour": "endpoint-independent"}, Status.PASS,
         "NAT present ({mapped_address} outside for {local_address}, {port_text}), endpoint-independent mapping: "
         "the phone needs rport/keep-alives; usually fine"),
    Rule({"mapping_behaviour": "address-dependent"}, Status.WARN,
         "address-dependent NAT ({mapped_address} outside for {local_address}, a new mapping per server address): "
         "media will fail one way without TURN/ICE or an outbound proxy/SBC that latches",
         _TRAVERSAL_REMEDY),
    Rule({"mapping_behaviour": "address-and-port-dependent"}, Status.WARN,
         "symmetric NAT ({mapped_address} outside for {local_address}, a new mapping per server address and port): "
         "media will fail one way without TURN/ICE or an outbound proxy/SBC that latches",
         _TRAVERSAL_REMEDY),
    Rule({"mapping_behaviour": "unknown"}, Status.PASS,
         "NAT present ({mapped_address} outside for {local_address}, {port_text}); the phone needs rport/keep-alives; "
         "NAT behaviour detection was limited: the STUN server offers no second address (RFC 5780 OTHER-ADDRESS)"),
)
# fmt: on


_MISSING = object()


def assess_nat(measurements: Mapping[str, Any], rules: Sequence[Rule] = RULES) -> CheckResult:
    """The first rule whose ``when`` matches decides; texts are ``str.format`` templates over the measurements."""
    values = dict(measurements)
    values["port_text"] = "port kept" if values.get("port_preserved") else "port changed"
    for rule in rules:
        if all(values.get(name, _MISSING) == want for name, want in rule.when.items()):
            return CheckResult(
                CHECK_ID,
                rule.status,
                rule.summary.format(**values),
                dict(measurements),
                rule.remedy.format(**values) if rule.remedy else None,
            )
    raise ValueError(f"no rule of {CHECK_ID} covers {measurements!r}")


_CAUSES: tuple[tuple[type[BaseException], str], ...] = (
    (TransactionTimeout, "timeout"),
    (ServerUnreachable, "unreachable"),
    (TransactionFailed, "error-response"),
    (socket.gaierror, "dns"),
)
_NO_ROUTE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL})


def failure_measurements(server: str, exc: OSError | TransactionError, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """The measurements of a probe that could not reach the STUN server: ``cause`` names why."""
    cause = next((name for kind, name in _CAUSES if isinstance(exc, kind)), "socket-error")
    if cause == "socket-error" and isinstance(exc, OSError) and exc.errno in _NO_ROUTE:
        cause = "no-route"
    text = exc.detail if isinstance(exc, TransactionError) else (exc.strerror or str(exc))
    return {"server": server, "cause": cause, "error": text, "timeout_s": timeout_s}


def check_nat(ctx: CheckContext) -> CheckResult:
    """``network.nat``: needs a profile with ``network.stun_server``."""
    profile = profile_of(ctx)
    if profile is None:
        return needs_profile(CHECK_ID)
    if profile.stun_server is None:
        return CheckResult(
            CHECK_ID, Status.SKIP, "not checked: the profile names no STUN server",
            remedy="add stun_server = \"host:3478\" under [network] in the profile (your provider's STUN server)",
        )  # fmt: skip
    host, port = profile.stun_server.host, profile.stun_server.port or DEFAULT_STUN_PORT
    try:
        observation = probe_nat(host, port)
    except (OSError, TransactionError) as exc:
        log.info("network.nat: %s", exc)
        return assess_nat(failure_measurements(str(profile.stun_server), exc))
    return assess_nat(observation.measurements())


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m diagnostics.network.nat --profile FILE [--json]``: this one check, with phonekit's exit codes."""
    from rich.console import Console

    from diagnostics.render import render_json, render_text

    parser = argparse.ArgumentParser(prog="python -m diagnostics.network.nat", description="Run the network.nat check.")
    parser.add_argument("--profile", type=Path, required=True, metavar="FILE", help="account profile (TOML)")
    parser.add_argument("--json", action="store_true", help="print only JSON on stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    ctx = CheckContext(profile=args.profile, interactive=False)
    try:
        report = run_checks((CheckSpec(CHECK_ID, "NAT behaviour", check_nat),), ctx)
    except UsageError as exc:
        sys.stderr.write(f"phonekit: {exc}\n")
        return EXIT_USAGE
    if args.json:
        render_json(report, sys.stdout)
    else:
        render_text(report, Console())
    return exit_code(check.status for check in report.checks)


if __name__ == "__main__":
    sys.exit(main())
