"""``sip.register``: real registrations against the test bed, every cause in the table, and no password leaks."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Sequence

import pytest

from diagnostics.checks import CheckSpec, run_checks
from diagnostics.profile import Transport
from diagnostics.report import Status
from diagnostics.secret import Secret
from diagnostics.sip import digest
from diagnostics.sip.message import parse
from diagnostics.sip.register import RegisterParams, check_register, register
from tests.diagnostics.sip.conftest import ProfileFactory, Reply, ScriptedServer, context
from tests.testbed.kamailio import CertVariant, Kamailio

pytestmark = [pytest.mark.timeout(30)]

WRONG_CAUSE = "wrong password, or the user/auth user is unknown to the server"


@pytest.mark.testbed
@pytest.mark.parametrize(("user", "transport"), [("1001", "udp"), ("1002", "tcp"), ("1003", "tls")])
def test_right_password_registers_and_leaves_no_binding(
    kamailio: Kamailio, write_profile: ProfileFactory, user: str, transport: str
) -> None:
    kamailio.unregister(user)
    port = kamailio.port(transport)  # type: ignore[arg-type]
    profile = write_profile(user=user, password=kamailio.users[user], registrar=f"127.0.0.1:{port}",
                            transport=transport, ca_file=kamailio.ca_path)  # fmt: skip
    mark = kamailio.log_position()
    result = check_register(context(profile))
    assert result.status is Status.PASS, result
    m = result.measurements
    assert result.summary == (f"registered sip:{user}@127.0.0.1 at {transport}:127.0.0.1:{port} in "
                              f"{m['register_ms']:.1f} ms (200 OK); test binding removed")  # fmt: skip
    assert 0 < m["register_ms"] < 200 and m["requests"] >= 3  # challenge, answer, removal
    assert (m["realm"], m["digest_algorithm"], m["digest_qop"]) == ("127.0.0.1", "MD5", None)
    assert m["unregistered"] is True and m["expires_s"] == 60
    assert not kamailio.registered(user), "the check left a binding behind"
    registers = kamailio.requests(mark, "REGISTER")
    assert {r.transport for r in registers} == {transport} and len(registers) == m["requests"]


@pytest.mark.testbed
@pytest.mark.parametrize(("user", "password"), [("1003", "not-the-password"), ("9999", "anything")])
def test_wrong_password_or_unknown_user_fails_with_that_cause(
    kamailio: Kamailio, write_profile: ProfileFactory, user: str, password: str
) -> None:
    profile = write_profile(user=user, password=password, registrar=f"127.0.0.1:{kamailio.udp_port}")
    result = check_register(context(profile))
    assert result.status is Status.FAIL and result.measurements["outcome"] == "auth-rejected"
    assert result.summary == (f"udp:127.0.0.1:{kamailio.udp_port} refused the credentials of '{user}' "
                              "(401 Unauthorized after answering the challenge of realm '127.0.0.1'): "
                              + WRONG_CAUSE)  # fmt: skip
    assert result.remedy is not None and "check the password" in result.remedy
    assert not kamailio.registered(user)


def closed_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(("transport", "kind"), [("udp", socket.SOCK_DGRAM), ("tcp", socket.SOCK_STREAM)])
def test_closed_port_fails_fast_as_unreachable(write_profile: ProfileFactory, transport: str, kind: int) -> None:
    profile = write_profile(user="1001", password="x", registrar=f"127.0.0.1:{closed_port(kind)}",
                            transport=transport)  # fmt: skip
    start = time.perf_counter()
    result = check_register(context(profile))
    assert time.perf_counter() - start < 0.5
    assert result.status is Status.FAIL and result.measurements["outcome"] == "unreachable"
    assert "refused at once (Connection refused (ECONNREFUSED)" in result.summary


@pytest.mark.testbed
def test_expired_certificate_fails_registration_with_its_cause(
    bad_cert_kamailio: Callable[[CertVariant], Kamailio], write_profile: ProfileFactory
) -> None:
    server = bad_cert_kamailio("expired")
    profile = write_profile(user="1001", password=server.users["1001"], registrar=f"127.0.0.1:{server.tls_port}",
                            transport="tls", ca_file=server.ca_path)  # fmt: skip
    result = check_register(context(profile))
    assert result.status is Status.FAIL and result.measurements["outcome"] == "tls-expired"
    assert "expired on" in result.summary and result.remedy is not None and "renewed" in result.remedy


def test_dns_failure_is_its_own_cause(write_profile: ProfileFactory) -> None:
    """No registrar: the domain goes through RFC 3263 location, here asking a DNS port on loopback that is closed."""
    dns_port = closed_port(socket.SOCK_DGRAM)
    profile = write_profile(user="1001", password="x", registrar=None, domain="sip.example.invalid",
                            dns_server=f"127.0.0.1:{dns_port}")  # fmt: skip
    result = check_register(context(profile))
    assert result.status is Status.FAIL and result.measurements["outcome"] == "dns"
    assert result.summary.startswith("DNS failure:") and result.remedy


CHALLENGE = Reply(401, "Unauthorized", ['WWW-Authenticate: Digest realm="scripted", nonce="n1", qop="auth"'])


@pytest.mark.parametrize(
    ("script", "outcome", "words"),
    [
        ([CHALLENGE, Reply(403, "Forbidden")], "forbidden",
         "identity or realm does not match the credentials, or the account is disabled"),
        ([Reply(404, "Not Found")], "not-found", "the server does not know the user or domain"),
        ([CHALLENGE, Reply(503, "Service Unavailable")], "unavailable", "the server is unavailable"),
        ([Reply(408, "Request Timeout")], "timeout", "no final answer to REGISTER (answered 408 Request Timeout)"),
        ([Reply(500, "Server Internal Error")], "server-error", "the server failed"),
        ([Reply(302, "Moved", ["Contact: <sip:other.example.com>"])], "redirected", "to <sip:other.example.com>"),
        ([Reply(488, "Not Acceptable Here")], "rejected", "refused REGISTER: 488 Not Acceptable Here"),
        ([Reply(401, "Unauthorized", ['WWW-Authenticate: Digest realm="x", nonce="y", algorithm=SHA-512-256'])],
         "unsupported-auth", "offered: SHA-512-256"),
    ],
)  # fmt: skip
def test_every_cause_from_a_scripted_server(
    scripted_server: Callable[[Sequence[Reply]], ScriptedServer], write_profile: ProfileFactory,
    script: list[Reply], outcome: str, words: str,
) -> None:  # fmt: skip
    server = scripted_server(script)
    profile = write_profile(user="1001", password="pw", registrar=f"127.0.0.1:{server.port}")
    result = check_register(context(profile))
    assert result.status is Status.FAIL and result.measurements["outcome"] == outcome
    assert words in result.summary, result.summary
    assert result.remedy


def test_proxy_challenge_and_interval_too_brief_are_answered(
    scripted_server: Callable[[Sequence[Reply]], ScriptedServer]
) -> None:
    server = scripted_server([
        Reply(407, "Proxy Authentication Required", ['Proxy-Authenticate: Digest realm="p", nonce="n", qop="auth"']),
        Reply(423, "Interval Too Brief", ["Min-Expires: 3600"]),
        Reply(200, "OK"),
    ])  # fmt: skip
    params = RegisterParams("127.0.0.1", server.port, Transport.UDP, "1001", "example.com", Secret("pw"))
    result = register(params, timeout_s=2)
    assert result.registered and result.unregistered and result.requests == 4
    requests = [parse(data) for data in server.received]
    assert "Proxy-Authorization" in requests[1].headers and "Authorization" not in requests[1].headers
    assert requests[2].headers.get("Expires") == "3600" and requests[3].headers.get("Expires") == "0"
    assert [r.cseq.number for r in requests] == [1, 2, 3, 4]
    assert len({r.call_id for r in requests}) == 1
    # Removal names exactly our Contact (never "*": that would log out the user's real phones).
    assert requests[3].headers.get("Contact") == requests[0].headers.get("Contact") != "*"


def test_silence_is_a_timeout(write_profile: ProfileFactory) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        profile = write_profile(user="1001", password="x", registrar=f"127.0.0.1:{silent.getsockname()[1]}")
        result = check_register(context(profile), timeout_s=0.6)
    assert result.status is Status.FAIL and result.measurements["outcome"] == "timeout"
    assert result.summary.endswith("no final answer to REGISTER (nothing came back within 0.6 s)")


@pytest.mark.testbed
def test_the_password_appears_in_no_log_result_or_exception(
    kamailio: Kamailio, write_profile: ProfileFactory, caplog: pytest.LogCaptureFixture,
    scripted_server: Callable[[Sequence[Reply]], ScriptedServer],
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    right, wrong = kamailio.users["1004"], "Wr0ng-pa55word-Zq9"
    unsupported = scripted_server([Reply(401, "Unauthorized", ['WWW-Authenticate: Digest realm="x", nonce="y", '
                                                               "algorithm=SHA-512-256"])])  # fmt: skip
    cases = [
        (right, f"127.0.0.1:{kamailio.udp_port}", "udp", Status.PASS),
        (right, f"127.0.0.1:{kamailio.tls_port}", "tls", Status.PASS),
        (wrong, f"127.0.0.1:{kamailio.udp_port}", "udp", Status.FAIL),
        (right, f"127.0.0.1:{unsupported.port}", "udp", Status.FAIL),
        (right, f"127.0.0.1:{closed_port(socket.SOCK_STREAM)}", "tcp", Status.FAIL),
    ]
    texts: list[str] = []
    for password, registrar, transport, status in cases:
        profile = write_profile(user="1004", password=password, registrar=registrar, transport=transport,
                                ca_file=kamailio.ca_path)  # fmt: skip
        report = run_checks([CheckSpec("sip.register", "Registration", check_register)], context(profile))
        assert report.checks[0].status is status, report.checks[0]
        texts.append(json.dumps(report.to_dict()))
        params = RegisterParams("127.0.0.1", int(registrar.rsplit(":", 1)[1]), Transport(transport), "1004",
                                "127.0.0.1", Secret(password), tls_ca_file=kamailio.ca_path)  # fmt: skip
        result = register(params)
        texts += [repr(params), repr(result), str(result.detail)]
        if result.exchange is not None:
            texts.append(result.exchange.sent.decode() + result.exchange.received.decode())
    with pytest.raises(digest.DigestError) as info:  # an exception on the way to hashing it
        digest.authorization(digest.Challenge("r", "n", algorithm="SHA-512-256"), "REGISTER", "sip:x", "u",
                             Secret(right))  # fmt: skip
    texts.append(str(info.value))
    assert "DEBUG" in caplog.text and "REGISTER sip:127.0.0.1 SIP/2.0" in caplog.text  # the messages were logged
    for text in (caplog.text, *texts):
        assert right not in text and wrong not in text
    assert not kamailio.registered("1004")
