import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from diagnostics.network.interfaces import DefaultRoute, Interface, assess_interfaces, assess_route
from diagnostics.network.os_linux import parse_ipv4_routes, parse_ipv6_routes
from diagnostics.report import Status

IPV4_TABLE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""

IPV6_TABLE = (
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "fe800000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
)


def test_ipv4_default_routes_parsed_with_metric() -> None:
    routes = sorted(parse_ipv4_routes(IPV4_TABLE), key=lambda item: item[0])
    assert routes == [
        (100, DefaultRoute("eth0", "192.0.2.1", "ipv4")),
        (600, DefaultRoute("wlan0", "192.168.1.1", "ipv4")),
    ]


def test_ipv6_default_route_parsed_and_reject_route_ignored() -> None:
    assert parse_ipv6_routes(IPV6_TABLE) == [(0x400, DefaultRoute("eth0", "fe80::1", "ipv6"))]


def test_only_loopback_fails_with_a_remedy() -> None:
    lo = Interface("lo", True, 65536, 0, ("127.0.0.1",), ("::1",), True)
    down = Interface("eth0", False, 1500, 0, (), (), False)
    result = assess_interfaces([lo, down])
    assert result.status is Status.FAIL
    assert result.measurements["usable_count"] == 0
    up = Interface("eth0", True, 1500, 1000, ("192.0.2.2",), (), False)
    assert assess_interfaces([lo, up]).summary == "1 interface(s) up: eth0 (192.0.2.2)"


def test_route_verdicts() -> None:
    assert assess_route([]).status is Status.FAIL
    ok = assess_route([DefaultRoute("eth0", "192.0.2.1", "ipv4")])
    assert (ok.status, ok.measurements["interface"]) == (Status.PASS, "eth0")
    assert ok.summary == "calls leave through eth0 via 192.0.2.1 (ipv4)"


@pytest.fixture
def empty_netns() -> Iterator[str]:
    """A network namespace of our own with only a loopback interface (down, as new ones are)."""
    if shutil.which("ip") is None:
        pytest.fail("iproute2 'ip' is missing: run 'bash bootstrap.sh setup'")
    name = f"pk-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


@pytest.mark.timeout(60)
def test_check_network_in_an_isolated_namespace_fails_with_both_causes(empty_netns: str) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", empty_netns, sys.executable, "-m", "provision.cli", "check", "network", "--json"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    statuses = {c["id"]: c["status"] for c in report["checks"]}
    assert statuses == {"network.interfaces": "fail", "network.route": "fail"}
    assert report["verdict"] == "fail"
