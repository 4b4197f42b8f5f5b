"""Linux: default routes from ``/proc/net/route`` and ``/proc/net/ipv6_route``, link facts from
``/sys/class/net`` (no tools needed)."""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from pathlib import Path

from diagnostics.network.classify import LinkFacts
from diagnostics.network.interfaces import DefaultRoute

log = logging.getLogger(__name__)

SYS_CLASS_NET = Path("/sys/class/net")

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


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # absent for this kind of link, or the link went away meanwhile
        return None


def _number(path: Path, base: int) -> int | None:
    text = _read(path)
    if not text:
        return None
    try:
        return int(text, base)
    except ValueError:
        log.warning("%s: expected a number, ignoring it (got %r)", path, text)
        return None


def link_facts(name: str, sys_class_net: Path = SYS_CLASS_NET) -> LinkFacts:
    """What sysfs tells about link ``name``; a missing file leaves its fact at "not told"."""
    link = sys_class_net / name
    if not link.exists():
        log.debug("%s: no %s, classifying by name only", name, link)
        return LinkFacts()
    uevent = (_read(link / "uevent") or "").splitlines()
    devtype = next((line.split("=", 1)[1] for line in uevent if line.startswith("DEVTYPE=")), "")
    driver = link / "device" / "driver"
    device_dir = link.resolve()  # /sys/devices/virtual/net/<name> for software links
    return LinkFacts(
        arphrd=_number(link / "type", 10),
        devtype=devtype,
        driver=driver.resolve().name if driver.exists() else "",
        wireless=(link / "wireless").is_dir() or (link / "phy80211").exists(),
        tun_flags=_number(link / "tun_flags", 16),
        virtual=device_dir.parent.name == "net" and device_dir.parent.parent.name == "virtual",
    )
