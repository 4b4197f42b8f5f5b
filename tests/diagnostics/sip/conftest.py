"""Fixtures of the SIP check tests: account profiles on disk, Kamailios with bad certificates, a scripted server."""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from diagnostics.checks import CheckContext
from tests.testbed.kamailio import CertVariant, Kamailio
from tests.testbed.procs import TestbedError, free_port

ProfileFactory = Callable[..., Path]


def _write_private(path: Path, text: str) -> None:
    """0600 from the start (os.open with the mode), like the product's own secret files."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


@pytest.fixture
def write_profile(tmp_path: Path) -> ProfileFactory:
    """Write an account profile (password in a 0600 password_file) and return its path."""
    count = 0

    def write(
        *,
        user: str,
        password: str,
        registrar: str | None,
        transport: str = "udp",
        domain: str = "127.0.0.1",
        auth_user: str | None = None,
        ca_file: Path | None = None,
        verify: bool = True,
        dns_server: str | None = None,
    ) -> Path:
        nonlocal count
        count += 1
        secret = tmp_path / f"account{count}.secret"
        _write_private(secret, password + "\n")
        lines = ["[account]", f'user = "{user}"', f'domain = "{domain}"', f'transport = "{transport}"',
                 f'password_file = "{secret.name}"']  # fmt: skip
        if registrar is not None:
            lines.append(f'registrar = "{registrar}"')
        if auth_user is not None:
            lines.append(f'auth_user = "{auth_user}"')
        if dns_server is not None:
            lines += ["", "[network]", f'dns_server = "{dns_server}"']
        lines += ["", "[tls]", f"verify = {'true' if verify else 'false'}"]
        if ca_file is not None:
            lines.append(f'ca_file = "{ca_file}"')
        path = tmp_path / f"account{count}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


def context(profile: Path) -> CheckContext:
    return CheckContext(profile=profile, interactive=False)


# --------------------------------------------------------------------------- Kamailio with a bad certificate

_bad: dict[str, Kamailio] = {}


@pytest.fixture(scope="session")
def bad_cert_kamailio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[CertVariant], Kamailio]]:
    """A second (and third) Kamailio on free ports whose TLS certificate is expired or names another host."""

    def start(variant: CertVariant) -> Kamailio:
        if variant not in _bad:
            port, tls_port = free_port(), free_port(kind=socket.SOCK_STREAM)
            server = Kamailio(tmp_path_factory.mktemp(f"kamailio-{variant}"), udp_port=port, tcp_port=port,
                              tls_port=tls_port, cert_variant=variant)  # fmt: skip
            try:
                server.start()
            except TestbedError as exc:
                server.stop()
                pytest.fail(f"test bed: Kamailio ({variant} certificate) did not start: {exc}", pytrace=False)
            _bad[variant] = server
        return _bad[variant]

    try:
        yield start
    finally:
        while _bad:
            _bad.popitem()[1].stop()


# --------------------------------------------------------------------------- a scripted SIP server


@dataclass
class Reply:
    status: int
    reason: str
    headers: Sequence[str] = ()


@dataclass
class ScriptedServer:
    """A UDP "SIP server" that answers each request with the next scripted reply (then repeats the last).

    Independent of the product's SIP code: it copies Via/From/To/Call-ID/CSeq with
    regular expressions, like a minimal stateless server would.
    """

    script: Sequence[Reply]
    received: list[bytes] = field(default_factory=list)
    sock: socket.socket = field(init=False)
    _thread: threading.Thread = field(init=False)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append(data)
            reply = self.script[min(len(self.received), len(self.script)) - 1]
            text = data.decode()
            copied = [
                line for line in text.split("\r\n")
                if re.match(r"^(Via|From|Call-ID|CSeq)\s*:", line, re.IGNORECASE)
            ]  # fmt: skip
            to = re.search(r"^To\s*:.*$", text, re.MULTILINE | re.IGNORECASE)
            lines = [f"SIP/2.0 {reply.status} {reply.reason}", *copied,
                     (to.group(0).rstrip("\r") if to else "To: <sip:x@invalid>") + ";tag=scripted",
                     *reply.headers, "Content-Length: 0"]  # fmt: skip
            self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), source)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1.0)
        self.sock.close()


@pytest.fixture
def scripted_server() -> Iterator[Callable[[Sequence[Reply]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Sequence[Reply]) -> ScriptedServer:
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
