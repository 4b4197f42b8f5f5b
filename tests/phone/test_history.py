"""The call history file: whole lines, private modes, per-OS default place."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from phone import history


def test_entries_round_trip_in_a_private_file_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "state" / "phonekit" / "history.jsonl"
    first = history.HistoryEntry(1.0, "outgoing", "030 123", "sip:0049030123@pbx", "answered", 200, "OK", 12.5, 80.0,
                                 4.3, "national")  # fmt: skip
    second = history.HistoryEntry(2.0, "outgoing", "0900 1", "", "refused", reason="barred", rule="premium")
    history.append(path, first)
    with path.open("a") as fh:
        fh.write("not json\n")
    history.append(path, second)
    assert history.read(path) == [first, second]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert history.read(tmp_path / "none.jsonl") == []


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"HOME": "/h"}, "/h/.local/state/phonekit/history.jsonl"),
        ("linux", {"HOME": "/h", "XDG_STATE_HOME": "/x"}, "/x/phonekit/history.jsonl"),
        ("darwin", {"HOME": "/h"}, "/h/Library/Application Support/phonekit/history.jsonl"),
        ("win32", {"HOME": "/h", "LOCALAPPDATA": "/l"}, "/l/phonekit/history.jsonl"),
        ("linux", {"HOME": "/h", "PHONEKIT_HISTORY": "/p/h.jsonl"}, "/p/h.jsonl"),
    ],
)
def test_default_place_per_os(monkeypatch: pytest.MonkeyPatch, platform: str, env: dict[str, str],
                              expected: str) -> None:  # fmt: skip
    monkeypatch.setattr(history.sys, "platform", platform)
    assert history.default_path(env) == Path(expected)
