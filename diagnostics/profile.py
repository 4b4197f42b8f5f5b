"""The account profile: a small TOML file that `phonekit check sip`, the phone and provisioning share.

Format (every key but ``user``, ``domain`` and one password source is optional)::

    [account]
    user = "1001"                      # SIP user part of the address of record
    domain = "example.com"             # SIP domain (AOR); resolved per RFC 3263 unless registrar is set
    auth_user = "1001"                 # digest user name, when it differs from user
    display_name = "Alice Example"
    registrar = "sip.example.com:5060" # host[:port]; skips DNS when given
    transport = "udp"                  # udp | tcp | tls
    password_file = "alice.secret"     # 0600 file holding the password (first line), relative to this file
    # password_env = "PHONEKIT_PASSWORD"   # or an environment variable
    # password = "…"                       # or inline, only if this profile file itself is 0600

    [network]
    stun_server = "stun.example.com:3478"
    dns_server = "192.0.2.53:53"       # ask this DNS server instead of the system's
    rtp_ports = [4000, 4999]

    [tls]
    ca_file = "ca.pem"                 # CA list for the server certificate (default: system store)
    verify = true

    [checks]
    echo_extension = "9196"            # a number that answers and sends the caller's audio back

    [media]                            # what the phone offers (provisioning writes these)
    codecs = ["G722", "PCMA", "PCMU"]  # in order of preference
    srtp = "disabled"                  # disabled | optional | mandatory

    [audio]
    input = "Jabra"                    # capture device: a name substring or PortAudio index ("" = default)
    output = "Jabra"                   # playback device, likewise

    [dialplan]                         # dial rules; owned and validated by provision.dialplan
    ...

A password never comes from the command line, and its ``repr`` is redacted.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from diagnostics.checks import CheckContext
from diagnostics.errors import UsageError
from diagnostics.report import CheckResult, Status
from diagnostics.secret import Secret

__all__ = [
    "SRTP_MODES",
    "AccountProfile",
    "HostPort",
    "Transport",
    "load_profile",
    "needs_profile",
    "parse_host_port",
    "profile_of",
]


class Transport(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"

    @property
    def default_port(self) -> int:
        return 5061 if self is Transport.TLS else 5060


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-]+))(?::(?P<port>\d{1,5}))?$")
_USER = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+$")


def parse_host_port(text: str) -> HostPort:
    match = _HOST_PORT.match(text.strip())
    if not match:
        raise ValueError(f"expected host[:port] (got {text!r})")
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port must be 1..65535 (got {port})")
    return HostPort(match["v6"] or match["host"], port)


@dataclass(frozen=True)
class AccountProfile:
    path: Path
    user: str
    domain: str
    password: Secret = field(repr=False)
    auth_user: str = ""
    display_name: str = ""
    registrar: HostPort | None = None
    transport: Transport = Transport.UDP
    stun_server: HostPort | None = None
    dns_server: HostPort | None = None
    rtp_ports: tuple[int, int] = (4000, 4999)
    tls_ca_file: Path | None = None
    tls_verify: bool = True
    echo_extension: str | None = None
    codecs: tuple[str, ...] = ()
    """Audio codecs in order of preference (empty: the phone's defaults)."""
    srtp: str = "disabled"
    """One of :data:`SRTP_MODES`."""
    input_device: str = ""
    output_device: str = ""
    dialplan: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """The ``[dialplan]`` table as read; its owner, :mod:`provision.dialplan`, validates it."""

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    @property
    def digest_user(self) -> str:
        return self.auth_user or self.user


SRTP_MODES = ("disabled", "optional", "mandatory")

# Known sections and their fields; None: the section belongs to another module, which checks its fields.
_KNOWN: dict[str, frozenset[str] | None] = {
    "account": frozenset({"user", "domain", "auth_user", "display_name", "registrar", "transport", "password_file",
                          "password_env", "password"}),
    "network": frozenset({"stun_server", "dns_server", "rtp_ports"}),
    "tls": frozenset({"ca_file", "verify"}),
    "checks": frozenset({"echo_extension"}),
    "media": frozenset({"codecs", "srtp"}),
    "audio": frozenset({"input", "output"}),
    "dialplan": None,
}


class _Reader:
    """Typed access to the TOML with errors that name the file and the field."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, key: str, why: str, value: object) -> UsageError:
        return UsageError(f"{self.path}: field '{key}' {why} (got {value!r})")

    def get(self, section: str, name: str) -> Any:
        return self.data.get(section, {}).get(name)

    def text(self, section: str, name: str, required: bool = False, pattern: re.Pattern[str] | None = None) -> str:
        value = self.get(section, name)
        key = f"{section}.{name}"
        if value is None:
            if required:
                raise UsageError(f"{self.path}: field '{key}' is missing")
            return ""
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be a non-empty string", value)
        if pattern is not None and not pattern.match(value):
            raise self.fail(key, "has characters a SIP URI cannot carry unescaped", value)
        return value.strip()

    def host_port(self, section: str, name: str) -> HostPort | None:
        value = self.text(section, name)
        if not value:
            return None
        try:
            return parse_host_port(value)
        except ValueError as exc:
            raise self.fail(f"{section}.{name}", "must be host[:port]", value) from exc

    def file(self, section: str, name: str) -> Path | None:
        value = self.text(section, name)
        if not value:
            return None
        path = (self.path.parent / value).resolve()
        if not path.is_file():
            raise self.fail(f"{section}.{name}", "names no readable file", value)
        return path


def _private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def _password(r: _Reader) -> Secret:
    sources = [k for k in ("password_file", "password_env", "password") if r.get("account", k) is not None]
    if len(sources) != 1:
        raise UsageError(
            f"{r.path}: give exactly one of 'account.password_file', 'account.password_env', 'account.password' "
            f"(got {len(sources)})"
        )
    source = sources[0]
    if source == "password_file":
        secret_path = r.file("account", "password_file")
        assert secret_path is not None
        if not _private(secret_path):
            mode = oct(stat.S_IMODE(secret_path.stat().st_mode))
            raise UsageError(f"{secret_path}: secrets file must be readable by its owner only (mode 0600, got {mode})")
        lines = secret_path.read_text().splitlines()
        if not lines or not lines[0]:
            raise UsageError(f"{secret_path}: secrets file is empty")
        return Secret(lines[0])
    if source == "password_env":
        name = r.text("account", "password_env")
        value = os.environ.get(name)
        if not value:
            raise UsageError(f"{r.path}: field 'account.password_env' names an unset environment variable ({name!r})")
        return Secret(value)
    if not _private(r.path):
        raise UsageError(
            f"{r.path}: holds 'account.password' but is readable by others: chmod 600 it, or use password_file"
        )
    value = r.get("account", "password")
    if not isinstance(value, str) or not value:
        raise UsageError(f"{r.path}: field 'account.password' must be a non-empty string")
    return Secret(value)


def load_profile(path: Path) -> AccountProfile:
    """Read and validate a profile; every error is one line naming the file and field."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: no such profile file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from exc
    for section, value in data.items():
        if section not in _KNOWN or not isinstance(value, dict):
            raise UsageError(f"{path}: unknown section [{section}] (known: {', '.join(sorted(_KNOWN))})")
        fields = _KNOWN[section]
        unknown = [] if fields is None else sorted(set(value) - fields)
        if unknown:
            raise UsageError(f"{path}: unknown field '{section}.{unknown[0]}'")
    r = _Reader(path, data)
    transport_text = r.text("account", "transport") or "udp"
    try:
        transport = Transport(transport_text.lower())
    except ValueError as exc:
        raise r.fail("account.transport", "must be udp, tcp or tls", transport_text) from exc
    ports = r.get("network", "rtp_ports") or [4000, 4999]
    if (
        not isinstance(ports, list)
        or len(ports) != 2
        or not all(isinstance(p, int) and 1024 <= p <= 65535 for p in ports)
        or ports[0] > ports[1]
    ):
        raise r.fail("network.rtp_ports", "must be [first, last] with 1024 <= first <= last <= 65535", ports)
    verify = r.get("tls", "verify")
    if verify is not None and not isinstance(verify, bool):
        raise r.fail("tls.verify", "must be true or false", verify)
    echo = r.text("checks", "echo_extension", pattern=_USER)
    codecs = r.get("media", "codecs") or []
    if not isinstance(codecs, list) or not all(isinstance(c, str) and c.strip() for c in codecs):
        raise r.fail("media.codecs", "must be a list of codec names", codecs)
    srtp = r.text("media", "srtp") or "disabled"
    if srtp not in SRTP_MODES:
        raise r.fail("media.srtp", f"must be {', '.join(SRTP_MODES[:-1])} or {SRTP_MODES[-1]}", srtp)
    return AccountProfile(
        path=path,
        user=r.text("account", "user", required=True, pattern=_USER),
        domain=r.text("account", "domain", required=True),
        password=_password(r),
        auth_user=r.text("account", "auth_user", pattern=_USER),
        display_name=r.text("account", "display_name"),
        registrar=r.host_port("account", "registrar"),
        transport=transport,
        stun_server=r.host_port("network", "stun_server"),
        dns_server=r.host_port("network", "dns_server"),
        rtp_ports=(int(ports[0]), int(ports[1])),
        tls_ca_file=r.file("tls", "ca_file"),
        tls_verify=True if verify is None else verify,
        echo_extension=echo or None,
        codecs=tuple(c.strip() for c in codecs),
        srtp=srtp,
        input_device=_device(r, "input"),
        output_device=_device(r, "output"),
        dialplan=MappingProxyType(dict(data.get("dialplan", {}))),
    )


def _device(r: _Reader, name: str) -> str:
    """An audio device name (may be empty: the system default); surrounding blanks kept, they can be part of it."""
    value = r.get("audio", name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise r.fail(f"audio.{name}", "must be a device name (a string)", value)
    return value


def profile_of(ctx: CheckContext) -> AccountProfile | None:
    """The run's profile (``--profile``), loaded once and shared by every check; None without one."""
    if ctx.profile is None:
        return None
    cached = ctx.cache.get("profile")
    if cached is None:
        cached = load_profile(ctx.profile)
        ctx.cache["profile"] = cached
    assert isinstance(cached, AccountProfile)
    return cached


def needs_profile(check_id: str) -> CheckResult:
    """The verdict of a SIP check run without an account profile."""
    return CheckResult(
        check_id, Status.SKIP, "not checked: no account profile given",
        remedy="pass --profile FILE (an account profile: see README, 'The account profile')",
    )
