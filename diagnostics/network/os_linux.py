"""Linux: default routes from ``/proc/net/route`` and ``/proc/net/ipv6_route`` (no tools needed)."""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

from diagnostics.network.interfaces import DefaultRoute

_RTF_UP = 0x1


def parse_ipv4_routes(text: str) -> list[tuple[int, DefaultRoute]]:
    """Default routes with their metric from the kernel's IPv4 table (hex, host byte order)."""
    routes = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8:
            continue
        iface, dest, gateway, flags, metric, mask = cols[0], cols[1], cols[2], int(cols[3], 16), int(cols[6]), cols[7]
        if dest == "00000000" and mask == "00000000" and flags & _RTF_UP:
            gw = socket.inet_ntoa(struct.pack("<I", int(gateway, 16)))
            routes.append((metric, DefaultRoute(iface, "" if gw == "0.0.0.0" else gw, "ipv4")))
    return routes


def parse_ipv6_routes(text: str) -> list[tuple[int, DefaultRoute]]:
    routes = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 10:
            continue
        dest, plen, gateway, metric, flags, iface = (
            cols[0],
            cols[1],
            cols[4],
            int(cols[5], 16),
            int(cols[8], 16),
            cols[9],
        )
        if dest == "0" * 32 and plen == "00" and flags & _RTF_UP and iface != "lo":
            gw = str(ipaddress.IPv6Address(bytes.fromhex(gateway)))
            routes.append((metric, DefaultRoute(iface, "" if gw == "::" else gw, "ipv6")))
    return routes


def default_routes(proc: Path = Path("/proc/net")) -> tuple[DefaultRoute, ...]:
    """IPv4 default routes first (lowest metric first), then IPv6."""
    found: list[DefaultRoute] = []
    for name, parse in (("route", parse_ipv4_routes), ("ipv6_route", parse_ipv6_routes)):
        try:
            text = (proc / name).read_text()
        except FileNotFoundError:
            continue
        found.extend(route for _, route in sorted(parse(text), key=lambda item: item[0]))
    return tuple(found)
