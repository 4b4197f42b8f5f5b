"""Interface classes: the rule table on fake sysfs trees (Linux facts) and on the names every OS gives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from diagnostics.network.classify import ARPHRD, RULES, InterfaceClass, LinkFacts, classify
from diagnostics.network.os_linux import link_facts

C = InterfaceClass


@dataclass(frozen=True)
class FakeLink:
    """One link as sysfs shows it: /sys/class/net/<name> → /sys/devices/…/net/<name>."""

    name: str
    arphrd: int | str = 1
    devtype: str = ""
    driver: str = ""
    wireless: bool = False
    phy80211: bool = False
    tun_flags: int | None = None
    virtual: bool = False

    def build(self, sys: Path) -> Path:
        parent = sys / "devices" / ("virtual" if self.virtual else "pci0000:00/0000:00:1c.0/0000:02:00.0")
        device = parent / "net" / self.name
        device.mkdir(parents=True)
        (device / "type").write_text(f"{self.arphrd}\n")
        devtype = f"DEVTYPE={self.devtype}\n" if self.devtype else ""
        (device / "uevent").write_text(f"{devtype}INTERFACE={self.name}\nIFINDEX=3\n")
        if self.driver:
            driver_dir = sys / "bus" / "pci" / "drivers" / self.driver
            driver_dir.mkdir(parents=True, exist_ok=True)
            (device / "device").mkdir()
            (device / "device" / "driver").symlink_to(driver_dir)
        if self.wireless:
            (device / "wireless").mkdir()
        if self.phy80211:
            phy = sys / "class" / "ieee80211" / "phy0"
            phy.mkdir(parents=True, exist_ok=True)
            (device / "phy80211").symlink_to(phy)
        if self.tun_flags is not None:
            (device / "tun_flags").write_text(f"0x{self.tun_flags:x}\n")
        class_net = sys / "class" / "net"
        class_net.mkdir(parents=True, exist_ok=True)
        (class_net / self.name).symlink_to(device)
        return class_net


TUN, TAP, NO_PI = 0x0001, 0x0002, 0x1000

SYSFS_CASES = [
    (FakeLink("eth0", driver="e1000e"), C.ETHERNET),
    (FakeLink("enp3s0", driver="r8169"), C.ETHERNET),
    (FakeLink("wlp2s0", devtype="wlan", driver="iwlwifi", wireless=True, phy80211=True), C.WIFI),
    (FakeLink("wlan1", driver="ath9k", phy80211=True), C.WIFI),  # no DEVTYPE: phy80211 tells
    (FakeLink("mon0", arphrd=ARPHRD["ieee80211_radiotap"], driver="ath9k"), C.WIFI),
    (FakeLink("wwan0", arphrd=ARPHRD["rawip"], devtype="wwan", driver="qmi_wwan"), C.MOBILE_BROADBAND),
    (FakeLink("wwp0s20u4i6", driver="cdc_mbim"), C.MOBILE_BROADBAND),
    (FakeLink("usb0", driver="rndis_host"), C.USB_TETHERING),
    (FakeLink("enx0a1b2c3d4e5f", driver="cdc_ether"), C.USB_TETHERING),  # the name looks wired; the driver knows
    (FakeLink("eth1", driver="ipheth"), C.USB_TETHERING),  # an iPhone
    (FakeLink("ppp0", arphrd=ARPHRD["ppp"], devtype="ppp", virtual=True), C.PPP),
    (FakeLink("isdn0", driver="hisax"), C.ISDN),  # isdn4linux looks like Ethernet: the name tells
    (FakeLink("tun0", arphrd=ARPHRD["none"], tun_flags=TUN | NO_PI, virtual=True), C.VPN),
    (FakeLink("tap0", tun_flags=TAP | NO_PI, virtual=True), C.VPN),
    (FakeLink("vnet3", tun_flags=TAP | NO_PI, virtual=True), C.VIRTUAL),  # libvirt's TAP for a VM
    (FakeLink("wg0", arphrd=ARPHRD["none"], devtype="wireguard", virtual=True), C.VPN),
    (FakeLink("sit1", arphrd=ARPHRD["sit"], virtual=True), C.VPN),
    (FakeLink("gre1", arphrd=ARPHRD["ipgre"], virtual=True), C.VPN),
    (FakeLink("ip6gre0", arphrd=ARPHRD["ip6gre"], virtual=True), C.VPN),
    (FakeLink("br0", devtype="bridge", virtual=True), C.VIRTUAL),
    (FakeLink("docker0", devtype="bridge", virtual=True), C.VIRTUAL),
    (FakeLink("veth1a2b3c", virtual=True), C.VIRTUAL),
    (FakeLink("eth0", virtual=True), C.VIRTUAL),  # a container's veth: facts beat the name
    (FakeLink("eth0.100", devtype="vlan", virtual=True), C.ETHERNET),
    (FakeLink("lo", arphrd=ARPHRD["loopback"], virtual=True), C.LOOPBACK),
    (FakeLink("mystery0", arphrd=42, driver="odd"), C.UNKNOWN),
]


@pytest.mark.parametrize(("link", "expected"), SYSFS_CASES, ids=[f"{c[0].name}-{c[1].value}" for c in SYSFS_CASES])
def test_linux_links_are_classified_from_a_fake_sysfs(tmp_path: Path, link: FakeLink, expected: InterfaceClass) -> None:
    class_net = link.build(tmp_path / "sys")
    assert classify(link.name, link_facts(link.name, class_net)) is expected


def test_sysfs_facts_are_read_as_the_kernel_writes_them(tmp_path: Path) -> None:
    class_net = FakeLink("wlp2s0", devtype="wlan", driver="iwlwifi", wireless=True).build(tmp_path / "sys")
    assert link_facts("wlp2s0", class_net) == LinkFacts(arphrd=1, devtype="wlan", driver="iwlwifi", wireless=True)
    class_net = FakeLink("tun0", arphrd=65534, tun_flags=0x1001, virtual=True).build(tmp_path / "sys2")
    assert link_facts("tun0", class_net) == LinkFacts(arphrd=65534, tun_flags=0x1001, virtual=True)


def test_missing_or_odd_sysfs_entries_leave_the_fact_untold(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert link_facts("gone0", tmp_path) == LinkFacts()
    class_net = FakeLink("eth9", arphrd="garbage").build(tmp_path / "sys")
    assert link_facts("eth9", class_net).arphrd is None
    assert "expected a number, ignoring it (got 'garbage')" in caplog.text
    assert classify("eth9", link_facts("eth9", class_net)) is C.ETHERNET  # falls back to the name


NAME_CASES = [
    # Windows (psutil gives the connection names)
    ("Wi-Fi", C.WIFI), ("WLAN", C.WIFI), ("Wireless Network Connection", C.WIFI),
    ("Ethernet", C.ETHERNET), ("Ethernet 2", C.ETHERNET), ("Local Area Connection", C.ETHERNET),
    ("Local Area Connection* 10", C.VIRTUAL), ("vEthernet (WSL)", C.VIRTUAL),
    ("Mobile Broadband Connection", C.MOBILE_BROADBAND), ("Cellular", C.MOBILE_BROADBAND),
    ("Loopback Pseudo-Interface 1", C.LOOPBACK), ("OpenVPN TAP-Windows6", C.VPN), ("Tailscale", C.VPN),
    ("Bluetooth Network Connection", C.UNKNOWN),
    # macOS
    ("en0", C.ETHERNET), ("utun3", C.VPN), ("ipsec0", C.VPN), ("awdl0", C.VIRTUAL), ("bridge0", C.VIRTUAL),
    ("lo0", C.LOOPBACK), ("ppp0", C.PPP),
    # Linux without facts
    ("eth0", C.ETHERNET), ("enp0s31f6", C.ETHERNET), ("wlan0", C.WIFI), ("wlp2s0", C.WIFI),
    ("wwan0", C.MOBILE_BROADBAND), ("usb0", C.USB_TETHERING), ("ippp0", C.ISDN), ("isdn1", C.ISDN),
    ("wg0", C.VPN), ("tun0", C.VPN), ("docker0", C.VIRTUAL), ("virbr0", C.VIRTUAL), ("br-3f2a1b", C.VIRTUAL),
    ("veth9c1d2e", C.VIRTUAL), ("something", C.UNKNOWN), ("broadcom", C.UNKNOWN), ("rabbit", C.UNKNOWN),
]  # fmt: skip


@pytest.mark.parametrize(("name", "expected"), NAME_CASES)
def test_names_classify_where_the_os_tells_nothing_else(name: str, expected: InterfaceClass) -> None:
    assert classify(name) is expected


def test_every_class_has_a_rule_and_every_rule_a_known_field() -> None:
    assert {r.interface_class for r in RULES} == set(InterfaceClass) - {C.UNKNOWN}
    assert {r.field for r in RULES} <= {"arphrd", "devtype", "driver", "wireless", "tun", "virtual", "name"}


def test_the_public_api_is_exactly_all() -> None:
    from diagnostics.network import classify as module

    defined = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
    }
    assert defined <= set(module.__all__) <= set(vars(module))
