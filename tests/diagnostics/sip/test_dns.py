"""``sip.dns``: RFC 3263 server location, pure on a fake resolver, then real against dnsmasq on loopback."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from diagnostics.checks import CheckContext
from diagnostics.errors import MeasurementError, UsageError
from diagnostics.profile import HostPort, Transport
from diagnostics.report import CheckResult, Status
from diagnostics.sip.dns import (
    CAUSES,
    DnsCause,
    DnsFailure,
    DnsQuery,
    Method,
    Naptr,
    Outcome,
    Record,
    RecordType,
    Resolution,
    Srv,
    Step,
    Target,
    check_dns,
    order_srv,
    resolve,
    resolve_targets,
)
from tests.testbed.dnsmasq import DnsServer, Zone
from tests.testbed.procs import free_port

# --------------------------------------------------------------------------- pure: a fake resolver


class FakeDns:
    """Answers from a table; every name not in it is NXDOMAIN. Records every question."""

    def __init__(self, table: Mapping[tuple[str, RecordType], tuple[Record, ...] | Outcome]) -> None:
        self.table = table
        self.asked: list[str] = []

    def __call__(self, name: str, rdtype: RecordType) -> Step:
        self.asked.append(f"{rdtype.value} {name}")
        found = self.table.get((name, rdtype))
        if isinstance(found, Outcome):
            return Step(rdtype, name, found, detail="timed out after 2 s" if found is Outcome.TIMEOUT else "")
        if found is None:
            known = any(n == name for n, _ in self.table)
            return Step(rdtype, name, Outcome.NODATA if known else Outcome.NXDOMAIN)
        return Step(rdtype, name, Outcome.ANSWER, found)


A, AAAA, SRV, NAPTR = RecordType.A, RecordType.AAAA, RecordType.SRV, RecordType.NAPTR


def test_srv_order_is_priority_then_weight() -> None:
    records = [Srv(10, 10, 5070, "b"), Srv(20, 100, 5090, "c"), Srv(10, 60, 5080, "a"), Srv(10, 0, 5060, "z")]
    assert [r.target for r in order_srv(records)] == ["a", "b", "z", "c"]


def test_srv_weighted_selection_follows_rfc_2782() -> None:
    records = [Srv(10, 10, 5070, "b"), Srv(10, 60, 5080, "a"), Srv(10, 0, 5060, "z"), Srv(5, 0, 5000, "first")]
    rng = random.Random(3263)
    firsts = [order_srv(records, rng)[1].target for _ in range(4000)]
    # Priority 5 always leads; then a number in 0..70 picks "a" for 60 of its 71 values, "b" for 10, "z" for 1.
    assert all(order_srv(records, rng)[0].target == "first" for _ in range(100))
    assert firsts.count("a") / 4000 == pytest.approx(60 / 71, abs=0.03)
    assert firsts.count("b") / 4000 == pytest.approx(10 / 71, abs=0.03)
    assert 0 < firsts.count("z") < 150


def test_naptr_picks_supported_services_by_order_and_preference() -> None:
    dns = FakeDns({
        ("example.com", NAPTR): (
            Naptr(20, 10, "s", "SIP+D2U", "", "_sip._udp.example.com"),
            Naptr(10, 20, "s", "SIP+D2T", "", "_sip._tcp.example.com"),
            Naptr(10, 10, "s", "SIPS+D2T", "", "_sips._tcp.example.com"),
            Naptr(5, 10, "s", "SIP+D2S", "", "_sip._sctp.example.com"),  # SCTP: not supported
            Naptr(5, 10, "u", "SIP+D2U", "!^.*$!sip:x@y!", ""),  # not an SRV pointer
        ),
        ("_sips._tcp.example.com", SRV): (Srv(0, 0, 5061, "sip.example.com"),),
        ("_sip._tcp.example.com", SRV): (Srv(0, 0, 5060, "sip.example.com"),),
        ("_sip._udp.example.com", SRV): (Srv(0, 0, 5060, "sip.example.com"),),
        ("sip.example.com", A): ("192.0.2.10",),
        ("sip.example.com", AAAA): ("2001:db8::10",),
    })  # fmt: skip
    res = resolve(HostPort("example.com"), Transport.UDP, dns)
    assert res.method is Method.NAPTR and res.cause is None
    assert [str(t) for t in res.targets] == [
        "tls sip.example.com = 192.0.2.10:5061", "tls sip.example.com = [2001:db8::10]:5061",
        "tcp sip.example.com = 192.0.2.10:5060", "tcp sip.example.com = [2001:db8::10]:5060",
        "udp sip.example.com = 192.0.2.10:5060", "udp sip.example.com = [2001:db8::10]:5060",
    ]  # fmt: skip
    assert "SRV _sip._sctp.example.com" not in dns.asked
    assert dns.asked.count("A sip.example.com") == 1  # each host asked once
    assert res.offered == (Transport.TLS, Transport.TCP, Transport.UDP)
    assert res.for_transport(Transport.TCP)[0].port == 5060


def test_without_naptr_the_profiles_transport_is_asked_first() -> None:
    dns = FakeDns({
        ("_sip._udp.example.com", SRV): (Srv(0, 0, 5060, "u.example.com"),),
        ("_sip._tcp.example.com", SRV): (Srv(0, 0, 5060, "t.example.com"),),
        ("u.example.com", A): ("192.0.2.1",),
        ("t.example.com", A): ("192.0.2.2",),
    })  # fmt: skip
    res = resolve(HostPort("example.com"), Transport.TCP, dns)
    assert res.method is Method.SRV
    assert dns.asked[:4] == ["NAPTR example.com", "SRV _sip._tcp.example.com", "A t.example.com", "AAAA t.example.com"]
    assert [t.transport for t in res.targets] == [Transport.TCP, Transport.UDP]


def test_without_srv_the_domain_is_asked_for_addresses_with_the_default_port() -> None:
    dns = FakeDns({("example.com", A): ("192.0.2.7",)})
    res = resolve(HostPort("example.com"), Transport.TLS, dns)
    assert res.method is Method.ADDRESS
    assert res.targets == (Target("example.com", 5061, Transport.TLS, "192.0.2.7"),)
    assert dns.asked == [
        "NAPTR example.com",
        "SRV _sips._tcp.example.com",
        "SRV _sip._tcp.example.com",
        "SRV _sip._udp.example.com",
        "A example.com",
        "AAAA example.com",
    ]


def test_srv_to_a_host_without_address_is_no_records_not_an_address_fallback() -> None:
    dns = FakeDns(
        {("_sip._udp.example.com", SRV): (Srv(0, 0, 5060, "gone.example.com"),), ("example.com", A): ("192.0.2.7",)}
    )
    res = resolve(HostPort("example.com"), Transport.UDP, dns)
    assert res.cause is DnsCause.NO_RECORDS
    assert "A example.com" not in dns.asked  # RFC 3263 §4.2: A/AAAA of the domain only without any SRV


def test_a_port_means_addresses_only_and_an_ip_means_no_lookup() -> None:
    dns = FakeDns({("sip.example.com", A): ("192.0.2.9",)})
    res = resolve(HostPort("sip.example.com", 5070), Transport.UDP, dns)
    assert (res.method, dns.asked) == (Method.HOST_PORT, ["A sip.example.com", "AAAA sip.example.com"])
    assert res.targets == (Target("sip.example.com", 5070, Transport.UDP, "192.0.2.9"),)
    for host, port, expected in (("192.0.2.5", None, "udp 192.0.2.5:5060"), ("::1", 5080, "udp [::1]:5080")):
        dns.asked.clear()
        res = resolve(HostPort(host, port), Transport.UDP, dns)
        assert (res.method, res.steps, dns.asked, str(res.targets[0])) == (Method.IP_LITERAL, (), [], expected)


def test_a_timeout_ends_the_walk_at_once() -> None:
    dns = FakeDns({("example.com", NAPTR): Outcome.TIMEOUT})
    res = resolve(HostPort("example.com"), Transport.UDP, dns, server="192.0.2.53:53")
    assert (res.cause, len(res.steps)) == (DnsCause.TIMEOUT, 1)
    assert res.describe_cause() == "no answer from the DNS server 192.0.2.53:53: NAPTR example.com timed out after 2 s"


@pytest.mark.parametrize(
    ("table", "cause"),
    [
        ({}, DnsCause.NXDOMAIN),
        ({("example.com", RecordType.A): ()}, DnsCause.NO_RECORDS),  # the name exists, nothing useful
        ({("example.com", NAPTR): Outcome.SERVER_ERROR, ("_sip._udp.example.com", SRV): Outcome.SERVER_ERROR,
          ("_sips._tcp.example.com", SRV): Outcome.SERVER_ERROR, ("_sip._tcp.example.com", SRV): Outcome.SERVER_ERROR,
          ("example.com", A): Outcome.SERVER_ERROR, ("example.com", AAAA): Outcome.SERVER_ERROR},
         DnsCause.SERVER_ERROR),
        ({("example.com", NAPTR): Outcome.NO_SERVER}, DnsCause.NO_SERVER),
        # a server that fails NAPTR (some do) but says the name does not exist
        ({("example.com", NAPTR): Outcome.SERVER_ERROR, ("example.com", A): Outcome.NXDOMAIN,
          ("example.com", AAAA): Outcome.NXDOMAIN}, DnsCause.NXDOMAIN),
    ],
)  # fmt: skip
def test_failure_causes(table: dict[tuple[str, RecordType], tuple[Record, ...] | Outcome], cause: DnsCause) -> None:
    res = resolve(HostPort("example.com"), Transport.UDP, FakeDns(table))
    assert res.cause is cause and res.targets == ()
    failure = DnsFailure(res)
    assert isinstance(failure, MeasurementError)
    assert failure.cause is cause and failure.remedy == CAUSES[cause].remedy
    assert str(failure) == f"DNS failure: {res.describe_cause()}"


def test_a_resolution_has_targets_or_a_cause() -> None:
    with pytest.raises(ValueError, match=r"example.com: a resolution has targets or a cause.*\(got 0 target\(s\)"):
        Resolution("example.com", None, Method.NAPTR, (), (), 1.0, "x")
    ok = resolve(HostPort("192.0.2.1"), Transport.UDP, FakeDns({}))
    with pytest.raises(ValueError, match=r"192\.0\.2\.1: resolved to 1 target"):
        DnsFailure(ok)


def test_the_system_resolver_without_servers_is_a_cause_of_its_own(tmp_path: Path) -> None:
    empty = tmp_path / "resolv.conf"
    empty.write_text("# DHCP has not run\n")
    query = DnsQuery(resolv_conf=str(empty))
    res = resolve(HostPort("example.com"), Transport.UDP, query, server=query.server)
    assert (query.server, res.cause, len(res.steps)) == ("system (none)", DnsCause.NO_SERVER, 1)
    assert res.describe_cause() == "no DNS server is configured on this machine"
    (tmp_path / "two.conf").write_text("nameserver 192.0.2.53\nnameserver 2001:db8::53\n")
    assert DnsQuery(resolv_conf=str(tmp_path / "two.conf")).server == "system (192.0.2.53:53, [2001:db8::53]:53)"


@pytest.mark.parametrize(
    ("domain", "registrar", "message"),
    [
        ("bad..example.com", None, "field 'account.domain' is not a DNS name: A DNS label is empty. "
                                   "(got 'bad..example.com')"),
        ("example.com", "x" * 64 + ".example.com:5060", "field 'account.registrar' is not a DNS name: "
                                                        "A DNS label is > 63 octets long. (got 'xxxx"),
        ("user@example.com", None, "field 'account.domain' must be host[:port] (got 'user@example.com')"),
    ],
)  # fmt: skip
def test_a_domain_that_cannot_be_a_dns_name_is_a_usage_error(
    tmp_path: Path, domain: str, registrar: str | None, message: str
) -> None:
    path = profile(tmp_path, domain, "127.0.0.1:53", registrar=registrar)
    with pytest.raises(UsageError) as raised:
        check_dns(CheckContext(profile=path))
    assert str(raised.value).startswith(f"{path}: {message}")


def test_no_profile_skips() -> None:
    result = check_dns(CheckContext())
    assert (result.status, result.summary) == (Status.SKIP, "not checked: no account profile given")


# --------------------------------------------------------------------------- real: dnsmasq on loopback


def profile(tmp_path: Path, domain: str, dns: str, transport: str = "udp", registrar: str | None = None) -> Path:
    path = tmp_path / f"{domain.replace(':', '_')}-{transport}.toml"
    lines = ["[account]", 'user = "1001"', f'domain = "{domain}"', f'transport = "{transport}"', 'password = "x"']
    if registrar:
        lines.append(f'registrar = "{registrar}"')
    lines += ["[network]", f'dns_server = "{dns}"']
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, 0o600)  # an inline password needs a private profile
    return path


def run(tmp_path: Path, server: DnsServer, domain: str, **kw: str) -> tuple[CheckContext, CheckResult]:
    ctx = CheckContext(profile=profile(tmp_path, domain, server.address, **kw))
    mark = server.log_mark()
    result = check_dns(ctx)
    assert [s["query"] for s in result.measurements["steps"]] == server.queries(mark)  # what the server got
    assert result.measurements["lookup_ms"] > 0
    return ctx, result


@pytest.mark.timeout(10)
def test_naptr_srv_a_chain_picks_tls_first(tmp_path: Path, dns_server: DnsServer) -> None:
    _, result = run(tmp_path, dns_server, Zone.NAPTR)
    m = result.measurements
    assert result.status is Status.PASS, result.summary
    assert m["method"] == "naptr"
    assert [(t["transport"], t["host"], t["port"], t["address"]) for t in m["targets"]] == [
        ("tls", f"tls.{Zone.NAPTR}", 5061, "127.0.1.1"),
        ("tls", f"tls.{Zone.NAPTR}", 5061, "::1"),
        ("tcp", f"tcp.{Zone.NAPTR}", 5060, "127.0.1.2"),
        ("udp", f"udp.{Zone.NAPTR}", 5060, "127.0.1.3"),
    ]
    assert f"SRV _sip._sctp.{Zone.NAPTR}" not in [s["query"] for s in m["steps"]]  # SCTP is not supported
    assert result.summary.startswith(f"{Zone.NAPTR}: 4 target(s) by NAPTR → SRV → A/AAAA in ")
    assert result.summary.endswith(f"; first tls tls.{Zone.NAPTR} = 127.0.1.1:5061")


@pytest.mark.timeout(10)
def test_srv_priority_and_weight_order_without_naptr(tmp_path: Path, dns_server: DnsServer) -> None:
    _, result = run(tmp_path, dns_server, Zone.SRV)
    assert result.measurements["method"] == "srv"
    found = [(t["host"].split(".")[0], t["port"], t["priority"], t["weight"]) for t in result.measurements["targets"]]
    assert found == [("a", 5080, 10, 60), ("b", 5070, 10, 10), ("c", 5090, 20, 100), ("t", 5060, 10, 0)]
    _, result = run(tmp_path, dns_server, Zone.SRV, transport="tcp")
    assert [t["transport"] for t in result.measurements["targets"]] == ["tcp", "udp", "udp", "udp"]


@pytest.mark.timeout(10)
def test_a_transport_the_server_does_not_offer_warns(tmp_path: Path, dns_server: DnsServer) -> None:
    _, result = run(tmp_path, dns_server, Zone.SRV, transport="tls")
    assert result.status is Status.WARN
    assert result.summary.endswith("; the server offers tcp, udp, but the profile uses tls")  # secure ones first
    assert result.remedy == (
        'set transport = "tcp" in the profile (or another one the server offers: tcp, udp), '
        "or ask the provider whether tls works"
    )


@pytest.mark.timeout(10)
def test_no_srv_falls_back_to_a_with_the_default_port(tmp_path: Path, dns_server: DnsServer) -> None:
    for transport, port in (("udp", 5060), ("tls", 5061)):
        _, result = run(tmp_path, dns_server, Zone.PLAIN, transport=transport)
        assert result.status is Status.PASS
        assert result.measurements["method"] == "address"
        assert result.measurements["targets"] == [
            {
                "host": Zone.PLAIN,
                "port": port,
                "transport": transport,
                "address": "127.0.3.1",
                "priority": 0,
                "weight": 0,
            }
        ]


@pytest.mark.timeout(10)
def test_ip_literal_and_registrar_with_port(tmp_path: Path, dns_server: DnsServer) -> None:
    _, result = run(tmp_path, dns_server, "127.0.0.1")
    m = result.measurements
    assert (m["method"], m["steps"], m["query_count"]) == ("ip-literal", [], 0)
    assert result.summary.startswith("127.0.0.1: 1 target(s) by an IP address, no lookup")
    _, result = run(tmp_path, dns_server, Zone.MISSING, registrar=f"{Zone.PLAIN}:5070")  # the registrar wins
    m = result.measurements
    assert (m["method"], m["resolved_from"], m["name"]) == ("host-port", "registrar", Zone.PLAIN)
    assert [s["query"] for s in m["steps"]] == [f"A {Zone.PLAIN}", f"AAAA {Zone.PLAIN}"]
    assert [(t["address"], t["port"]) for t in m["targets"]] == [("127.0.3.1", 5070)]


@pytest.mark.timeout(10)
def test_a_name_that_does_not_exist_fails_with_nxdomain(tmp_path: Path, dns_server: DnsServer) -> None:
    ctx, result = run(tmp_path, dns_server, Zone.MISSING)
    assert (result.status, result.measurements["cause"]) == (Status.FAIL, "nxdomain")
    assert result.summary == f"DNS failure: {Zone.MISSING} does not exist in DNS (NXDOMAIN from {dns_server.address})"
    assert result.remedy is not None and result.remedy.startswith("check the domain (or registrar) in the profile")
    with pytest.raises(DnsFailure) as raised:
        resolve_targets(ctx)
    assert raised.value.cause is DnsCause.NXDOMAIN
    assert "check the DNS settings" in raised.value.remedy


@pytest.mark.timeout(10)
def test_names_without_sip_records_and_refused_names(tmp_path: Path, dns_server: DnsServer) -> None:
    for name in (Zone.EMPTY, Zone.DANGLING):
        _, result = run(tmp_path, dns_server, name)
        assert (result.status, result.measurements["cause"]) == (Status.FAIL, "no_records"), name
        assert result.remedy is not None and "set registrar" in result.remedy
    _, result = run(tmp_path, dns_server, Zone.OUTSIDE)
    assert result.measurements["cause"] == "server_error"
    assert result.summary.endswith("every query for outside.invalid (answered REFUSED)")


@pytest.mark.timeout(10)
def test_a_dns_server_that_does_not_answer_fails_with_timeout_quickly(tmp_path: Path) -> None:
    silent = f"127.0.0.1:{free_port()}"  # nothing listens there
    ctx = CheckContext(profile=profile(tmp_path, Zone.NAPTR, silent))
    start = time.monotonic()
    result = check_dns(ctx)
    elapsed_s = time.monotonic() - start
    assert (result.status, result.measurements["cause"]) == (Status.FAIL, "timeout")
    assert result.summary == (
        f"DNS failure: no answer from the DNS server {silent}: NAPTR {Zone.NAPTR} timed out after 2 s"
    )
    assert result.measurements["query_count"] == 1
    assert 1500 < result.measurements["lookup_ms"] < 3000
    assert elapsed_s < 3.0
    assert result.remedy is not None and "firewall" in result.remedy
    start = time.monotonic()
    with pytest.raises(DnsFailure, match="timed out"):
        resolve_targets(ctx)  # the run's failure is remembered, not waited for again
    assert time.monotonic() - start < 0.1


@pytest.mark.timeout(10)
def test_one_resolution_per_run(tmp_path: Path, dns_server: DnsServer) -> None:
    ctx = CheckContext(profile=profile(tmp_path, Zone.SRV, dns_server.address))
    mark = dns_server.log_mark()
    targets = resolve_targets(ctx)
    asked = len(dns_server.queries(mark))
    assert resolve_targets(ctx) == targets
    assert check_dns(ctx).measurements["query_count"] == asked
    assert len(dns_server.queries(mark)) == asked  # nothing asked twice
    assert [t.port for t in targets] == [5080, 5070, 5090, 5060]


def test_the_public_api_is_exactly_all() -> None:
    from diagnostics.sip import dns

    defined = {
        n for n, v in vars(dns).items() if not n.startswith("_") and getattr(v, "__module__", None) == dns.__name__
    }
    assert defined <= set(dns.__all__) <= set(vars(dns))
