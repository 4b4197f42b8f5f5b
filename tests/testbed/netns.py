"""A client ↔ router ↔ server network in three network namespaces, optionally with a NAT in the router.

::

    client (pk<pid>-<tag>-client)    router (…-router)                     server (…-server)
    eth0 10.200.1.2/24 ───────────── to-client 10.200.1.1/24
                                     to-server 10.200.2.1/24 ───────────── eth0 10.200.2.2/24
                                     ip_forward=1, NAT table                    10.200.2.3/24 (alternate)
    default via 10.200.1.1                                                 default via 10.200.2.1

Only these namespaces are touched: the veth pairs are created inside them,
the NAT is an nftables table of its own (``phonekit_nat``) in the router, and
:meth:`Topology.down` stops the processes started through :meth:`Topology.popen`
(by PID), deletes the table and then the namespaces, even after a failed test.

NAT modes (conntrack-based, so IP fragments are reassembled, not dropped; MTU stays 1500):

* ``None``: plain routing; the server sees the client's own address.
* ``"masquerade"``: source NAT to 10.200.2.1. Linux keeps the source port when
  it is free, so the mapping is endpoint-independent (not a symmetric NAT).
* ``"masquerade-random"``: ``masquerade random``: a random port for every new
  destination: address-and-port-dependent mapping, a symmetric NAT.
* ``"address-dependent"``: an emulation of address-dependent mapping: flows to
  ``SERVER_ALT_IP`` all leave from 10.200.2.1:40000 whatever their destination
  port (UDP), everything else is masqueraded as above. One flow per
  alternate-address port at a time (enough for STUN behaviour tests).

Both NAT modes filter address-and-port-dependently (only replies to a
conntrack entry come back in).

Use it as a context manager, through the :func:`make_topology` fixture
(function scope, several per test), or :func:`topology_fixture` for a module
or session scoped one::

    def test_something(make_topology):
        net = make_topology(nat="masquerade")
        server = net.popen("server", ["turnserver", ...], tmp_path / "coturn.log")
        out = net.run("client", [sys.executable, "-c", "..."]).stdout
        sock = net.socket("client")                  # a socket that lives in the client namespace
        net.call("client", some_function, arg)       # runs in a thread inside the client namespace
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

from tests.testbed.procs import Process, TestbedError, require

__all__ = [
    "ADDRESS_DEPENDENT_PORT",
    "CLIENT_IF",
    "CLIENT_IP",
    "NAT_MODES",
    "NAT_TABLE",
    "ROLES",
    "ROUTER_CLIENT_IF",
    "ROUTER_CLIENT_IP",
    "ROUTER_SERVER_IF",
    "ROUTER_SERVER_IP",
    "SERVER_ALT_IP",
    "SERVER_IF",
    "SERVER_IP",
    "NatMode",
    "Topology",
    "in_netns",
    "make_topology",
    "topology_fixture",
]

log = logging.getLogger(__name__)

Role = Literal["client", "router", "server"]
ROLES: tuple[Role, ...] = ("client", "router", "server")
NatMode = Literal["masquerade", "masquerade-random", "address-dependent"]
NAT_MODES: tuple[NatMode, ...] = ("masquerade", "masquerade-random", "address-dependent")

CLIENT_IP = "10.200.1.2"
ROUTER_CLIENT_IP = "10.200.1.1"
ROUTER_SERVER_IP = "10.200.2.1"
"""The router's outside address: what the server sees as the client's address behind the NAT."""
SERVER_IP = "10.200.2.2"
SERVER_ALT_IP = "10.200.2.3"
"""A second server address (RFC 5780 STUN needs two; also handy for a second server)."""
PREFIX_LEN = 24

CLIENT_IF = "eth0"
ROUTER_CLIENT_IF = "to-client"
ROUTER_SERVER_IF = "to-server"
SERVER_IF = "eth0"

NAT_TABLE = "phonekit_nat"
ADDRESS_DEPENDENT_PORT = 40000

_CLONE_NEWNET = 0x40000000  # <linux/sched.h>
_NETNS_DIR = Path("/run/netns")

T = TypeVar("T")


def in_netns(netns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` in a short-lived thread that has joined the network namespace ``netns``.

    setns(2) with CLONE_NEWNET changes only the calling thread, so the test
    process itself stays where it is. Sockets created inside keep their
    namespace for life, so ``in_netns(ns, socket.socket, ...)`` gives a socket
    the main thread can use. Exceptions are re-raised in the caller.
    """
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(_NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, f"setns({netns}): {os.strerror(code)}")
            finally:
                os.close(fd)
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


def _nat_ruleset(mode: NatMode) -> str:
    # Conntrack-based source NAT on the way out to the server side; no filter chains, so fragments and
    # replies pass as they do through a home router.
    rules = {
        "masquerade": [f'oifname "{ROUTER_SERVER_IF}" masquerade'],
        "masquerade-random": [f'oifname "{ROUTER_SERVER_IF}" masquerade random'],
        # One port for the alternate address, whatever the destination port: the tuples still differ,
        # so conntrack reuses it, and the mapping depends on the destination address only.
        "address-dependent": [
            f'oifname "{ROUTER_SERVER_IF}" ip daddr {SERVER_ALT_IP} meta l4proto udp '
            f"snat to {ROUTER_SERVER_IP}:{ADDRESS_DEPENDENT_PORT}",
            f'oifname "{ROUTER_SERVER_IF}" masquerade',
        ],
    }[mode]
    body = "".join(f"    {rule}\n" for rule in rules)
    return (
        f"table ip {NAT_TABLE} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f"{body}"
        "  }\n"
        "}\n"
    )


class Topology:
    """Three namespaces joined by two veth pairs; see the module docstring for the addresses."""

    def __init__(self, workdir: Path, nat: NatMode | None = None, tag: str | None = None) -> None:
        if nat is not None and nat not in NAT_MODES:
            raise ValueError(f"nat must be None or one of {', '.join(NAT_MODES)} (got {nat!r})")
        self.workdir = workdir
        self.nat: NatMode | None = nat
        tag = tag or secrets.token_hex(3)
        self.names: Mapping[Role, str] = {role: f"pk{os.getpid()}-{tag}-{role}" for role in ROLES}
        self._created: list[str] = []
        self._processes: list[Process] = []
        self._nat_table = False

    # --- lifecycle ---

    def up(self) -> Topology:
        if os.geteuid() != 0:
            raise TestbedError("network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)")
        require("ip")
        self.workdir.mkdir(parents=True, exist_ok=True)
        client, router, server = (self.names[role] for role in ROLES)
        for name in (client, router, server):
            _ip("netns", "add", name)
            self._created.append(name)
        # Created inside the namespaces directly: no interface ever appears in the host's namespace.
        for (end_a, ns_a), (end_b, ns_b) in (((CLIENT_IF, client), (ROUTER_CLIENT_IF, router)),
                                             ((ROUTER_SERVER_IF, router), (SERVER_IF, server))):  # fmt: skip
            _ip("link", "add", end_a, "netns", ns_a, "type", "veth", "peer", "name", end_b, "netns", ns_b)
        for name, ifname, addresses in (
            (client, CLIENT_IF, (CLIENT_IP,)),
            (router, ROUTER_CLIENT_IF, (ROUTER_CLIENT_IP,)),
            (router, ROUTER_SERVER_IF, (ROUTER_SERVER_IP,)),
            (server, SERVER_IF, (SERVER_IP, SERVER_ALT_IP)),
        ):
            for address in addresses:
                _ip("-n", name, "addr", "add", f"{address}/{PREFIX_LEN}", "dev", ifname)
            _ip("-n", name, "link", "set", ifname, "up")
        for name in (client, router, server):
            _ip("-n", name, "link", "set", "lo", "up")
        in_netns(router, Path("/proc/sys/net/ipv4/ip_forward").write_text, "1\n")
        _ip("-n", client, "route", "add", "default", "via", ROUTER_CLIENT_IP)
        _ip("-n", server, "route", "add", "default", "via", ROUTER_SERVER_IP)
        self.set_nat(self.nat)
        log.info("netns topology up: %s (nat %s)", ", ".join(self.names.values()), self.nat)
        return self

    def set_nat(self, mode: NatMode | None) -> None:
        """Switch the router's NAT (its own nftables table); existing conntrack entries keep their mapping,
        so use new sockets (new source ports) after a switch."""
        if mode is not None and mode not in NAT_MODES:
            raise ValueError(f"nat must be None or one of {', '.join(NAT_MODES)} (got {mode!r})")
        if self._nat_table:
            self.run("router", ["nft", "delete", "table", "ip", NAT_TABLE])
            self._nat_table = False
        if mode is not None:
            require("nft")
            self.run("router", ["nft", "-f", "-"], input=_nat_ruleset(mode))
            self._nat_table = True
        self.nat = mode

    def down(self) -> None:
        """Stop our processes, delete our NAT table and namespaces; every step runs even if one fails."""
        errors: list[str] = []
        for process in reversed(self._processes):
            try:
                process.stop()
            except Exception as exc:
                errors.append(f"stopping {process.name} (pid {process.pid}): {exc}")
        self._processes.clear()
        if self._nat_table:
            try:
                self.set_nat(None)
            except Exception as exc:
                errors.append(f"deleting nftables table {NAT_TABLE}: {exc}")
        for name in reversed(self._created):
            try:
                _ip("netns", "delete", name)
            except TestbedError as exc:
                errors.append(str(exc))
        self._created.clear()
        if errors:
            raise TestbedError("netns teardown: " + "; ".join(errors))

    def __enter__(self) -> Topology:
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc: object) -> None:
        self.down()

    # --- doing things inside ---

    def netns(self, role: Role) -> str:
        """The namespace name of ``role`` (for ``ip -n`` or ``ip netns exec``)."""
        return self.names[role]

    def exec_prefix(self, role: Role) -> list[str]:
        """argv prefix that runs a program in ``role``'s namespace (``ip netns exec`` execs it: same PID)."""
        return [require("ip"), "netns", "exec", self.names[role]]

    def run(
        self, role: Role, argv: Sequence[str], timeout_s: float = 30.0, check: bool = True, input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """Run a command to completion inside ``role``'s namespace; with ``check``, fail with its output."""
        completed = subprocess.run(
            [*self.exec_prefix(role), *argv], input=input, capture_output=True, text=True, timeout=timeout_s,
            env=dict(env) if env is not None else None, check=False,
        )  # fmt: skip
        if check and completed.returncode != 0:
            raise TestbedError(
                f"in {self.names[role]}: {' '.join(argv)} exited with {completed.returncode}: "
                f"{(completed.stderr or completed.stdout).strip()}"
            )
        return completed

    def popen(
        self, role: Role, argv: Sequence[str], log_path: Path, name: str | None = None,
        env: Mapping[str, str] | None = None, cwd: Path | None = None,
    ) -> Process:  # fmt: skip
        """Start a long-running process inside ``role``'s namespace; :meth:`down` stops it by PID."""
        process = Process(name or f"{role}:{Path(argv[0]).name}", [*self.exec_prefix(role), *argv], log_path,
                          env=env, cwd=cwd)  # fmt: skip
        self._processes.append(process)
        return process

    def call(self, role: Role, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a thread inside ``role``'s namespace (see :func:`in_netns`)."""
        return in_netns(self.names[role], fn, *args, **kwargs)

    def socket(self, role: Role, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """A new socket that lives in ``role``'s namespace (the caller closes it)."""
        return self.call(role, socket.socket, family, kind)


def _ip(*args: str) -> None:
    completed = subprocess.run([require("ip"), *args], capture_output=True, text=True, timeout=30, check=False)
    if completed.returncode != 0:
        raise TestbedError(f"ip {' '.join(args)}: {completed.stderr.strip() or completed.returncode}")


# --- fixtures -----------------------------------------------------------------------------------


def _start(workdir: Path, nat: NatMode | None) -> Topology:
    topology = Topology(workdir, nat=nat)
    try:
        return topology.__enter__()
    except TestbedError as exc:
        pytest.fail(f"test bed: network namespaces did not come up: {exc}", pytrace=False)


@pytest.fixture
def make_topology(tmp_path: Path) -> Iterator[Callable[..., Topology]]:
    """A factory: ``make_topology(nat=None | "masquerade" | …)``; every topology it made is torn down after the test."""
    made: list[Topology] = []

    def make(nat: NatMode | None = None) -> Topology:
        topology = _start(tmp_path / f"netns{len(made)}", nat)
        made.append(topology)
        return topology

    yield make
    for topology in reversed(made):
        topology.down()


def topology_fixture(nat: NatMode | None = None, scope: Literal["module", "session", "class"] = "module") -> Any:
    """A fixture with a wider scope, for a test module that shares one topology (switch NAT with ``set_nat``)::

    net = topology_fixture(scope="module")
    """

    @pytest.fixture(scope=scope)
    def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
        net = _start(tmp_path_factory.mktemp("netns"), nat)
        try:
            yield net
        finally:
            net.down()

    return topology
