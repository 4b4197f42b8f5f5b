"""The report model every check shares: one verdict per check, one report per run.

A check never raises to say "this is broken": it returns a :class:`CheckResult`
with a status, a one-line summary, measurements whose names carry their units
(``delay_ms``, ``level_dbfs``) and a remedy. An exception means "could not
measure" and becomes a result with status ``error`` in the runner.

JSON form (stable; documented in README)::

    {"phonekit_version": "0.1.0", "host": {...}, "started_at": "2026-...Z",
     "verdict": "pass", "checks": [{"id": "audio.devices", "status": "pass",
     "summary": "...", "measurements": {...}, "remedy": null,
     "duration_ms": 12.3, "plots": {...}}]}

Plots. A check may carry the data of its figures in ``plots`` (snake_case
names, e.g. ``mic_level``), so that the JSON report alone is enough to draw
the HTML report again later. Each plot is plain JSON::

    {"kind": "line" | "bars" | "impulse",
     "title": str, "x_label": str, "y_label": str,
     "x_log": bool,                                   # optional, default false
     "series": [{"name": str, "x": [float, ...], "y": [float, ...]}],
     "hlines": [{"y": float, "label": str}],         # thresholds, targets
     "vlines": [{"x": float, "label": str}],         # events, a measured delay
     "y_range": [lo, hi] | null}                      # null: fit the data

``x`` and ``y`` of a series have the same length, at most
:data:`MAX_PLOT_POINTS` finite numbers: build series with :func:`plot_series`,
which decimates them (:func:`decimate`), and plots with :func:`make_plot`. ``impulse``
draws a stem from the bottom of the axis to each point (magnitudes, dB);
``bars`` draws bars from 0 (or the bottom when 0 is off the axis).
"""

from __future__ import annotations

import getpass
import itertools
import platform
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from importlib import metadata
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_ENVIRONMENT",
    "EXIT_OK",
    "EXIT_USAGE",
    "MAX_PLOT_POINTS",
    "PLOT_KINDS",
    "CheckResult",
    "Report",
    "Status",
    "decimate",
    "exit_code",
    "host_info",
    "make_plot",
    "phonekit_version",
    "plot_series",
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

PLOT_KINDS = frozenset({"line", "bars", "impulse"})
MAX_PLOT_POINTS = 600
"""Points per series: enough for a 700-pixel-wide figure, small enough for a ticket attachment."""
# Five significant digits: far below a pixel, and half the JSON of a full float repr.
_PLOT_DIGITS = 5
_PLOT_REQUIRED = ("kind", "title", "x_label", "y_label", "series")
_PLOT_KEYS = frozenset({*_PLOT_REQUIRED, "x_log", "hlines", "vlines", "y_range"})


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
    plots: Mapping[str, Any] = field(default_factory=dict)
    """Figures for the HTML report, by snake_case name; each follows the plot schema (module docstring)."""

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
        for name, plot in self.plots.items():
            if not _MEASUREMENT_NAME.match(name):
                raise ValueError(f"{self.id}: plot names are snake_case (got {name!r})")
            _check_plot(f"{self.id}: plot {name!r}", plot)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "summary": self.summary,
            "measurements": dict(self.measurements),
            "remedy": self.remedy,
            "duration_ms": round(self.duration_ms, 3),
            "plots": dict(self.plots),
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
            plots=dict(data.get("plots") or {}),
        )


def _check_plot(where: str, plot: Any) -> None:
    """Light validation of one plot: its keys and kind, series whose x and y pair up, lines with a place."""
    if not isinstance(plot, Mapping):
        raise ValueError(f"{where}: a plot is a mapping (got {type(plot).__name__!r})")
    unknown = sorted(set(plot) - _PLOT_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key (got {unknown[0]!r})")
    missing = [key for key in _PLOT_REQUIRED if key not in plot]
    if missing:
        raise ValueError(f"{where}: key {missing[0]!r} is missing (got {sorted(plot)!r})")
    if plot["kind"] not in PLOT_KINDS:
        raise ValueError(f"{where}: kind must be one of {', '.join(sorted(PLOT_KINDS))} (got {plot['kind']!r})")
    for series in _items(where, plot, "series"):
        x, y = series.get("x"), series.get("y")
        if not isinstance(series.get("name"), str) or not isinstance(x, list) or not isinstance(y, list):
            raise ValueError(f"{where}: a series is {{'name': str, 'x': [...], 'y': [...]}} (got {series!r:.80})")
        if len(x) != len(y):
            raise ValueError(f"{where}: series {series['name']!r} needs as many y as x values "
                             f"(got {len(x)} x, {len(y)} y)")
        if len(x) > MAX_PLOT_POINTS:
            raise ValueError(f"{where}: series {series['name']!r} has more than {MAX_PLOT_POINTS} points: "
                             f"decimate() it (got {len(x)})")
    for key, axis in (("hlines", "y"), ("vlines", "x")):
        for line in _items(where, plot, key):
            if not isinstance(line.get(axis), (int, float)) or not isinstance(line.get("label"), str):
                raise ValueError(f"{where}: an entry of {key} is {{{axis!r}: number, 'label': str}} (got {line!r})")
    y_range = plot.get("y_range")
    if y_range is not None and not (
        isinstance(y_range, (list, tuple)) and len(y_range) == 2 and all(isinstance(v, (int, float)) for v in y_range)
        and y_range[0] < y_range[1]
    ):
        raise ValueError(f"{where}: y_range is null or [low, high] with low < high (got {y_range!r})")


def _items(where: str, plot: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = plot.get(key) or []
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise ValueError(f"{where}: {key} is a list of mappings (got {items!r:.80})")
    return items


def _compact(value: float) -> float:
    return float(f"{value:.{_PLOT_DIGITS}g}")


def decimate(
    x: npt.ArrayLike, y: npt.ArrayLike, max_points: int = MAX_PLOT_POINTS
) -> tuple[list[float], list[float]]:
    """At most ``max_points`` points of the curve y(x), as JSON-ready lists of 5-digit floats.

    Longer curves keep the smallest and the largest y of each of ``max_points // 2`` equal runs of
    points, in their order (min/max decimation): a peak, a dropout or a clipped burst stays visible,
    where taking every n-th point would step over it. Points with a non-finite x or y are dropped.
    """
    xs, ys = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same length (got {xs.size} and {ys.size})")
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2 (got {max_points})")
    finite = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[finite], ys[finite]
    if xs.size > max_points:
        edges = np.linspace(0, xs.size, max_points // 2 + 1).astype(np.int64).tolist()
        keep: list[int] = []
        for start, stop in itertools.pairwise(edges):
            run = ys[start:stop]
            low, high = start + int(np.argmin(run)), start + int(np.argmax(run))
            keep.extend(sorted({low, high}))
        xs, ys = xs[keep], ys[keep]
    return [_compact(v) for v in xs.tolist()], [_compact(v) for v in ys.tolist()]


def plot_series(name: str, x: npt.ArrayLike, y: npt.ArrayLike) -> dict[str, Any]:
    """One series of a plot, decimated to :data:`MAX_PLOT_POINTS`."""
    xs, ys = decimate(x, y)
    return {"name": name, "x": xs, "y": ys}


def make_plot(
    kind: str,
    title: str,
    x_label: str,
    y_label: str,
    series: Sequence[Mapping[str, Any]],
    *,
    x_log: bool = False,
    hlines: Sequence[tuple[float, str]] = (),
    vlines: Sequence[tuple[float, str]] = (),
    y_range: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """A plot in the schema of the module docstring; lines are ``(value, label)`` pairs."""
    plot = {
        "kind": kind,
        "title": title,
        "x_label": x_label,
        "y_label": y_label,
        "x_log": x_log,
        "series": [dict(s) for s in series],
        "hlines": [{"y": _compact(y), "label": label} for y, label in hlines],
        "vlines": [{"x": _compact(x), "label": label} for x, label in vlines],
        "y_range": [float(y_range[0]), float(y_range[1])] if y_range is not None else None,
    }
    _check_plot(f"plot {title!r}", plot)
    return plot


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
