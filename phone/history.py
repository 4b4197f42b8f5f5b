"""The phone's call history: one JSON object per line, appended when a call ends.

Where: ``$PHONEKIT_HISTORY`` if set, else the per-user state folder
(``$XDG_STATE_HOME/phonekit/history.jsonl`` or ``~/.local/state/…`` on Linux,
``~/Library/Application Support/phonekit/`` on macOS, ``%LOCALAPPDATA%\\phonekit\\`` on Windows).
The folder is created 0700 and the file 0600: numbers called are personal data.
Each entry is written with one ``write()`` on an ``O_APPEND`` descriptor, so a
crash never leaves half a line and two phones never interleave inside a line.
Nothing secret is recorded (no password, no SIP headers).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["HistoryEntry", "append", "default_path", "read"]


@dataclass(frozen=True)
class HistoryEntry:
    started_unix_s: float
    direction: str
    """``outgoing`` or ``incoming``."""
    number: str
    """What was dialed (outgoing) or who called (the caller's URI)."""
    uri: str
    """The SIP URI called or calling."""
    outcome: str
    """``answered``, ``refused`` (barred here, nothing sent), ``failed`` (see ``code``), ``missed``, ``rejected``."""
    code: int = 0
    reason: str = ""
    duration_s: float = 0.0
    """Talk time, from confirmed to hang-up."""
    setup_ms: float | None = None
    mos: float | None = None
    rule: str = ""
    """The dial or barring rule that decided the number."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("PHONEKIT_HISTORY"):
        return Path(env["PHONEKIT_HISTORY"])
    home = Path(env.get("HOME") or Path.home())
    if sys.platform == "win32":
        base = Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(env.get("XDG_STATE_HOME") or home / ".local" / "state")
    return base / "phonekit" / "history.jsonl"


def append(path: Path, entry: HistoryEntry) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    line = (json.dumps(entry.to_dict(), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read(path: Path) -> list[HistoryEntry]:
    """Every entry, oldest first; a line that is not an entry is skipped (a newer phonekit's format)."""
    if not path.exists():
        return []
    entries = []
    fields = set(HistoryEntry.__dataclass_fields__)
    for line in path.read_text().splitlines():
        try:
            data = json.loads(line)
            entries.append(HistoryEntry(**{k: v for k, v in data.items() if k in fields}))
        except (ValueError, TypeError):
            continue
    return entries
