"""coturn as a plain STUN server on loopback, for the product's NAT/STUN checks.

Only STUN Binding is needed (no TURN relays, no TLS/DTLS, no CLI), on its own
pid/log/database files in a per-run work dir so it never touches a system
coturn, and it is stopped by the PID the test bed started.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.testbed.procs import Process, TestbedError, require

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
    """A foreground ``turnserver --stun-only`` on ``host:port`` (UDP only)."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1", port: int = 3478) -> None:
        self.workdir = workdir
        self.host = host
        self.port = port
        self.log_path = workdir / "coturn.log"
        self.pid_path = workdir / "turnserver.pid"
        self.process: Process | None = None

    @property
    def uri(self) -> str:
        return f"stun:{self.host}:{self.port}"

    def _check_port_free(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                raise TestbedError(
                    f"STUN port udp/{self.port} on {self.host} busy ({exc.strerror}); see 'ss -lunp' "
                    "(another test run or a system coturn service?)"
                ) from exc

    def start(self, timeout_s: float = 10.0) -> None:
        turnserver = require("turnserver")
        self._check_port_free()
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            turnserver,
            "-n",  # no config file: a system /etc/turnserver.conf must not leak in
            f"--listening-ip={self.host}",
            f"--listening-port={self.port}",
            "--stun-only",
            "--no-tcp", "--no-tls", "--no-dtls", "--no-cli",
            # RFC 5780 needs a second address; loopback has one, so keep it off.
            "--no-rfc5780",
            f"--pidfile={self.pid_path}",
            "--log-file=stdout", "--simple-log",
            f"--userdb={self.workdir / 'turndb'}",
        ]  # fmt: skip
        self.process = Process("coturn", argv, self.log_path, cwd=self.workdir)
        self.process.wait_until(self._answers, timeout_s, f"STUN answer on udp/{self.port}")
        log.info("coturn up (pid %d) at %s", self.process.pid, self.uri)

    def _answers(self) -> bool:
        try:
            stun_binding(self.host, self.port, timeout_s=0.2)
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


# One instance per process even if the fixture is registered twice (conftest
# and a test module): a second one would find port 3478 taken.
_shared: Coturn | None = None
_shared_users = 0


@pytest.fixture(scope="session")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    """The session's STUN server on 127.0.0.1:3478; fails (never skips) if it cannot start."""
    global _shared, _shared_users
    if _shared is None:
        server = Coturn(tmp_path_factory.mktemp("coturn"))
        try:
            server.start()
        except TestbedError as exc:
            server.stop()
            pytest.fail(f"test bed: coturn did not start: {exc}", pytrace=False)
        _shared = server
    _shared_users += 1
    try:
        yield _shared
    finally:
        _shared_users -= 1
        if _shared_users == 0:
            _shared.stop()
            _shared = None
