"""The report model every check shares: one verdict per check, one report per run.

A check never raises to say "this is broken": it returns a :class:`CheckResult`
with a status, a one-line summary, measurements whose names carry their units
(``delay_ms``, ``level_dbfs``) and a remedy. An exception means "could not
measure" and becomes a result with status ``error`` in the runner.

JSON form (stable; documented in README)::

    {"phonekit_version": "0.1.0", "host": {...}, "started_at": "2026-...Z",
     "verdict": "pass", "checks": [{"id": "audio.devices", "status": "pass",
     "summary": "...", "measurements": {...}, "remedy": null,
     "duration_ms": 12.3}]}
"""

from __future__ import annotations

import getpass
import platform
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from importlib import metadata
from typing import Any

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_ENVIRONMENT",
    "EXIT_OK",
    "EXIT_USAGE",
    "CheckResult",
    "Report",
    "Status",
    "exit_code",
    "host_info",
    "phonekit_version",
]

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3

_CHECK_ID = re.compile(r"^[a-z]+\.[a-z][a-z0-9_]*$")
_MEASUREMENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# JSON-able measurement values: numbers, text, flags, and lists/dicts of them
# (device and interface tables are lists of dicts).
Measurement = Any


class Status(StrEnum):
    """Outcome of one check, ordered by how much it should worry the reader."""

    PASS = "pass"
    SKIP = "skip"
    WARN = "warn"
    ERROR = "error"
    FAIL = "fail"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Status.PASS: 0, Status.SKIP: 1, Status.WARN: 2, Status.ERROR: 3, Status.FAIL: 4}


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one check."""

    id: str
    """Stable check id, ``group.name`` (``audio.mic_level``, ``sip.register``)."""
    status: Status
    summary: str
    """One line in plain words: what was found."""
    measurements: Mapping[str, Measurement] = field(default_factory=dict)
    """Measured values; a name ends in its unit (``_ms``, ``_dbfs``, ``_hz``) where it has one."""
    remedy: str | None = None
    """What to do about it; required for anything that is not ``pass``."""
    duration_ms: float = 0.0

    def __post_init__(self) -> None:
        if not _CHECK_ID.match(self.id):
            raise ValueError(f"check id must look like 'group.name' (got {self.id!r})")
        if not isinstance(self.status, Status):
            raise ValueError(f"{self.id}: status must be a Status (got {self.status!r})")
        if "\n" in self.summary or not self.summary.strip():
            raise ValueError(f"{self.id}: summary must be one non-empty line (got {self.summary!r})")
        if self.status is not Status.PASS and not (self.remedy and self.remedy.strip()):
            raise ValueError(f"{self.id}: a '{self.status.value}' result needs a remedy (got {self.remedy!r})")
        for name in self.measurements:
            if not _MEASUREMENT_NAME.match(name):
                raise ValueError(f"{self.id}: measurement names are snake_case (got {name!r})")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "summary": self.summary,
            "measurements": dict(self.measurements),
            "remedy": self.remedy,
            "duration_ms": round(self.duration_ms, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(
            id=data["id"],
            status=Status(data["status"]),
            summary=data["summary"],
            measurements=dict(data.get("measurements") or {}),
            remedy=data.get("remedy"),
            duration_ms=float(data.get("duration_ms", 0.0)),
        )


def phonekit_version() -> str:
    try:
        return metadata.version("phonekit")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def host_info() -> dict[str, str]:
    """Who and where: enough for a helpdesk ticket, nothing secret."""
    return {
        "hostname": socket.gethostname(),
        "user": getpass.getuser(),
        "os": platform.system(),
        "os_release": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


@dataclass(frozen=True)
class Report:
    """All checks of one run, with the overall verdict."""

    checks: tuple[CheckResult, ...]
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    host: Mapping[str, str] = field(default_factory=host_info)
    version: str = field(default_factory=phonekit_version)

    @property
    def verdict(self) -> Status:
        """The worst status of the checks that ran; a skipped check does not lower a pass.

        ``skip`` only when every check was skipped; ``pass`` when there are none.
        """
        ran = [c.status for c in self.checks if c.status is not Status.SKIP]
        if self.checks and not ran:
            return Status.SKIP
        return max(ran, key=lambda s: s.severity, default=Status.PASS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "phonekit_version": self.version,
            "host": dict(self.host),
            "started_at": self.started_at.isoformat().replace("+00:00", "Z"),
            "verdict": self.verdict.value,
            "checks": [c.to_dict() for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        return cls(
            checks=tuple(CheckResult.from_dict(c) for c in data["checks"]),
            started_at=datetime.fromisoformat(data["started_at"].replace("Z", "+00:00")),
            host=dict(data["host"]),
            version=data["phonekit_version"],
        )


def exit_code(statuses: Iterable[Status]) -> int:
    """0 when nothing failed (warnings allowed), 1 when a check failed, 3 when one could not measure.

    A definite failure outranks "could not measure": it is the more useful news.
    """
    seen = set(statuses)
    if Status.FAIL in seen:
        return EXIT_CHECK_FAILED
    if Status.ERROR in seen:
        return EXIT_ENVIRONMENT
    return EXIT_OK
