"""network.nat: RFC 5780 classification and the verdict table; the check against coturn on loopback and
through real NATs (nftables in a router namespace) between a client and a server namespace."""

from __future__ import annotations

import errno
import inspect
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diagnostics.checks import CheckContext
from diagnostics.network import nat
from diagnostics.network.nat import (
    CHECK_ID,
    FilteringBehaviour,
    MappingBehaviour,
    assess_nat,
    check_nat,
    classify_filtering,
    classify_mapping,
    failure_measurements,
)
from diagnostics.network.stun import (
    Address,
    Message,
    MessageClass,
    Method,
    ServerUnreachable,
    TransactionFailed,
    TransactionTimeout,
)
from diagnostics.report import CheckResult, Status
from tests.testbed import procs
from tests.testbed.coturn import Coturn
from tests.testbed.netns import (
    ADDRESS_DEPENDENT_PORT,
    CLIENT_IP,
    ROUTER_SERVER_IP,
    SERVER_ALT_IP,
    SERVER_IP,
    NatMode,
    Topology,
    topology_fixture,
)
from tests.testbed.procs import free_port

PASSWORD_ENV = "PHONEKIT_NAT_TEST_PASSWORD"
TRAVERSAL = "TURN server"

LOCAL = Address("192.168.1.10", 5060)
OUT = Address("203.0.113.5", 5060)
OUT2 = Address("203.0.113.5", 61000)
OUT3 = Address("203.0.113.5", 62000)


@pytest.mark.parametrize(
    ("test1", "test2", "test3", "expected"),
    [
        (LOCAL, None, None, MappingBehaviour.ENDPOINT_INDEPENDENT),  # no NAT: done after test I
        (OUT, OUT, None, MappingBehaviour.ENDPOINT_INDEPENDENT),
        (OUT, OUT2, OUT2, MappingBehaviour.ADDRESS_DEPENDENT),
        (OUT, OUT2, OUT3, MappingBehaviour.ADDRESS_AND_PORT_DEPENDENT),
        (OUT, None, None, MappingBehaviour.UNKNOWN),  # test II lost, or no OTHER-ADDRESS
        (OUT, OUT2, None, MappingBehaviour.UNKNOWN),
    ],
)
def test_mapping_follows_rfc5780_4_3(
    test1: Address, test2: Address | None, test3: Address | None, expected: MappingBehaviour
) -> None:
    assert classify_mapping(LOCAL, test1, test2, test3) is expected


@pytest.mark.parametrize(
    ("change_both", "change_port", "expected"),
    [
        (True, None, FilteringBehaviour.ENDPOINT_INDEPENDENT),
        (False, True, FilteringBehaviour.ADDRESS_DEPENDENT),
        (False, False, FilteringBehaviour.ADDRESS_AND_PORT_DEPENDENT),
        (None, None, FilteringBehaviour.UNKNOWN),
        (False, None, FilteringBehaviour.UNKNOWN),
    ],
)
def test_filtering_follows_rfc5780_4_4(
    change_both: bool | None, change_port: bool | None, expected: FilteringBehaviour
) -> None:
    assert classify_filtering(change_both, change_port) is expected


def seen(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "server": "198.51.100.1:3478", "local_address": "192.168.1.10:5060", "mapped_address": "203.0.113.5:5060",
        "nat_present": True, "port_preserved": True, "mapping_behaviour": "endpoint-independent",
        "filtering_behaviour": "address-and-port-dependent", "rtt_ms": 21.5, "other_address": "198.51.100.2:3479",
        "behaviour_detection": "rfc5780",
    }  # fmt: skip
    return {**base, **changes}


@pytest.mark.parametrize(
    ("measurements", "status", "summary"),
    [
        (seen(nat_present=False, mapped_address="192.168.1.10:5060"), Status.PASS,
         "no NAT: the STUN server 198.51.100.1:3478 sees this machine's own address 192.168.1.10:5060"),
        (seen(), Status.PASS,
         "NAT present (203.0.113.5:5060 outside for 192.168.1.10:5060, port kept), endpoint-independent mapping: "
         "the phone needs rport/keep-alives; usually fine"),
        (seen(mapping_behaviour="address-dependent"), Status.WARN,
         "address-dependent NAT (203.0.113.5:5060 outside for 192.168.1.10:5060, a new mapping per server address): "
         "media will fail one way without TURN/ICE or an outbound proxy/SBC that latches"),
        (seen(mapping_behaviour="address-and-port-dependent", port_preserved=False), Status.WARN,
         "symmetric NAT (203.0.113.5:5060 outside for 192.168.1.10:5060, a new mapping per server address and port): "
         "media will fail one way without TURN/ICE or an outbound proxy/SBC that latches"),
        (seen(mapping_behaviour="unknown", port_preserved=False, behaviour_detection="limited"), Status.PASS,
         "NAT present (203.0.113.5:5060 outside for 192.168.1.10:5060, port changed); the phone needs "
         "rport/keep-alives; NAT behaviour detection was limited: the STUN server offers no second address "
         "(RFC 5780 OTHER-ADDRESS)"),
        ({"server": "stun.example.com:3478", "cause": "timeout", "error": "…", "timeout_s": 3.0}, Status.FAIL,
         "the STUN server stun.example.com:3478 did not answer within 3 s"),
        ({"server": "stun.example.com:3478", "cause": "unreachable", "error": "Connection refused",
          "timeout_s": 3.0}, Status.FAIL,
         "the STUN server stun.example.com:3478 is unreachable: Connection refused"),
        ({"server": "stun.example.com:3478", "cause": "error-response", "error": "answered error 420 Unknown Attribute",
          "timeout_s": 3.0}, Status.FAIL,
         "the STUN server stun.example.com:3478 answered error 420 Unknown Attribute"),
        ({"server": "stun.example.invalid", "cause": "dns", "error": "Name or service not known",
          "timeout_s": 3.0}, Status.FAIL,
         "the STUN server name in stun.example.invalid does not resolve: Name or service not known"),
    ],
)  # fmt: skip
def test_verdict_table(measurements: dict[str, Any], status: Status, summary: str) -> None:
    result = assess_nat(measurements)
    assert (result.id, result.status, result.summary) == (CHECK_ID, status, summary)
    assert result.measurements == measurements
    if status is Status.WARN:
        assert result.remedy is not None and TRAVERSAL in result.remedy and "latches" in result.remedy


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (TransactionTimeout(Address("192.0.2.1", 3478), 3.0, 3), "timeout"),
        (ServerUnreachable(Address("192.0.2.1", 3478), ConnectionRefusedError(errno.ECONNREFUSED, "refused")),
         "unreachable"),
        (TransactionFailed("error 400", Address("192.0.2.1", 3478), Message(Method.BINDING, MessageClass.ERROR)),
         "error-response"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "no-route"),
        (PermissionError(errno.EPERM, "Operation not permitted"), "socket-error"),
    ],
)  # fmt: skip
def test_failures_name_their_cause(error: Exception, cause: str) -> None:
    assert isinstance(error, (OSError, TransactionTimeout, ServerUnreachable, TransactionFailed))
    measurements = failure_measurements("192.0.2.1:3478", error)
    assert measurements["cause"] == cause
    result = assess_nat(measurements)
    assert result.status is Status.FAIL and result.remedy


# --- the check with profiles ----------------------------------------------------------------------


def write_profile(directory: Path, stun_server: str | None) -> Path:
    path = directory / "alice.toml"
    network = f'[network]\nstun_server = "{stun_server}"\n' if stun_server else ""
    path.write_text(f'[account]\nuser = "1001"\ndomain = "example.test"\npassword_env = "{PASSWORD_ENV}"\n{network}')
    return path


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "not-a-real-password")


def run_check(profile: Path, net: Topology | None = None) -> CheckResult:
    ctx = CheckContext(profile=profile, interactive=False)
    return check_nat(ctx) if net is None else net.call("client", check_nat, ctx)


def test_public_api_is_all() -> None:
    defined = {
        name for name, obj in vars(nat).items()
        if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__ == nat.__name__
    }  # fmt: skip
    assert defined <= set(nat.__all__) <= set(vars(nat))


def test_cli_reports_a_bad_profile_as_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert nat.main(["--profile", str(tmp_path / "missing.toml"), "--json"]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"phonekit: {tmp_path / 'missing.toml'}: no such profile file\n")


def test_without_profile_it_asks_for_one() -> None:
    result = check_nat(CheckContext())
    assert (result.status, result.summary) == (Status.SKIP, "not checked: no account profile given")


def test_profile_without_stun_server_is_skipped_with_the_reason(tmp_path: Path) -> None:
    result = run_check(write_profile(tmp_path, None))
    assert (result.status, result.summary) == (Status.SKIP, "not checked: the profile names no STUN server")
    assert result.remedy is not None and "stun_server" in result.remedy


@pytest.mark.timeout(15)
def test_loopback_coturn_sees_our_own_address(coturn: Coturn, tmp_path: Path) -> None:
    result = run_check(write_profile(tmp_path, f"{coturn.host}:{coturn.port}"))
    m = result.measurements
    assert result.status is Status.PASS, result
    assert m["nat_present"] is False and m["port_preserved"] is True
    assert m["mapped_address"] == m["local_address"] and m["local_address"].startswith("127.0.0.1:")
    assert m["mapping_behaviour"] == "endpoint-independent"
    # The session's coturn has one address: no OTHER-ADDRESS, so filtering was not tested.
    assert (m["behaviour_detection"], m["filtering_behaviour"], m["other_address"]) == ("limited", "unknown", None)
    assert 0 < m["rtt_ms"] < 1000
    assert (
        result.summary
        == f"no NAT: the STUN server {coturn.host}:{coturn.port} sees this machine's own address "
        + (m["local_address"])
    )


@pytest.fixture(scope="module")
def loopback_rfc5780(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """coturn on 127.0.0.1 and 127.0.0.2 (loopback has all of 127/8): an RFC 5780 server without namespaces."""
    server = Coturn(tmp_path_factory.mktemp("coturn5780"), port=free_port(), alt_host="127.0.0.2", alt_port=free_port())
    try:
        server.start()
    except procs.TestbedError as exc:
        server.stop()
        pytest.fail(f"test bed: coturn (RFC 5780 on loopback) did not start: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.mark.timeout(15)
def test_loopback_rfc5780_server_runs_every_behaviour_test(loopback_rfc5780: Coturn, tmp_path: Path) -> None:
    server = loopback_rfc5780
    result = run_check(write_profile(tmp_path, f"127.0.0.1:{server.port}"))
    m = result.measurements
    assert result.status is Status.PASS, result
    assert m["other_address"] == f"127.0.0.2:{server.alt_port}"
    assert m["behaviour_detection"] == "rfc5780"
    # Nothing filters on loopback: the answer from the other IP and port came back.
    assert (m["nat_present"], m["mapping_behaviour"], m["filtering_behaviour"]) == (
        False, "endpoint-independent", "endpoint-independent",
    )  # fmt: skip


@pytest.mark.timeout(15)
def test_closed_stun_port_fails_at_once(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: the kernel answers ICMP port unreachable
    start = time.monotonic()
    result = run_check(write_profile(tmp_path, f"127.0.0.1:{port}"))
    assert time.monotonic() - start < 1.0
    assert (result.status, result.measurements["cause"]) == (Status.FAIL, "unreachable")
    assert result.summary == f"the STUN server 127.0.0.1:{port} is unreachable: Connection refused"
    assert result.remedy is not None and "network.stun_server" in result.remedy


# --- through real NATs in network namespaces --------------------------------------------------------

net = topology_fixture(scope="module")


@pytest.fixture(scope="module")
def stun_servers(net: Topology, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Coturn, Coturn]]:
    """In the server namespace: coturn with two addresses (RFC 5780) on :3478, and a one-address one on :3490."""
    rfc5780 = Coturn(tmp_path_factory.mktemp("coturn-ns"), host=SERVER_IP, port=3478, alt_host=SERVER_ALT_IP,
                     netns=net.netns("server"))  # fmt: skip
    plain = Coturn(tmp_path_factory.mktemp("coturn-ns-plain"), host=SERVER_IP, port=3490, netns=net.netns("server"))
    try:
        rfc5780.start()
        plain.start()
    except procs.TestbedError as exc:
        rfc5780.stop()
        plain.stop()
        pytest.fail(f"test bed: coturn in the server namespace did not start: {exc}", pytrace=False)
    yield rfc5780, plain
    rfc5780.stop()
    plain.stop()


def through(net: Topology, nat: NatMode | None, profile: Path) -> CheckResult:
    net.set_nat(nat)
    return run_check(profile, net)


@pytest.mark.timeout(20)
def test_no_nat_between_client_and_server(net: Topology, stun_servers: Any, tmp_path: Path) -> None:
    result = through(net, None, write_profile(tmp_path, f"{SERVER_IP}:3478"))
    m = result.measurements
    assert result.status is Status.PASS, result
    assert m["nat_present"] is False and m["local_address"].startswith(f"{CLIENT_IP}:")
    assert (m["mapping_behaviour"], m["filtering_behaviour"]) == ("endpoint-independent", "endpoint-independent")
    assert m["other_address"] == f"{SERVER_ALT_IP}:3479"


@pytest.mark.timeout(20)
def test_masquerade_keeps_the_port_and_maps_endpoint_independently(
    net: Topology, stun_servers: Any, tmp_path: Path
) -> None:
    result = through(net, "masquerade", write_profile(tmp_path, f"{SERVER_IP}:3478"))
    m = result.measurements
    assert result.status is Status.PASS, result
    assert m["nat_present"] is True and m["port_preserved"] is True
    assert m["mapped_address"] == f"{ROUTER_SERVER_IP}:{m['local_address'].rsplit(':', 1)[1]}"
    assert m["mapping_behaviour"] == "endpoint-independent"
    assert m["filtering_behaviour"] == "address-and-port-dependent"  # conntrack lets only replies in
    assert result.summary.endswith("endpoint-independent mapping: the phone needs rport/keep-alives; usually fine")


@pytest.mark.timeout(20)
def test_address_dependent_mapping_warns(net: Topology, stun_servers: Any, tmp_path: Path) -> None:
    result = through(net, "address-dependent", write_profile(tmp_path, f"{SERVER_IP}:3478"))
    assert result.status is Status.WARN, result
    assert result.measurements["mapping_behaviour"] == "address-dependent"
    assert result.summary.startswith("address-dependent NAT")
    assert result.remedy is not None and TRAVERSAL in result.remedy
    assert str(ADDRESS_DEPENDENT_PORT) not in result.measurements["mapped_address"]  # test I went to the primary


@pytest.mark.timeout(20)
def test_random_masquerade_is_a_symmetric_nat(net: Topology, stun_servers: Any, tmp_path: Path) -> None:
    """End to end as a user would run it, in the client namespace: ``python -m diagnostics.network.nat --json``."""
    net.set_nat("masquerade-random")
    profile = write_profile(tmp_path, f"{SERVER_IP}:3478")
    completed = net.run(
        "client", [sys.executable, "-m", "diagnostics.network.nat", "--profile", str(profile), "--json"],
        check=False, env=os.environ,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr  # a warning is not a failure
    report = json.loads(completed.stdout)
    (check,) = report["checks"]
    m = check["measurements"]
    assert (report["verdict"], check["id"], check["status"]) == ("warn", "network.nat", "warn")
    assert m["nat_present"] is True and m["port_preserved"] is False
    assert m["mapping_behaviour"] == "address-and-port-dependent"
    assert check["summary"].startswith("symmetric NAT (")
    assert "media will fail one way without TURN/ICE or an outbound proxy/SBC that latches" in check["summary"]
    assert TRAVERSAL in check["remedy"]


@pytest.mark.timeout(20)
def test_server_without_other_address_falls_back_and_says_so(net: Topology, stun_servers: Any, tmp_path: Path) -> None:
    result = through(net, "masquerade", write_profile(tmp_path, f"{SERVER_IP}:3490"))
    m = result.measurements
    assert result.status is Status.PASS, result
    assert (m["nat_present"], m["behaviour_detection"], m["other_address"]) == (True, "limited", None)
    assert (m["mapping_behaviour"], m["filtering_behaviour"]) == ("unknown", "unknown")
    assert "NAT behaviour detection was limited" in result.summary


@pytest.mark.timeout(20)
def test_silent_stun_server_fails_quickly_with_a_timeout(net: Topology, stun_servers: Any, tmp_path: Path) -> None:
    net.set_nat("masquerade")
    with net.socket("server") as silent:
        silent.bind((SERVER_IP, 3600))  # receives the requests, never answers
        profile = write_profile(tmp_path, f"{SERVER_IP}:3600")
        start = time.monotonic()
        completed: subprocess.CompletedProcess[str] = net.run(
            "client", [sys.executable, "-m", "diagnostics.network.nat", "--profile", str(profile), "--json"],
            check=False, env=os.environ,
        )  # fmt: skip
        elapsed = time.monotonic() - start
    assert completed.returncode == 1, completed.stderr
    (check,) = json.loads(completed.stdout)["checks"]
    assert (check["status"], check["measurements"]["cause"]) == ("fail", "timeout")
    assert check["summary"] == f"the STUN server {SERVER_IP}:3600 did not answer within 3 s"
    assert elapsed < 5.0
