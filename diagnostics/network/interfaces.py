"""Checks ``network.interfaces`` and ``network.route``: is there a link, which one carries calls, and is it fit?

:func:`assess_interfaces` and :func:`assess_route` are pure; the probing is
:func:`probe_interfaces` (psutil on every OS, plus per-OS link facts for the
class) and the per-OS default-route lookup. The advice on the route's link is
two data tables: :data:`ROUTE_CLASS_ADVICE` (by interface class) and
:data:`MTU_RULES` (by MTU).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from diagnostics.checks import CheckContext
from diagnostics.network.classify import InterfaceClass, LinkFacts, classify
from diagnostics.report import CheckResult, Status

__all__ = [
    "MTU_RULES",
    "ROUTE_CLASS_ADVICE",
    "Advice",
    "DefaultRoute",
    "Interface",
    "MtuRule",
    "assess_interfaces",
    "assess_route",
    "check_interfaces",
    "check_route",
    "interfaces_of",
    "probe_default_routes",
    "probe_interfaces",
]


@dataclass(frozen=True)
class Interface:
    name: str
    is_up: bool
    mtu: int
    speed_mbps: int
    """0 where the OS does not know (Wi-Fi, virtual links)."""
    ipv4: tuple[str, ...]
    ipv6: tuple[str, ...]
    is_loopback: bool
    interface_class: InterfaceClass = InterfaceClass.UNKNOWN
    """What kind of link (:mod:`diagnostics.network.classify`); ``class`` in the report."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.interface_class.value,
            "is_up": self.is_up,
            "mtu": self.mtu,
            "speed_mbps": self.speed_mbps,
            "ipv4": list(self.ipv4),
            "ipv6": list(self.ipv6),
            "is_loopback": self.is_loopback,
        }


@dataclass(frozen=True)
class DefaultRoute:
    interface: str
    gateway: str
    family: str
    """``ipv4`` or ``ipv6``."""


@dataclass(frozen=True)
class Advice:
    """One finding about the link that carries calls."""

    finding: str
    """Stable code, listed in the ``findings`` measurement."""
    status: Status
    summary: str
    """Completes "calls leave through eth0 …: "; may use ``{mtu}`` and ``{payload}`` (bytes)."""
    remedy: str


_CABLE = "prefer a cable: plug in Ethernet for calls; on Wi-Fi stay close to the access point and prefer 5 GHz"

ROUTE_CLASS_ADVICE: Mapping[InterfaceClass, Advice] = {
    InterfaceClass.WIFI: Advice("jitter_risk", Status.WARN, "Wi-Fi: jitter risk: prefer a cable", _CABLE),
    InterfaceClass.MOBILE_BROADBAND: Advice(
        "jitter_risk",
        Status.WARN,
        "mobile broadband: jitter risk: prefer a cable",
        "prefer a cable: mobile data varies its delay and drops packets in handovers",
    ),
    InterfaceClass.USB_TETHERING: Advice(
        "jitter_risk",
        Status.WARN,
        "a phone's mobile data (USB tethering): jitter risk: prefer a cable",
        "prefer a cable: mobile data varies its delay and drops packets in handovers",
    ),
    InterfaceClass.VPN: Advice(
        "vpn",
        Status.WARN,
        "through a VPN or tunnel: voice through the VPN adds delay",
        "ask IT for split tunnelling so that the SIP server and media bypass the VPN, "
        "unless the SIP server is reachable only through it",
    ),
    InterfaceClass.ISDN: Advice(
        "narrow_link",
        Status.WARN,
        "ISDN: a 64 kbit/s B channel cannot carry G.711 (80 kbit/s with RTP/UDP/IP headers)",
        "use a narrowband codec (GSM, iLBC, Speex 8 kHz) or a faster link",
    ),
}

# An authenticated INVITE is about 1,480 bytes (pjsua2, measured): with 28 bytes of IPv4 and UDP headers it is
# already past 1,500. RFC 3261 §18.1.1 wants TCP for requests within 200 bytes of the path MTU.
_USE_TCP = (
    'use SIP over TCP or TLS (transport = "tcp" or "tls" in the profile): firewalls and NAT routers often '
    "drop UDP fragments, and then every call fails; or raise the MTU if a VPN or PPPoE lowered it"
)


@dataclass(frozen=True)
class MtuRule:
    below_bytes: int
    advice: Advice


MTU_RULES: tuple[MtuRule, ...] = (  # first matching row wins
    MtuRule(1280, Advice(
        "mtu_small", Status.WARN,
        "MTU {mtu} bytes, below IPv6's minimum of 1280: no IPv6 on this link, and SIP over UDP will fragment",
        _USE_TCP,
    )),
    MtuRule(1500, Advice(
        "mtu_small", Status.WARN,
        "MTU {mtu} bytes: SIP over UDP will fragment (an authenticated INVITE is about 1,480 bytes, "
        "this link carries {payload} bytes of UDP payload whole)",
        _USE_TCP,
    )),
)  # fmt: skip

_IP_UDP_HEADER_BYTES = {"ipv4": 20 + 8, "ipv6": 40 + 8}


def _link_facts(name: str) -> LinkFacts:
    if sys.platform.startswith("linux"):
        from diagnostics.network import os_linux

        return os_linux.link_facts(name)
    return LinkFacts()  # Windows, macOS: classified by name


def probe_interfaces() -> tuple[Interface, ...]:
    stats = psutil.net_if_stats()
    addrs = psutil.net_if_addrs()
    result = []
    for name in sorted(set(stats) | set(addrs)):
        st = stats.get(name)
        entries = addrs.get(name, [])
        ipv4 = tuple(a.address for a in entries if a.family == socket.AF_INET)
        ipv6 = tuple(a.address.split("%", 1)[0] for a in entries if a.family == socket.AF_INET6)
        flags = getattr(st, "flags", "") if st else ""
        is_loopback = "loopback" in flags or name == "lo" or any(a.startswith("127.") for a in ipv4)
        result.append(
            Interface(
                name=name,
                is_up=bool(st and st.isup),
                mtu=int(st.mtu) if st else 0,
                speed_mbps=int(st.speed) if st else 0,
                ipv4=ipv4,
                ipv6=ipv6,
                is_loopback=is_loopback,
                interface_class=InterfaceClass.LOOPBACK if is_loopback else classify(name, _link_facts(name)),
            )
        )
    return tuple(result)


def probe_default_routes() -> tuple[DefaultRoute, ...]:
    if sys.platform.startswith("linux"):
        from diagnostics.network import os_linux

        return os_linux.default_routes()
    return ()


def _described(i: Interface) -> str:
    addresses = ", ".join(i.ipv4 + i.ipv6)
    if i.interface_class is InterfaceClass.UNKNOWN:
        return f"{i.name} ({addresses})"
    return f"{i.name} ({i.interface_class.value}: {addresses})"


def assess_interfaces(interfaces: Sequence[Interface]) -> CheckResult:
    usable = [i for i in interfaces if i.is_up and not i.is_loopback and (i.ipv4 or i.ipv6)]
    measurements = {"interfaces": [i.to_dict() for i in interfaces], "usable_count": len(usable)}
    if not usable:
        return CheckResult(
            "network.interfaces",
            Status.FAIL,
            "no network interface is up with an address: the phone cannot reach any server",
            measurements,
            remedy="plug in the network cable or join the Wi-Fi, then check that the interface gets an address",
        )
    names = ", ".join(_described(i) for i in usable)
    return CheckResult("network.interfaces", Status.PASS, f"{len(usable)} interface(s) up: {names}", measurements)


def _route_advice(link: Interface | None) -> list[Advice]:
    """Findings about the link that carries the default route: its class, then its MTU."""
    if link is None:
        return []
    found = [ROUTE_CLASS_ADVICE[link.interface_class]] if link.interface_class in ROUTE_CLASS_ADVICE else []
    if link.mtu > 0:
        rule = next((r for r in MTU_RULES if link.mtu < r.below_bytes), None)
        if rule is not None:
            found.append(rule.advice)
    return found


def assess_route(routes: Sequence[DefaultRoute], interfaces: Sequence[Interface] = ()) -> CheckResult:
    """Verdict on the default route; ``interfaces`` (from :func:`probe_interfaces`) give its link's class and MTU."""
    measurements: dict[str, Any] = {
        "default_routes": [{"interface": r.interface, "gateway": r.gateway, "family": r.family} for r in routes]
    }
    if not routes:
        return CheckResult(
            "network.route",
            Status.FAIL,
            "no default route: only the local network is reachable",
            measurements,
            remedy="check the gateway setting (DHCP, or the router address in a static configuration)",
        )
    first = routes[0]
    link = next((i for i in interfaces if i.name == first.interface), None)
    route_class = link.interface_class if link else InterfaceClass.UNKNOWN
    payload = link.mtu - _IP_UDP_HEADER_BYTES.get(first.family, 28) if link and link.mtu > 0 else None
    advice = _route_advice(link)
    measurements |= {
        "interface": first.interface,
        "route_class": route_class.value,
        "route_mtu": link.mtu if link else None,
        "udp_payload_max_bytes": payload,
        "findings": [a.finding for a in advice],
    }
    via = f" via {first.gateway}" if first.gateway else ""
    what = first.family if route_class is InterfaceClass.UNKNOWN else f"{first.family}, {route_class.value}"
    summary = f"calls leave through {first.interface}{via} ({what})"
    if not advice:
        return CheckResult("network.route", Status.PASS, summary, measurements)
    details = "; ".join(a.summary.format(mtu=link.mtu if link else 0, payload=payload) for a in advice)
    return CheckResult(
        "network.route",
        max((a.status for a in advice), key=lambda s: s.severity),
        f"{summary}: {details}",
        measurements,
        remedy="; ".join(dict.fromkeys(a.remedy for a in advice)),
    )


def interfaces_of(ctx: CheckContext) -> tuple[Interface, ...]:
    """The run's interfaces, probed once and shared by ``network.interfaces`` and ``network.route``."""
    cached = ctx.cache.get("network.interfaces")
    if cached is None:
        cached = probe_interfaces()
        ctx.cache["network.interfaces"] = cached
    assert isinstance(cached, tuple)
    return cached


def check_interfaces(ctx: CheckContext) -> CheckResult:
    return assess_interfaces(interfaces_of(ctx))


def check_route(ctx: CheckContext) -> CheckResult:
    return assess_route(probe_default_routes(), interfaces_of(ctx))
