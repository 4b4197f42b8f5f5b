"""SIP passwords for provisioning: from a secrets file, an environment variable, or generated.

A password never comes from the command line and never appears in logs, reports, error messages or a
dry run's output: it is a :class:`~diagnostics.secret.Secret` from the moment it is read.

For each machine, the first of these that has one wins:

1. **The secrets file** (``--secrets FILE``): UTF-8 text, one ``hostname=password`` per line::

       # phonekit SIP passwords: chmod 600
       ws-001=Kx3v9Q2mZpT7wRb4Ls8nYc1D
       ws-002 = correct horse battery staple

   Host names match without regard to case. The password is everything after the first ``=``, without
   the spaces around it (so it cannot begin or end with a space, or hold a line break or other control
   character); ``#`` starts a comment only at the start of a line. The file must be a regular file
   owned by the user running phonekit and readable by nobody else (mode 0600 or stricter), or phonekit
   refuses it. Messages about a bad line give its number, never its text.
2. **An environment variable** ``PHONEKIT_SECRET_<HOSTNAME>``: the host name in upper case, every
   character but letters and digits as ``_`` (``ws-001.example.com`` → ``PHONEKIT_SECRET_WS_001_EXAMPLE_COM``).
   Two machines whose names map to the same variable cannot both take their password from it.
3. **Generated**, only with ``--generate-missing``: 24 characters from ``secrets.token_urlsafe``
   (``A-Z a-z 0-9 - _``: 144 bits, nothing a SIP URI or config file must escape), added to the secrets
   file (created if missing) before any config is written: the whole file is rewritten atomically,
   0600, keeping every existing line.
"""

from __future__ import annotations

import logging
import os
import re
import secrets as _random
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from diagnostics.errors import UsageError
from diagnostics.secret import Secret
from provision.inventory import is_hostname
from provision.output import SECRET_MODE, atomic_write

__all__ = ["ENV_PREFIX", "PASSWORD_BYTES", "Passwords", "env_name", "generate_password", "read_secrets_file"]

log = logging.getLogger(__name__)

ENV_PREFIX = "PHONEKIT_SECRET_"
PASSWORD_BYTES = 18
"""Random bytes in a generated password: 24 URL-safe base64 characters."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def env_name(hostname: str) -> str:
    """The environment variable that may hold this machine's password."""
    return ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", hostname.upper())


def generate_password() -> Secret:
    return Secret(_random.token_urlsafe(PASSWORD_BYTES))


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_private(path: Path, shown: Path) -> tuple[str, tuple[int, int, int, int]]:
    """The text of a secrets file after checking, on the open file, that it is private to this user."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UsageError(f"{shown}: cannot read the secrets file ({exc.strerror})") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UsageError(f"{shown}: the secrets file is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        if st.st_uid != os.geteuid():
            raise UsageError(
                f"{shown}: secrets file must belong to the user running phonekit (uid {os.geteuid()}), "
                f"not uid {st.st_uid}"
            )
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise UsageError(
                f"{shown}: secrets file must be readable by its owner only (mode 0600, got {oct(mode)}): "
                f"chmod 600 {shown}"
            )
        try:
            data = handle.read()
        except OSError as exc:
            raise UsageError(f"{shown}: cannot read the secrets file ({exc.strerror})") from exc
    try:
        return data.decode("utf-8"), _identity(st)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{shown}: the secrets file is not UTF-8 text (at byte {exc.start})") from exc


def _parse(text: str, shown: Path) -> dict[str, Secret]:
    passwords: dict[str, Secret] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{shown} line {number}"
        host, equals, value = stripped.partition("=")
        host, value = host.strip(), value.strip()
        if not equals:
            raise UsageError(f"{where}: expected hostname=password (the line is not shown: it may hold a password)")
        if not is_hostname(host):
            raise UsageError(
                f"{where}: the part before '=' is not a host name (not shown: it may be part of a password)"
            )
        if not value:
            raise UsageError(f"{where}: empty password for {host!r}")
        if _CONTROL.search(value):
            raise UsageError(f"{where}: the password for {host!r} holds a control character")
        key = host.lower()
        if key in lines:
            raise UsageError(f"{where}: {host!r} has a password on line {lines[key]} already")
        lines[key] = number
        passwords[key] = Secret(value)
    return passwords


def read_secrets_file(path: Path) -> dict[str, Secret]:
    """hostname (lower case) → password, from a private secrets file; every problem is a UsageError."""
    try:
        text, _ = _read_private(path.resolve(), path)
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: no such secrets file") from exc
    return _parse(text, path)


class Passwords:
    """Where each machine's password comes from in one run (see the module docstring for the order)."""

    def __init__(
        self, path: Path | None, *, generate: bool = False, environ: Mapping[str, str] | None = None
    ) -> None:
        if generate and path is None:
            raise UsageError("--generate-missing needs --secrets FILE: the generated passwords are kept there")
        self.path = path
        self.generate = generate
        self._environ = os.environ if environ is None else environ
        self._file: dict[str, Secret] = {}
        self._text = ""
        self._identity: tuple[int, int, int, int] | None = None
        self._env_used: dict[str, str] = {}
        self.generated: dict[str, Secret] = {}
        """hostname (as in the inventory) → password made in this run, not yet saved."""
        if path is not None:
            try:
                self._text, self._identity = _read_private(path.resolve(), path)
            except FileNotFoundError as exc:
                if not generate:
                    raise UsageError(f"{path}: no such secrets file (--generate-missing creates it)") from exc
            self._file = _parse(self._text, path)

    def for_machine(self, hostname: str) -> Secret:
        """This machine's password; raises UsageError saying where phonekit looked."""
        key = hostname.lower()
        found = self._file.get(key)
        if found is not None:
            return found
        variable = env_name(hostname)
        value = self._environ.get(variable, "")
        if value:
            other = self._env_used.setdefault(variable, key)
            if other != key:
                raise UsageError(
                    f"{variable} would give {other!r} and {hostname!r} the same password: "
                    f"put them in the secrets file"
                )
            if _CONTROL.search(value):
                raise UsageError(f"{variable} holds a control character")
            return Secret(value)
        made = self.generated.get(hostname)
        if made is None and self.generate:
            made = self.generated[hostname] = generate_password()
        if made is not None:
            return made
        where = f"not in {self.path} and {variable} is not set" if self.path else f"{variable} is not set"
        hint = "--generate-missing makes one" if self.path else "give --secrets FILE (and --generate-missing)"
        raise UsageError(f"no password for {hostname!r}: {where} ({hint})")

    def save_generated(self) -> int:
        """Add the generated passwords to the secrets file (atomically, 0600); how many were added.

        The run is over for this object then: it forgets every password (a new one reads the file)."""
        if not self.generated:
            return 0
        assert self.path is not None
        real = self.path.resolve()
        try:
            now = _identity(os.stat(real))
        except FileNotFoundError:
            now = None
        if now != self._identity:
            raise UsageError(f"{self.path}: the secrets file changed while phonekit ran: run again")
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        head = self._text if not self._text or self._text.endswith("\n") else self._text + "\n"
        lines = [f"# added by phonekit provision render --generate-missing, {stamp}\n"]
        lines += [f"{host}={secret.reveal()}\n" for host, secret in self.generated.items()]
        atomic_write(real, [head.encode("utf-8"), "".join(lines).encode("utf-8")], SECRET_MODE)
        count = len(self.generated)
        log.info("added %d generated passwords to %s", count, self.path)
        self._text, self._file, self.generated = "", {}, {}
        self.generate = False
        self._identity = _identity(os.stat(real))
        return count
