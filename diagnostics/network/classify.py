"""What kind of link is this? A table of rules over what the OS tells (link facts, then the name).

The class decides the advice of ``network.route``: Wi-Fi and mobile data add
jitter, a VPN adds delay, an ISDN B channel is too narrow for G.711. Rules are
tried top to bottom; the first whose field matches wins. Fact rules come first
(but for two names the kernel's facts cannot tell apart: isdn4linux links and
the TAP devices of virtual machines) because they are what the kernel knows (on Linux: ``/sys/class/net/<if>/type``
holds the ARPHRD number of ``<linux/if_arp.h>``, ``uevent`` the DEVTYPE,
``wireless/`` or ``phy80211`` marks Wi-Fi, ``device/driver`` names the driver,
``tun_flags`` marks a TUN/TAP device, and software links live under
``/sys/devices/virtual``). Name rules catch the rest, including the names
Windows and macOS give through psutil (``Wi-Fi``, ``Ethernet 2``, ``Cellular``,
``vEthernet (WSL)``, ``en0``, ``utun3``).

Reading the facts is per-OS code (:mod:`diagnostics.network.os_linux`); this
module is pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ARPHRD", "RULES", "InterfaceClass", "LinkFacts", "Rule", "classify"]


class InterfaceClass(StrEnum):
    ETHERNET = "ethernet"
    WIFI = "wifi"
    USB_TETHERING = "usb-tethering"
    """A phone sharing its mobile data over USB (RNDIS, CDC Ethernet, Apple ipheth)."""
    PPP = "ppp"
    """PPP: a dial-up or 3G modem, or PPPoE on a DSL line."""
    MOBILE_BROADBAND = "mobile-broadband"
    """A WWAN modem (LTE/5G card or stick: MBIM, QMI)."""
    ISDN = "isdn"
    VPN = "vpn"
    """VPN or IP tunnel: TUN/TAP, WireGuard, IPsec, GRE, SIT."""
    VIRTUAL = "virtual"
    """Bridges, veth pairs, container and virtual-machine networks."""
    LOOPBACK = "loopback"
    UNKNOWN = "unknown"


# ARPHRD numbers of <linux/if_arp.h> that the rules use.
ARPHRD = {
    "ether": 1,
    "ppp": 512,
    "rawip": 519,  # qmi_wwan and other WWAN drivers in raw-IP mode
    "tunnel": 768,  # IPIP
    "tunnel6": 769,
    "loopback": 772,
    "sit": 776,
    "ipgre": 778,
    "ieee80211": 801,
    "ieee80211_prism": 802,
    "ieee80211_radiotap": 803,
    "ip6gre": 823,
    "none": 65534,  # TUN, WireGuard, xfrm: layer-3 links without a link-layer header
}

_IFF_TUN = 0x0001  # <linux/if_tun.h>
_IFF_TAP = 0x0002


@dataclass(frozen=True)
class LinkFacts:
    """What the OS says about a link besides its name; the defaults mean "not told" (Windows, macOS)."""

    arphrd: int | None = None
    """Link-layer type (``/sys/class/net/<if>/type``)."""
    devtype: str = ""
    """``DEVTYPE`` from ``uevent``: ``wlan``, ``wwan``, ``bridge``, ``wireguard``, ``ppp`` …"""
    driver: str = ""
    """Kernel driver of the device behind the link (``device/driver``), empty for software links."""
    wireless: bool = False
    """``wireless/`` or ``phy80211`` present: an 802.11 link."""
    tun_flags: int | None = None
    """``tun_flags`` of a TUN/TAP device (``IFF_TUN`` 0x1, ``IFF_TAP`` 0x2)."""
    virtual: bool = False
    """A software link (under ``/sys/devices/virtual``): no hardware behind it."""


@dataclass(frozen=True)
class Rule:
    field: str
    """``arphrd``, ``devtype``, ``driver``, ``wireless``, ``tun``, ``virtual`` or ``name``."""
    pattern: str
    """Regular expression, searched case-insensitively in the field's text form."""
    interface_class: InterfaceClass


def _n(*names: str) -> str:
    return "^(" + "|".join(str(ARPHRD[n]) for n in names) + ")$"


# fmt: off
RULES: tuple[Rule, ...] = (
    # --- facts (Linux sysfs) ---
    Rule("arphrd", _n("loopback"), InterfaceClass.LOOPBACK),
    # isdn4linux links look like Ethernet or PPP to the kernel: only the name tells.
    Rule("name", r"^(isdn|ippp)", InterfaceClass.ISDN),
    Rule("wireless", r"^yes$", InterfaceClass.WIFI),
    Rule("devtype", r"^wlan$", InterfaceClass.WIFI),
    Rule("arphrd", _n("ieee80211", "ieee80211_prism", "ieee80211_radiotap"), InterfaceClass.WIFI),
    Rule("devtype", r"^wwan$", InterfaceClass.MOBILE_BROADBAND),
    Rule("driver", r"^(qmi_wwan|cdc_mbim|huawei_cdc_ncm|sierra_net|mhi_net|hso|ipa|rmnet)$",
         InterfaceClass.MOBILE_BROADBAND),
    Rule("arphrd", _n("rawip"), InterfaceClass.MOBILE_BROADBAND),
    # cdc_ncm is left out: USB-C docks use it for their wired port as often as phones for tethering.
    Rule("driver", r"^(rndis_host|cdc_ether|ipheth)$", InterfaceClass.USB_TETHERING),
    Rule("devtype", r"^ppp$", InterfaceClass.PPP),
    Rule("arphrd", _n("ppp"), InterfaceClass.PPP),
    Rule("devtype", r"^(wireguard|xfrm)$", InterfaceClass.VPN),
    # libvirt and VMware attach virtual machines through TAP devices: those are not VPNs.
    Rule("name", r"^(vnet|vmnet|vboxnet|fwpr|tap[0-9a-f]{8}-)", InterfaceClass.VIRTUAL),
    Rule("tun", r"^(tun|tap)$", InterfaceClass.VPN),
    Rule("arphrd", _n("tunnel", "tunnel6", "sit", "ipgre", "ip6gre", "none"), InterfaceClass.VPN),
    Rule("devtype", r"^(vlan|bond|team)$", InterfaceClass.ETHERNET),  # on top of a cable, in practice
    Rule("devtype", r"^(bridge|macvlan|ipvlan|vxlan|veth)$", InterfaceClass.VIRTUAL),
    Rule("virtual", r"^yes$", InterfaceClass.VIRTUAL),
    Rule("arphrd", _n("ether"), InterfaceClass.ETHERNET),  # hardware that is none of the above
    # --- names (every OS; Linux classic and predictable names, Windows, macOS) ---
    Rule("name", r"^lo\d*$|loopback", InterfaceClass.LOOPBACK),
    Rule("name", r"^(br|virbr|lxcbr|lxdbr|docker|vnet|vmnet|vboxnet|bridge|awdl|llw|anpi|ap)(\d+|-|$)|"
         r"^(veth|cali|flannel|cni)|^vethernet \(|hyper-v|virtualbox|vmware|local area connection\* ",
         InterfaceClass.VIRTUAL),
    Rule("name", r"^(tun|tap|wg|utun|ipsec|gpd|cscotun|tailscale|zt|nordlynx)|vpn|wireguard|openvpn|wintun|"
         r"anyconnect|globalprotect|forticlient|zerotier", InterfaceClass.VPN),
    Rule("name", r"^(ww|wwan|rmnet|mhi)|mobile broadband|cellular", InterfaceClass.MOBILE_BROADBAND),
    Rule("name", r"^(usb|rndis)\d", InterfaceClass.USB_TETHERING),
    Rule("name", r"^(ppp|pppoe)", InterfaceClass.PPP),
    Rule("name", r"^(wl|ath\d|ra\d)|wi-?fi|wlan|wireless", InterfaceClass.WIFI),
    # macOS: en0 is Wi-Fi on laptops without an Ethernet port; without its facts we cannot tell, and calling
    # it Ethernet only misses a warning, where the other way would raise a false one.
    Rule("name", r"^(eth|en|em)\d|^en[opsx]|ethernet|local area connection", InterfaceClass.ETHERNET),
)
# fmt: on


def _fields(name: str, facts: LinkFacts) -> dict[str, str]:
    fields = {"name": name, "devtype": facts.devtype, "driver": facts.driver}
    if facts.arphrd is not None:
        fields["arphrd"] = str(facts.arphrd)
    if facts.wireless:
        fields["wireless"] = "yes"
    if facts.virtual:
        fields["virtual"] = "yes"
    if facts.tun_flags is not None:
        fields["tun"] = "tap" if facts.tun_flags & _IFF_TAP else "tun" if facts.tun_flags & _IFF_TUN else ""
    return fields


def classify(name: str, facts: LinkFacts | None = None) -> InterfaceClass:
    """The class of link ``name``: the first rule of :data:`RULES` whose field matches."""
    fields = _fields(name, facts or LinkFacts())
    for rule in RULES:
        value = fields.get(rule.field, "")
        if value and re.search(rule.pattern, value, re.IGNORECASE):
            return rule.interface_class
    return InterfaceClass.UNKNOWN
