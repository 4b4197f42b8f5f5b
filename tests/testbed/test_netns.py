"""The namespace topology: routes and NATs behave as documented, servers run inside, and everything goes away."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from diagnostics.network.stun import Address, binding
from tests.testbed import procs
from tests.testbed.coturn import Coturn, stun_binding
from tests.testbed.netns import (
    CLIENT_IP,
    NAT_TABLE,
    ROUTER_SERVER_IP,
    SERVER_ALT_IP,
    SERVER_IP,
    NatMode,
    Topology,
    in_netns,
    topology_fixture,
)

net = topology_fixture(scope="module")


def host_netns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def send_and_see_source(net: Topology, payload: bytes = b"hello") -> tuple[Address, Address, bytes]:
    """Client → server over UDP: (client socket's own address, source the server saw, what it received)."""
    with net.socket("server") as server, net.socket("client") as client:
        server.bind((SERVER_IP, 0))
        server.settimeout(2.0)
        client.bind((CLIENT_IP, 0))
        client.settimeout(2.0)
        client.sendto(payload, server.getsockname())
        data, source = server.recvfrom(65535)
        server.sendto(data, source)  # and the reply finds its way back through the NAT
        assert client.recv(65535) == payload
        return Address(*client.getsockname()), Address(*source), data


@pytest.mark.timeout(10)
def test_namespaces_routes_and_forwarding(net: Topology) -> None:
    assert set(net.names.values()) <= host_netns_names()
    assert all(name.startswith(f"pk{os.getpid()}-") for name in net.names.values())
    assert net.run("router", ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
    routes = net.run("client", ["ip", "route", "show", "default"]).stdout
    assert routes.startswith("default via 10.200.1.1 dev eth0")
    server_addresses = net.run("server", ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
    assert f"{SERVER_IP}/24" in server_addresses and f"{SERVER_ALT_IP}/24" in server_addresses
    # Nothing of it shows in the host's own namespace.
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert "to-client" not in host_links and "to-server" not in host_links


@pytest.mark.timeout(10)
@pytest.mark.parametrize("nat", [None, "masquerade", "masquerade-random"])
def test_what_the_server_sees(net: Topology, nat: NatMode | None) -> None:
    net.set_nat(nat)
    seen = [send_and_see_source(net)[:2] for _ in range(3)]
    for _, source in seen:
        assert source.host == (CLIENT_IP if nat is None else ROUTER_SERVER_IP)
    ports_kept = [local.port == source.port for local, source in seen]
    # Linux NAT keeps a free source port; "random" draws a new one (three draws: all equal by chance ~1e-14).
    assert all(ports_kept) if nat != "masquerade-random" else not any(ports_kept)


@pytest.mark.timeout(10)
def test_nat_table_is_ours_and_goes_away(net: Topology) -> None:
    net.set_nat("masquerade")
    assert net.run("router", ["nft", "list", "tables"]).stdout.split() == ["table", "ip", NAT_TABLE]
    assert "masquerade" in net.run("router", ["nft", "list", "table", "ip", NAT_TABLE]).stdout
    net.set_nat(None)
    assert net.run("router", ["nft", "list", "tables"]).stdout.strip() == ""


@pytest.mark.timeout(10)
def test_fragmented_datagrams_cross_the_nat(net: Topology) -> None:
    """An INVITE with auth is ~1,480 bytes and fragments at MTU 1500; conntrack NAT reassembles, not drops."""
    net.set_nat("masquerade")
    payload = os.urandom(4000)
    assert send_and_see_source(net, payload)[2] == payload


@pytest.mark.timeout(10)
def test_run_failure_names_namespace_command_and_output(net: Topology) -> None:
    with pytest.raises(procs.TestbedError) as excinfo:
        net.run("client", ["ip", "link", "show", "nosuch0"])
    assert str(excinfo.value) == (
        f'in {net.netns("client")}: ip link show nosuch0 exited with 1: Device "nosuch0" does not exist.'
    )


def test_in_netns_passes_errors_back() -> None:
    with pytest.raises(FileNotFoundError):
        in_netns("pk-no-such-namespace", socket.socket)


@pytest.mark.timeout(15)
def test_servers_run_inside_the_server_namespace(net: Topology, tmp_path: Path) -> None:
    """coturn on the server's two veth addresses (RFC 5780), asked from the client namespace."""
    net.set_nat(None)
    server = Coturn(tmp_path, host=SERVER_IP, port=3478, alt_host=SERVER_ALT_IP, netns=net.netns("server"))
    server.start()
    try:
        assert server.process is not None
        # `ip netns exec` execs: the PID we hold is coturn's own, in the server's namespace.
        assert Path(f"/proc/{server.process.pid}/comm").read_text().strip() == "turnserver"
        assert (
            os.stat(f"/proc/{server.process.pid}/ns/net").st_ino == os.stat(f"/run/netns/{net.netns('server')}").st_ino
        )
        with net.socket("client") as sock:
            sock.bind((CLIENT_IP, 0))
            assert stun_binding(SERVER_IP, 3478, timeout_s=2.0, sock=sock) == sock.getsockname()
            answer = binding(sock, (SERVER_IP, 3478), timeout_s=2.0)
        assert answer.other_address == Address(SERVER_ALT_IP, 3479) == Address(*(server.other_address or ("", 0)))
    finally:
        server.stop()


@pytest.mark.timeout(15)
def test_teardown_stops_processes_and_deletes_everything(
    make_topology: Callable[..., Topology], tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError, match="test failed here"), Topology(tmp_path, nat="masquerade-random") as topo:
        names = set(topo.names.values())
        sleeper = topo.popen("client", ["sleep", "60"], tmp_path / "sleep.log")
        pid = sleeper.pid
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}/comm").read_text().strip() != "sleep" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{topo.netns('client')}").st_ino
        raise RuntimeError("test failed here")
    assert not sleeper.alive() and not Path(f"/proc/{pid}").exists()
    assert not names & host_netns_names()
    # The fixture factory gives fresh, independent topologies.
    first, second = make_topology(), make_topology(nat="masquerade")
    assert set(first.names.values()).isdisjoint(second.names.values())
    assert second.nat == "masquerade" and first.nat is None
