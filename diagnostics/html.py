"""The report as one self-contained HTML file for a helpdesk ticket: read at a glance, opens offline.

:func:`render_html` fills ``templates/report/report.html.j2`` (autoescaped) with

* the header: overall verdict, host, phonekit version, time of the run;
* "what to do": the remedies of what is not fine, worst first;
* the verdict table (check, status, what was found, what to do), each row linking to its check;
* the audio devices and network interfaces tables, from the measurements of ``audio.devices``
  and ``network.interfaces`` (and ``network.route`` for the interface that carries calls);
* per check: its figures as inline SVG (:mod:`diagnostics.svgplot`) and its raw measurements,
  folded away.

It is drawn from the JSON form of the report only (``Report.to_dict()``), so a JSON report saved
earlier gives the same page. The page fetches nothing: CSS is inline, figures are inline SVG,
fonts are the system's, there is no script, and a Content-Security-Policy of ``default-src
'none'`` makes the browser refuse any fetch should something slip in.

Secrets. Checks never put one in a report, but the page is mailed around, so :func:`scrub`
also makes sure: a value under a key naming a secret (``password``, ``secret``, ``token``,
``auth_pass``, in any case, anywhere in the nesting) becomes ``(redacted)``, as does a
:class:`~diagnostics.secret.Secret` object; and each such value (of 4 characters or more) is cut
out of every other text of the report, summaries and remedies included.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from diagnostics.report import Report, Status
from diagnostics.secret import Secret
from diagnostics.svgplot import render_svg

__all__ = ["HTML_MODE", "REDACTED", "TEMPLATE", "render_html", "scrub", "write_html"]

TEMPLATE = "report.html.j2"
"""In the ``report`` folder of the ``templates`` package."""
REDACTED = "(redacted)"
HTML_MODE = 0o600
"""The page names the host and the user: for the ticket, not for everyone on the machine."""
_SECRET_KEY = re.compile(r"password|secret|token|auth_pass", re.IGNORECASE)
# Shorter values are not cut out of free text: "1" or "yes" would mangle every summary.
_MIN_SECRET_CHARS = 4
_WORST_FIRST = sorted(Status, key=lambda s: -s.severity)


# -- secrets -------------------------------------------------------------------------------------


def _secret_texts(value: Any, found: set[str]) -> None:
    if isinstance(value, Secret):
        value = value.reveal()
    if isinstance(value, Mapping):
        for item in value.values():
            _secret_texts(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _secret_texts(item, found)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value)
        if len(text) >= _MIN_SECRET_CHARS:
            found.add(text)


def _redact(value: Any, found: set[str]) -> Any:
    if isinstance(value, Secret):
        _secret_texts(value, found)
        return REDACTED
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(key, str) and _SECRET_KEY.search(key) and item is not None:
                _secret_texts(item, found)
                out[key] = REDACTED
            else:
                out[key] = _redact(item, found)
        return out
    if isinstance(value, (list, tuple)):
        return [_redact(item, found) for item in value]
    return value


def _cut(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {key: _cut(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut(item, secrets) for item in value]
    return value


def scrub(data: Any) -> Any:
    """A copy of JSON-like ``data`` with secrets replaced by ``(redacted)`` (see the module docstring)."""
    found: set[str] = set()
    redacted = _redact(data, found)
    # Longest first: a secret that contains another is cut whole.
    return _cut(redacted, sorted(found, key=len, reverse=True)) if found else redacted


# -- what the template shows ---------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value) if value else "—"
    return str(value)


def _rows(value: Any) -> list[Mapping[str, Any]]:
    """The list of dicts a measurement should hold; anything else (an old or broken report) is no rows."""
    return [row for row in value if isinstance(row, Mapping)] if isinstance(value, list) else []


def _measurements(checks: Sequence[Mapping[str, Any]], check_id: str) -> Mapping[str, Any]:
    found = next((c.get("measurements") for c in checks if c.get("id") == check_id), None)
    return found if isinstance(found, Mapping) else {}


def _table(title: str, css_class: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    return {"title": title, "css_class": css_class, "columns": list(columns),
            "rows": [[_text(cell) for cell in row] for row in rows]}


def _audio_tables(m: Mapping[str, Any]) -> list[dict[str, Any]]:
    classes = {(c.get("name"), c.get("direction")): c.get("class") for c in _rows(m.get("classes"))}
    tables = []
    system = _rows(m.get("system_devices"))
    if system:
        rows = []
        for d in system:
            found = d.get("properties")
            props: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
            direction = f"{d.get('direction')} (monitor)" if d.get("is_monitor") else d.get("direction")
            rows.append([
                d.get("description"), direction, classes.get((d.get("description"), d.get("direction"))),
                d.get("is_default"), d.get("muted"), props.get("device.bus"), props.get("device.form_factor"),
                props.get("bluetooth.protocol") or props.get("device.profile.name"), d.get("name"),
            ])
        columns = ("device", "direction", "class", "default", "muted", "bus", "form factor", "profile", "id")
        tables.append(_table("Sound server devices", "audio-devices", columns, rows))
    elif classes:
        rows = [[name, direction, cls] for (name, direction), cls in classes.items()]
        tables.append(_table("Audio devices", "audio-devices", ("device", "direction", "class"), rows))
    portaudio = _rows(m.get("devices"))
    if portaudio:
        rows = [
            [d.get("index"), d.get("name"), d.get("hostapi"), d.get("max_input_channels"),
             d.get("max_output_channels"), d.get("input_rates_hz"), d.get("output_rates_hz"),
             " ".join(x for x, on in (("input", d.get("is_default_input")), ("output", d.get("is_default_output")))
                      if on)]
            for d in portaudio
        ]
        tables.append(_table("Audio devices as applications open them (PortAudio)", "portaudio-devices",
                             ("#", "name", "host API", "in", "out", "rates in (Hz)", "rates out (Hz)", "default"),
                             rows))
    return tables


def _network_tables(interfaces: Mapping[str, Any], route: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = _rows(interfaces.get("interfaces"))
    if not rows:
        return []
    carrier = route.get("interface")
    table = [
        [i.get("name"), i.get("class"), i.get("is_up"), i.get("mtu"),
         i.get("speed_mbps") or None, i.get("ipv4"), i.get("ipv6"), i.get("name") == carrier]
        for i in rows
    ]
    return [_table("Network interfaces", "interfaces",
                   ("interface", "class", "up", "MTU", "speed (Mbit/s)", "IPv4", "IPv6", "default route"), table)]


def _when(started_at: str) -> str:
    try:
        return datetime.fromisoformat(started_at.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return started_at


def _figures(plots: Any) -> list[Markup]:
    if not isinstance(plots, Mapping):
        return []
    # render_svg escapes every text it writes: its output is safe markup.
    return [Markup(render_svg(plot)) for plot in plots.values() if isinstance(plot, Mapping)]


def _context(data: Mapping[str, Any]) -> dict[str, Any]:
    checks = [c for c in data.get("checks") or [] if isinstance(c, Mapping)]
    views = []
    for c in checks:
        views.append({
            "id": c.get("id", "?"),
            "anchor": "check-" + re.sub(r"[^a-z0-9]+", "-", str(c.get("id", "")).lower()),
            "status": c.get("status", "error"),
            "summary": c.get("summary", ""),
            "remedy": c.get("remedy"),
            "duration_ms": c.get("duration_ms"),
            "figures": _figures(c.get("plots")),
            "raw": json.dumps(c.get("measurements") or {}, indent=2, ensure_ascii=False, default=str),
        })
    severity = {s.value: s.severity for s in Status}
    todo = sorted((v for v in views if v["remedy"] and v["status"] != Status.SKIP.value),
                  key=lambda v: -severity.get(v["status"], 0))
    counts = [(s.value, sum(1 for v in views if v["status"] == s.value)) for s in _WORST_FIRST]
    host = data.get("host") if isinstance(data.get("host"), Mapping) else {}
    return {
        "verdict": data.get("verdict", "error"),
        "version": data.get("phonekit_version", "?"),
        "host": host,
        "when": _when(str(data.get("started_at", ""))),
        "counts": [(status, n) for status, n in counts if n],
        "todo": todo,
        "checks": views,
        "tables": [
            *_audio_tables(_measurements(checks, "audio.devices")),
            *_network_tables(_measurements(checks, "network.interfaces"), _measurements(checks, "network.route")),
        ],
    }


def _load(name: str) -> str | None:
    resource = importlib.resources.files("templates").joinpath("report", name)
    return resource.read_text(encoding="utf-8") if resource.is_file() else None


@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=jinja2.FunctionLoader(_load),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: Report) -> str:
    """The whole page, secrets scrubbed; pure (no I/O but reading the packaged template)."""
    data = scrub(report.to_dict())
    return _environment().get_template(TEMPLATE).render(_context(data))


def write_html(report: Report, path: Path | str) -> None:
    """Write the page to ``path`` whole or not at all, mode 0600: a temporary file in the same folder
    created through ``os.open`` with that mode, fsync, ``os.replace``, fsync of the folder. Raises ``OSError``."""
    target = Path(path)
    data = memoryview(render_html(report).encode("utf-8"))
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, HTML_MODE)
    try:
        try:
            os.fchmod(fd, HTML_MODE)  # exactly 0600, whatever the umask
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    finally:
        os.close(folder)
