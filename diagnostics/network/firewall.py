"""This machine's own packet filter: does a rule drop UDP to (or from) the phone's RTP port?

One-way audio is often the workstation's own firewall: SIP gets through (its
port is allowed, or the connection is outgoing), RTP to the media port is
dropped. The question is asked per OS; Linux reads the nftables ruleset
(``nft -j list ruleset``; iptables on Debian 12 is nftables underneath). Reading
it needs root (CAP_NET_ADMIN): otherwise the answer is "unknown", never "no".
Windows and macOS: unknown for now (their firewalls are per application).

:func:`find_udp_drops` is pure: it reads parsed ``nft -j`` output.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FirewallAnswer", "FirewallRule", "find_udp_drops", "udp_drops"]

log = logging.getLogger(__name__)

_VERDICTS = ("drop", "reject")
# Which hook sees a packet of each direction, and which UDP port field names our port.
_DIRECTIONS = {"inbound": ("input", "dport"), "outbound": ("output", "sport")}


@dataclass(frozen=True)
class FirewallRule:
    family: str
    table: str
    chain: str
    handle: int
    verdict: str
    ports: str
    """The rule's port match as nft prints it (``4000-4999``, ``{ 5060, 4000-4999 }``)."""
    conditional: bool
    """The rule matches on more than the port (addresses, interfaces …): it may spare some packets."""

    def __str__(self) -> str:
        more = " (and further conditions)" if self.conditional else ""
        where = f"nft {self.family} {self.table} {self.chain} handle {self.handle}"
        return f"{where}: udp port {self.ports} {self.verdict}{more}"


@dataclass(frozen=True)
class FirewallAnswer:
    known: bool
    """False when the ruleset could not be read (not root, no nft, another OS)."""
    rules: tuple[FirewallRule, ...] = ()
    why_unknown: str = ""


def _covers(right: Any, port: int) -> tuple[bool, str]:
    """Does an nft JSON match value (number, range, set, …) include ``port``?"""
    if isinstance(right, int):
        return right == port, str(right)
    if isinstance(right, Mapping):
        if "range" in right:
            low, high = right["range"]
            return int(low) <= port <= int(high), f"{low}-{high}"
        if "set" in right:
            parts = [_covers(item, port) for item in right["set"]]
            return any(hit for hit, _ in parts), "{ " + ", ".join(text for _, text in parts) + " }"
    if isinstance(right, list):
        return _covers({"set": right}, port)
    return False, str(right)


def _port_match(expr: Mapping[str, Any], field: str) -> Any | None:
    match = expr.get("match")
    if not isinstance(match, Mapping) or match.get("op", "==") not in ("==", "in"):
        return None
    payload = (match.get("left") or {}).get("payload") if isinstance(match.get("left"), Mapping) else None
    if isinstance(payload, Mapping) and payload.get("protocol") == "udp" and payload.get("field") == field:
        return match.get("right")
    return None


def _items(ruleset: Mapping[str, Any], kind: str) -> Iterator[Mapping[str, Any]]:
    for entry in ruleset.get("nftables", []):
        if kind in entry:
            yield entry[kind]


def find_udp_drops(ruleset: Mapping[str, Any], port: int, direction: str) -> tuple[FirewallRule, ...]:
    """Rules in base chains of the direction's hook that drop or reject UDP with this port."""
    hook, field = _DIRECTIONS[direction]
    chains = {(c["family"], c["table"], c["name"]) for c in _items(ruleset, "chain") if c.get("hook") == hook}
    found = []
    for rule in _items(ruleset, "rule"):
        if (rule.get("family"), rule.get("table"), rule.get("chain")) not in chains:
            continue
        exprs: Sequence[Mapping[str, Any]] = rule.get("expr") or []
        verdict = next((v for e in exprs for v in _VERDICTS if v in e), None)
        if verdict is None:
            continue
        ports = [_port_match(e, field) for e in exprs]
        matches = [p for p in ports if p is not None]
        if not matches:
            continue
        hits = [_covers(m, port) for m in matches]
        if all(hit for hit, _ in hits):
            others = [e for e, p in zip(exprs, ports, strict=True) if p is None and "match" in e]
            found.append(FirewallRule(str(rule["family"]), str(rule["table"]), str(rule["chain"]),
                                      int(rule.get("handle", 0)), verdict, " ".join(t for _, t in hits),
                                      conditional=bool(others)))  # fmt: skip
    return tuple(found)


def _nft_ruleset() -> Mapping[str, Any] | str:
    nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if nft is None:
        return "nft is not installed"
    try:
        done = subprocess.run([nft, "-j", "list", "ruleset"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nft failed: {exc}"
    if done.returncode != 0:
        return f"cannot read the firewall rules ({done.stderr.strip() or done.returncode}); run as root to check them"
    try:
        parsed: Mapping[str, Any] = json.loads(done.stdout or "{}")
    except ValueError:
        return "nft printed no JSON"
    return parsed


def udp_drops(port: int, direction: str) -> FirewallAnswer:
    """Rules of this machine's firewall that drop UDP ``port`` in ``direction`` (``inbound``/``outbound``)."""
    if not sys.platform.startswith("linux"):
        return FirewallAnswer(False, why_unknown=f"not checked on {sys.platform}")
    ruleset = _nft_ruleset()
    if isinstance(ruleset, str):
        log.debug("firewall: %s", ruleset)
        return FirewallAnswer(False, why_unknown=ruleset)
    return FirewallAnswer(True, find_udp_drops(ruleset, port, direction))
