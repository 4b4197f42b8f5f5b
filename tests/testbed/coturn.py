"""coturn as a plain STUN server on loopback or in a test namespace, for the product's NAT/STUN checks.

Only STUN Binding is needed (no TURN relays, no TLS/DTLS, no CLI), on its own
pid/log/database files in a per-run work dir so it never touches a system
coturn, and it is stopped by the PID the test bed started.

RFC 5780 (NAT behaviour discovery) needs a second address: coturn 4.6 turns it
on by itself when it listens on two addresses of one family (``--listening-ip``
twice) and then also listens on the alternate port (``--alt-listening-port``,
default port + 1) on both. Its Binding answers then carry RESPONSE-ORIGIN and
OTHER-ADDRESS and it honours CHANGE-REQUEST. Ask its *first* address: coturn
4.6 derives OTHER-ADDRESS from the first listening address, so an answer from
the second one names the second IP again (4.6.1, netengine.c get_alt_addr).
With one address it runs with ``--no-rfc5780`` (no OTHER-ADDRESS): a plain
RFC 5389 server.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import socket
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.testbed.netns import in_netns
from tests.testbed.procs import Process, TestbedError, require, serving

T = TypeVar("T")

log = logging.getLogger(__name__)

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001
BINDING_SUCCESS = 0x0101
ATTR_XOR_MAPPED_ADDRESS = 0x0020


def stun_binding(host: str, port: int, timeout_s: float = 1.0, sock: socket.socket | None = None) -> tuple[str, int]:
    """Send one RFC 5389 Binding request over UDP; return XOR-MAPPED-ADDRESS (ip, port).

    Hand-built on purpose: it checks the server independently of any STUN code
    in the product.  Pass ``sock`` to ask from a socket you already bound.
    Raises TestbedError on timeout or on a malformed/unsuccessful answer.
    """
    own = sock is None
    if sock is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
    try:
        sock.settimeout(timeout_s)
        transaction = secrets.token_bytes(12)
        sock.sendto(struct.pack("!HHI", BINDING_REQUEST, 0, MAGIC_COOKIE) + transaction, (host, port))
        while True:
            try:
                data, _ = sock.recvfrom(2048)
            except OSError as exc:  # timeout or ICMP port unreachable
                raise TestbedError(f"no STUN answer from {host}:{port}: {exc}") from exc
            if len(data) >= 20 and data[8:20] == transaction:
                break
        return _parse_binding_success(data)
    finally:
        if own:
            sock.close()


def _parse_binding_success(data: bytes) -> tuple[str, int]:
    msg_type, length, cookie = struct.unpack("!HHI", data[:8])
    if msg_type != BINDING_SUCCESS or cookie != MAGIC_COOKIE:
        raise TestbedError(f"not a STUN Binding success: type 0x{msg_type:04x} cookie 0x{cookie:08x}")
    pos, end = 20, 20 + length
    while pos + 4 <= end:
        attr, alen = struct.unpack("!HH", data[pos : pos + 4])
        value = data[pos + 4 : pos + 4 + alen]
        if attr == ATTR_XOR_MAPPED_ADDRESS:
            family = value[1]
            xport = struct.unpack("!H", value[2:4])[0] ^ (MAGIC_COOKIE >> 16)
            if family != 0x01:
                raise TestbedError(f"XOR-MAPPED-ADDRESS family {family} is not IPv4")
            xaddr = struct.unpack("!I", value[4:8])[0] ^ MAGIC_COOKIE
            return str(ipaddress.IPv4Address(xaddr)), xport
        pos += 4 + alen + (-alen % 4)  # attributes are padded to 4 bytes
    raise TestbedError("STUN Binding success without XOR-MAPPED-ADDRESS")


class Coturn:
    """A foreground ``turnserver --stun-only`` on ``host:port`` (UDP only).

    ``alt_host`` makes it an RFC 5780 server with OTHER-ADDRESS ``alt_host:alt_port``
    (``alt_port`` defaults to ``port + 1``). ``netns`` runs it inside that network
    namespace (see tests/testbed/netns.py), e.g. on the server's veth addresses.
    """

    def __init__(
        self, workdir: Path, host: str = "127.0.0.1", port: int = 3478, alt_host: str | None = None,
        alt_port: int | None = None, netns: str | None = None,
    ) -> None:  # fmt: skip
        self.workdir = workdir
        self.host = host
        self.port = port
        self.alt_host = alt_host
        self.alt_port = alt_port if alt_port is not None else port + 1
        self.netns = netns
        self.log_path = workdir / "coturn.log"
        self.pid_path = workdir / "turnserver.pid"
        self.process: Process | None = None

    @property
    def uri(self) -> str:
        return f"stun:{self.host}:{self.port}"

    @property
    def other_address(self) -> tuple[str, int] | None:
        """The RFC 5780 OTHER-ADDRESS its answers carry; None for a single-address server."""
        return (self.alt_host, self.alt_port) if self.alt_host else None

    def _endpoints(self) -> list[tuple[str, int]]:
        if self.alt_host is None:
            return [(self.host, self.port)]
        return [(h, p) for h in (self.host, self.alt_host) for p in (self.port, self.alt_port)]

    def _inside(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` where the server runs: here, or in a thread inside its namespace."""
        return fn(*args, **kwargs) if self.netns is None else in_netns(self.netns, fn, *args, **kwargs)

    def _check_ports_free(self) -> None:
        for host, port in self._endpoints():
            with self._inside(socket.socket, socket.AF_INET, socket.SOCK_DGRAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError as exc:
                    where = f" in netns {self.netns}" if self.netns else ""
                    raise TestbedError(
                        f"STUN port udp/{port} on {host}{where} busy ({exc.strerror}); see 'ss -lunp' "
                        "(another test run or a system coturn service?)"
                    ) from exc

    def start(self, timeout_s: float = 10.0) -> None:
        turnserver = require("turnserver")
        self._check_ports_free()
        self.workdir.mkdir(parents=True, exist_ok=True)
        listen = [f"--listening-ip={self.host}", f"--listening-port={self.port}"]
        if self.alt_host is not None:
            # Two addresses of one family switch RFC 5780 on; the alternate port is listened on as well.
            listen += [f"--listening-ip={self.alt_host}", f"--alt-listening-port={self.alt_port}"]
        else:
            listen += ["--no-rfc5780"]  # one address: a plain RFC 5389 server without OTHER-ADDRESS
        argv = [
            turnserver,
            "-n",  # no config file: a system /etc/turnserver.conf must not leak in
            *listen,
            "--stun-only",
            "--no-tcp", "--no-tls", "--no-dtls", "--no-cli",
            f"--pidfile={self.pid_path}",
            "--log-file=stdout", "--simple-log",
            f"--userdb={self.workdir / 'turndb'}",
        ]  # fmt: skip
        if self.netns is not None:
            argv = [require("ip"), "netns", "exec", self.netns, *argv]  # ip execs turnserver: same PID
        self.process = Process("coturn", argv, self.log_path, cwd=self.workdir)
        self.process.wait_until(self._answers, timeout_s, f"STUN answer on udp/{self.port}")
        log.info("coturn up (pid %d) at %s%s", self.process.pid, self.uri, f" in {self.netns}" if self.netns else "")

    def _answers(self) -> bool:
        try:
            for host, port in self._endpoints():
                self._inside(stun_binding, host, port, timeout_s=0.2)
        except TestbedError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        # coturn leaves its pid file behind when signalled: tidy our own copy.
        if self.pid_path.exists():
            os.unlink(self.pid_path)

    def __enter__(self) -> Coturn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()




@pytest.fixture(scope="session")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """The session's STUN server on 127.0.0.1:3478; fails (never skips) if it cannot start."""
    with serving(Coturn(tmp_path_factory.mktemp("coturn")), "coturn") as server:
        yield server
