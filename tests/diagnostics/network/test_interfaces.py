import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from diagnostics.network.classify import InterfaceClass
from diagnostics.network.interfaces import (
    MTU_RULES,
    ROUTE_CLASS_ADVICE,
    DefaultRoute,
    Interface,
    assess_interfaces,
    assess_route,
)
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


def link(name: str, cls: InterfaceClass, mtu: int = 1500) -> Interface:
    return Interface(name, True, mtu, 1000, ("192.0.2.2",), (), False, cls)


def test_interfaces_carry_their_class() -> None:
    result = assess_interfaces([link("wlan0", InterfaceClass.WIFI)])
    assert result.summary == "1 interface(s) up: wlan0 (wifi: 192.0.2.2)"
    assert result.measurements["interfaces"][0]["class"] == "wifi"


def test_a_cable_with_a_full_mtu_passes() -> None:
    result = assess_route([DefaultRoute("eth0", "192.0.2.1", "ipv4")], [link("eth0", InterfaceClass.ETHERNET)])
    assert result.status is Status.PASS
    assert result.summary == "calls leave through eth0 via 192.0.2.1 (ipv4, ethernet)"
    m = result.measurements
    assert (m["route_class"], m["route_mtu"], m["udp_payload_max_bytes"], m["findings"]) == ("ethernet", 1500, 1472, [])


@pytest.mark.parametrize(
    ("cls", "finding", "words", "remedy_words"),
    [
        (InterfaceClass.WIFI, "jitter_risk", "Wi-Fi: jitter risk: prefer a cable", "plug in Ethernet"),
        (InterfaceClass.MOBILE_BROADBAND, "jitter_risk", "mobile broadband: jitter risk: prefer a cable", "cable"),
        (InterfaceClass.USB_TETHERING, "jitter_risk", "USB tethering): jitter risk: prefer a cable", "cable"),
        (InterfaceClass.VPN, "vpn", "voice through the VPN adds delay", "split tunnelling"),
        (InterfaceClass.ISDN, "narrow_link", "cannot carry G.711", "narrowband codec"),
    ],
)
def test_the_route_link_class_warns(cls: InterfaceClass, finding: str, words: str, remedy_words: str) -> None:
    result = assess_route([DefaultRoute("x0", "192.0.2.1", "ipv4")], [link("x0", cls)])
    assert result.status is Status.WARN
    assert result.measurements["findings"] == [finding]
    assert result.summary.startswith(f"calls leave through x0 via 192.0.2.1 (ipv4, {cls.value}): ")
    assert words in result.summary
    assert result.remedy is not None and remedy_words in result.remedy


@pytest.mark.parametrize(
    ("mtu", "family", "payload"), [(1499, "ipv4", 1471), (1400, "ipv6", 1352), (1280, "ipv4", 1252)]
)
def test_an_mtu_below_1500_warns_that_udp_sip_fragments(mtu: int, family: str, payload: int) -> None:
    result = assess_route([DefaultRoute("eth0", "", family)], [link("eth0", InterfaceClass.ETHERNET, mtu)])
    assert result.status is Status.WARN
    assert result.measurements["findings"] == ["mtu_small"]
    assert result.measurements["udp_payload_max_bytes"] == payload
    assert f"MTU {mtu} bytes: SIP over UDP will fragment" in result.summary
    assert f"carries {payload} bytes of UDP payload whole" in result.summary
    assert result.remedy is not None and "TCP or TLS" in result.remedy


def test_an_mtu_below_ipv6s_minimum_says_so_too() -> None:
    result = assess_route([DefaultRoute("ppp0", "", "ipv4")], [link("ppp0", InterfaceClass.PPP, 1200)])
    assert "below IPv6's minimum of 1280: no IPv6 on this link, and SIP over UDP will fragment" in result.summary


def test_findings_add_up_and_the_worst_status_wins() -> None:
    result = assess_route([DefaultRoute("wg0", "", "ipv4")], [link("wg0", InterfaceClass.VPN, 1420)])
    assert result.status is Status.WARN
    assert result.measurements["findings"] == ["vpn", "mtu_small"]
    assert "adds delay" in result.summary and "MTU 1420 bytes" in result.summary
    assert result.remedy is not None and "split tunnelling" in result.remedy and "TCP or TLS" in result.remedy


def test_advice_tables_are_ordered_and_complete() -> None:
    assert [r.below_bytes for r in MTU_RULES] == sorted(r.below_bytes for r in MTU_RULES)
    assert all(a.status is not Status.PASS and a.remedy for a in ROUTE_CLASS_ADVICE.values())
    quiet = set(InterfaceClass) - set(ROUTE_CLASS_ADVICE)
    assert quiet == {
        InterfaceClass.ETHERNET,
        InterfaceClass.PPP,
        InterfaceClass.VIRTUAL,
        InterfaceClass.LOOPBACK,
        InterfaceClass.UNKNOWN,
    }


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


def ip(netns: str, *args: str) -> None:
    done = subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"ip -n {netns} {' '.join(args)}: {done.stderr}"


@pytest.fixture
def office_netns(empty_netns: str) -> str:
    """A namespace with a veth pair (pk-v0: 10.77.0.2/24, MTU 1280, default route via 10.77.0.1), a bridge and a
    TUN device (pk-tun0: 10.88.0.2/24, no process behind it, so no carrier)."""
    ns = empty_netns
    ip(ns, "link", "add", "pk-v0", "type", "veth", "peer", "name", "pk-v1")
    ip(ns, "link", "set", "pk-v0", "mtu", "1280", "up")
    ip(ns, "link", "set", "pk-v1", "up")
    ip(ns, "addr", "add", "10.77.0.2/24", "dev", "pk-v0")
    ip(ns, "route", "add", "default", "via", "10.77.0.1", "dev", "pk-v0")
    ip(ns, "link", "add", "pk-br0", "type", "bridge")
    ip(ns, "tuntap", "add", "dev", "pk-tun0", "mode", "tun")
    ip(ns, "addr", "add", "10.88.0.2/24", "dev", "pk-tun0")
    ip(ns, "link", "set", "pk-tun0", "up")
    return ns


def check_network_in(netns: str) -> tuple[int, dict[str, dict[str, Any]]]:
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "provision.cli", "check", "network", "--json"],
        capture_output=True, text=True, timeout=50, check=False,
    )  # fmt: skip
    assert done.stdout, done.stderr
    return done.returncode, {c["id"]: c for c in json.loads(done.stdout)["checks"]}


@pytest.mark.timeout(60)
def test_check_network_in_a_namespace_classifies_links_and_warns_of_the_small_mtu(office_netns: str) -> None:
    code, checks = check_network_in(office_netns)
    assert code == 0  # warnings only
    interfaces = checks["network.interfaces"]
    classes = {i["name"]: i["class"] for i in interfaces["measurements"]["interfaces"]}
    assert classes == {"lo": "loopback", "pk-v0": "virtual", "pk-v1": "virtual", "pk-br0": "virtual", "pk-tun0": "vpn"}
    assert interfaces["status"] == "pass"
    route = checks["network.route"]
    m = route["measurements"]
    assert route["status"] == "warn"
    assert (m["interface"], m["route_class"], m["route_mtu"]) == ("pk-v0", "virtual", 1280)
    assert m["findings"] == ["mtu_small"]
    assert route["summary"].startswith("calls leave through pk-v0 via 10.77.0.1 (ipv4, virtual): MTU 1280 bytes: ")
    assert "SIP over UDP will fragment" in route["summary"]
    assert "TCP or TLS" in route["remedy"]


@pytest.mark.timeout(60)
def test_check_network_in_a_namespace_warns_of_a_vpn_default_route(office_netns: str) -> None:
    ip(office_netns, "route", "replace", "default", "dev", "pk-tun0")
    code, checks = check_network_in(office_netns)
    assert code == 0
    route = checks["network.route"]
    assert route["status"] == "warn"
    assert (route["measurements"]["interface"], route["measurements"]["route_class"]) == ("pk-tun0", "vpn")
    assert route["measurements"]["findings"] == ["vpn"]
    assert "voice through the VPN adds delay" in route["summary"]
    assert "split tunnelling" in route["remedy"]


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
    assert statuses.pop("network.interfaces") == statuses.pop("network.route") == "fail"
    assert set(statuses.values()) == {"skip"}  # the rest need an account profile
    assert report["verdict"] == "fail"
