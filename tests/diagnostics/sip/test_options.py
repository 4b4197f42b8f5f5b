"""``sip.options`` against real servers: the test bed's Kamailio, closed and silent ports, bad certificates."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from diagnostics.checks import CheckContext
from diagnostics.profile import Transport
from diagnostics.report import Status
from diagnostics.sip.options import OptionsResult, assess_options, check_options
from diagnostics.sip.transport import TlsInfo
from tests.diagnostics.sip.conftest import ProfileFactory, context
from tests.testbed.kamailio import CertVariant, Kamailio

pytestmark = [pytest.mark.timeout(30)]


@pytest.mark.testbed
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_options_pass_over_each_transport_with_rtt(
    kamailio: Kamailio, write_profile: ProfileFactory, transport: str
) -> None:
    port = kamailio.port(transport)  # type: ignore[arg-type]
    profile = write_profile(user="1001", password="unused", registrar=f"127.0.0.1:{port}", transport=transport,
                            ca_file=kamailio.ca_path)  # fmt: skip
    mark = kamailio.log_position()
    result = check_options(context(profile))
    assert result.status is Status.PASS, result
    m = result.measurements
    assert result.summary == f"{transport}:127.0.0.1:{port} answers: 200 OK in {m['rtt_ms']:.1f} ms"
    assert 0 < m["rtt_ms"] < 100 and m["status_code"] == 200 and m["server"].startswith("kamailio")
    assert m["local_address"].startswith("127.0.0.1:") and m["remote_address"] == f"127.0.0.1:{port}"
    # The other transports were tried too (same host, SIP's port convention), as extra measurements.
    others = m["other_transports"]
    assert set(others) == {"udp", "tcp", "tls"} - {transport}
    assert all(o["status_code"] == 200 for o in others.values()), others
    assert {r.transport for r in kamailio.requests(mark, "OPTIONS")} == {"udp", "tcp", "tls"}
    if transport == "tls":
        assert m["tls_verified"] and m["tls_hostname_ok"] and m["tls_subject"] == "CN=localhost"
        assert 29 < m["tls_days_left"] <= 30
    json.dumps(result.to_dict())  # the report's JSON form takes every measurement


def closed_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("transport", "kind", "why"), [("udp", socket.SOCK_DGRAM, "ICMP port unreachable"),
                                                        ("tcp", socket.SOCK_STREAM, "TCP reset")])  # fmt: skip
def test_closed_port_fails_at_once_as_unreachable(
    write_profile: ProfileFactory, transport: str, kind: int, why: str
) -> None:
    port = closed_port(kind)
    profile = write_profile(user="1001", password="unused", registrar=f"127.0.0.1:{port}", transport=transport)
    start = time.perf_counter()
    result = check_options(context(profile))
    assert time.perf_counter() - start < 0.5
    assert result.status is Status.FAIL and result.measurements["outcome"] == "unreachable"
    assert result.summary == (f"{transport}:127.0.0.1:{port}: refused at once (Connection refused (ECONNREFUSED): "
                              f"nothing listens on that port ({why}))")  # fmt: skip
    assert result.remedy is not None and "check account.registrar" in result.remedy
    assert "other_transports" not in result.measurements  # no extra probes of a dead server


def test_silent_port_fails_as_no_answer(write_profile: ProfileFactory) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        profile = write_profile(user="1001", password="unused", registrar=f"127.0.0.1:{port}")
        result = check_options(context(profile), timeout_s=0.8)
    assert result.status is Status.FAIL and result.measurements["outcome"] == "no-answer"
    assert result.summary == f"udp:127.0.0.1:{port}: no answer within 0.8 s"
    assert result.remedy is not None and "firewall silently drops SIP" in result.remedy


@pytest.mark.testbed
@pytest.mark.parametrize(
    ("variant", "cause", "summary", "remedy"),
    [
        ("expired", "expired", "the server's TLS certificate expired on {yesterday} (CN=localhost)",
         "certificate must be renewed"),
        ("wrong_host", "hostname-mismatch",
         "the server's TLS certificate is not for '127.0.0.1' (it names DNS:wrong-host.invalid)",
         "use the name the certificate carries"),
    ],
)  # fmt: skip
def test_bad_certificates_fail_with_cause_and_remedy(
    bad_cert_kamailio: Callable[[CertVariant], Kamailio], write_profile: ProfileFactory,
    variant: CertVariant, cause: str, summary: str, remedy: str,
) -> None:  # fmt: skip
    server = bad_cert_kamailio(variant)
    profile = write_profile(user="1001", password="unused", registrar=f"127.0.0.1:{server.tls_port}",
                            transport="tls", ca_file=server.ca_path)  # fmt: skip
    result = check_options(context(profile))
    assert result.status is Status.FAIL, result
    m = result.measurements
    assert m["outcome"] == f"tls-{cause}" and m["tls_error"] == cause and m["tls_verified"] is False
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert result.summary == f"tls:127.0.0.1:{server.tls_port}: " + summary.format(yesterday=yesterday)
    assert result.remedy is not None and remedy in result.remedy
    if variant == "expired":
        assert "clock" in result.remedy and m["tls_days_left"] < 0
    else:
        assert m["tls_hostname_ok"] is False and m["tls_san"] == ["DNS:wrong-host.invalid"]


@pytest.mark.testbed
def test_unknown_ca_fails_as_untrusted(kamailio: Kamailio, write_profile: ProfileFactory) -> None:
    profile = write_profile(user="1001", password="unused", registrar=f"127.0.0.1:{kamailio.tls_port}",
                            transport="tls")  # fmt: skip
    result = check_options(context(profile))
    assert result.status is Status.FAIL and result.measurements["outcome"] == "tls-untrusted"
    assert result.remedy is not None and "set tls.ca_file" in result.remedy


@pytest.mark.testbed
def test_without_registrar_the_domain_is_located_by_the_dns_module(
    kamailio: Kamailio, write_profile: ProfileFactory
) -> None:
    """An IP literal as domain: RFC 3263 §4.2 needs no lookup, so this stays on loopback."""
    profile = write_profile(user="1001", password="unused", registrar=None, domain=kamailio.host)
    result = check_options(context(profile))
    assert result.status is Status.PASS and result.measurements["target"] == f"udp:{kamailio.host}:5060"


def test_without_profile_it_is_skipped() -> None:
    result = check_options(CheckContext(interactive=False))
    assert result.status is Status.SKIP and result.remedy is not None and "--profile" in result.remedy


def answered(days_left: float | None = None, status: int = 200, reason: str = "OK") -> OptionsResult:
    tls = None
    if days_left is not None:
        not_after = datetime(2030, 1, 15, tzinfo=UTC)
        tls = TlsInfo(True, True, "CN=sip.example.com", "CN=CA", not_after=not_after, days_left=days_left)
    return OptionsResult("tls:sip.example.com:5061", "sip.example.com", 5061, Transport.TLS, "answered",
                         status=status, reason=reason, rtt_ms=12.5, tls=tls)  # fmt: skip


def test_verdicts_without_network() -> None:
    assert assess_options([answered(status=405, reason="Method Not Allowed")]).status is Status.PASS
    soon = assess_options([answered(days_left=5.2)])
    assert soon.status is Status.WARN
    assert soon.summary == ("tls:sip.example.com:5061 answers (200 OK, 12.5 ms), but its TLS certificate expires "
                            "in 5 days (2030-01-15)")  # fmt: skip
    assert soon.remedy == ("the server's certificate must be renewed before 2030-01-15 "
                           "(tell the provider or server admin)")  # fmt: skip
    assert assess_options([answered(days_left=30)]).status is Status.PASS
    silent = replace(answered(), target="udp:192.0.2.1:5060", outcome="no-answer", status=None, timeout_s=3)
    partly = assess_options([answered(), silent])
    assert partly.status is Status.WARN
    assert partly.summary == ("1 of 2 servers answer; udp:192.0.2.1:5060 does not: "
                              "udp:192.0.2.1:5060: no answer within 3 s")  # fmt: skip
    assert len(partly.measurements["targets"]) == 2
