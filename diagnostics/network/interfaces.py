"""Checks ``network.interfaces`` and ``network.route``: is there a link, and which one carries calls?

:func:`assess_interfaces` and :func:`assess_route` are pure; the probing is
:func:`probe_interfaces` (psutil, every OS) and the per-OS default-route lookup.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from diagnostics.checks import CheckContext
from diagnostics.report import CheckResult, Status

__all__ = ["DefaultRoute", "Interface", "assess_interfaces", "assess_route", "probe_interfaces"]


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
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
        result.append(
            Interface(
                name=name,
                is_up=bool(st and st.isup),
                mtu=int(st.mtu) if st else 0,
                speed_mbps=int(st.speed) if st else 0,
                ipv4=ipv4,
                ipv6=ipv6,
                is_loopback="loopback" in flags or name == "lo" or any(a.startswith("127.") for a in ipv4),
            )
        )
    return tuple(result)


def probe_default_routes() -> tuple[DefaultRoute, ...]:
    if sys.platform.startswith("linux"):
        from diagnostics.network import os_linux

        return os_linux.default_routes()
    return ()


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
    names = ", ".join(f"{i.name} ({', '.join(i.ipv4 + i.ipv6)})" for i in usable)
    return CheckResult("network.interfaces", Status.PASS, f"{len(usable)} interface(s) up: {names}", measurements)


def assess_route(routes: Sequence[DefaultRoute]) -> CheckResult:
    measurements = {
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
    via = f" via {first.gateway}" if first.gateway else ""
    return CheckResult(
        "network.route",
        Status.PASS,
        f"calls leave through {first.interface}{via} ({first.family})",
        {**measurements, "interface": first.interface},
    )


def check_interfaces(ctx: CheckContext) -> CheckResult:
    return assess_interfaces(probe_interfaces())


def check_route(ctx: CheckContext) -> CheckResult:
    return assess_route(probe_default_routes())
