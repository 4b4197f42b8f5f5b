"""Human output of a report: a table on the terminal, and progress while a check takes time."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from diagnostics.checks import CheckSpec
from diagnostics.report import Report, Status

__all__ = ["SHOW_PROGRESS_AFTER_S", "progress_on", "render_json", "render_text"]

_STYLE = {
    Status.PASS: "green",
    Status.WARN: "yellow",
    Status.SKIP: "dim",
    Status.ERROR: "magenta",
    Status.FAIL: "bold red",
}

# Quick checks stay quiet; a spinner appears only for checks a person would otherwise wait on.
SHOW_PROGRESS_AFTER_S = 1.0


def render_json(report: Report, stream: IO[str]) -> None:
    json.dump(report.to_dict(), stream, indent=2, sort_keys=False)
    stream.write("\n")


def render_text(report: Report, console: Console) -> None:
    table = Table(title=f"phonekit {report.version} on {report.host.get('hostname', '?')}", show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("what was found", overflow="fold")
    table.add_column("what to do", overflow="fold")
    for check in report.checks:
        style = _STYLE[check.status]
        table.add_row(check.id, f"[{style}]{check.status.value}[/]", check.summary, check.remedy or "")
    console.print(table)
    verdict = report.verdict
    console.print(f"verdict: [{_STYLE[verdict]}]{verdict.value}[/]")


def progress_on(console: Console) -> Any:
    """A progress hook for :func:`diagnostics.checks.run_checks` that shows a spinner after a second."""

    @contextmanager
    def progress(spec: CheckSpec) -> Iterator[None]:
        status = console.status(f"{spec.title} ({spec.id}) …")
        timer = threading.Timer(SHOW_PROGRESS_AFTER_S, status.start)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()
            status.stop()

    return progress
