"""``phonekit report --html OUT.html [REPORT.json]``: a JSON report as one HTML file for a helpdesk ticket.

    phonekit check --json > report.json
    phonekit report --html report.html report.json
    phonekit check --json | phonekit report --html report.html     # REPORT.json omitted or '-': stdin
    phonekit check --html report.html                              # the same while checking

The page is :func:`diagnostics.html.render_html`'s; :func:`~diagnostics.html.write_html` (also
exported here) writes it atomically (a temporary file in the same folder created through
``os.open``, fsync, ``os.replace``) with mode 0600: it names the host and the user.

Exit codes: 0 written; 2 the report cannot be read or is not a phonekit report, or OUT.html
cannot be written (one line naming the file). Nothing on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diagnostics.errors import UsageError
from diagnostics.html import write_html
from diagnostics.report import EXIT_OK, EXIT_USAGE, Report

__all__ = ["check_destination", "read_report", "register", "run", "save_html", "write_html"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``report`` to phonekit's subcommands; the parsed args carry ``handler=run``."""
    report = subparsers.add_parser("report", help="turn a JSON report into one HTML file for a helpdesk ticket")
    report.add_argument("--html", required=True, type=Path, metavar="OUT.html",
                        help="write the report here as one self-contained HTML file (mode 0600)")
    report.add_argument("report", nargs="?", default="-", metavar="REPORT.json",
                        help="a report of 'phonekit check --json' (omitted or '-': read it from stdin)")
    report.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    report.set_defaults(handler=run)
    return report


def check_destination(path: Path) -> None:
    """Refuse, before minutes of checks, an HTML path that cannot be written: its folder must exist."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise UsageError(f"{path}: cannot write the HTML report there: folder {str(folder)!r} does not exist")
    if Path(path).is_dir():
        raise UsageError(f"{path}: cannot write the HTML report there: it is a folder")


def save_html(report: Report, path: Path) -> bool:
    """:func:`write_html`, saying on stderr in one line why it could not (then False)."""
    try:
        write_html(report, path)
    except OSError as exc:
        sys.stderr.write(f"phonekit: error: {path}: cannot write the HTML report: {exc.strerror or exc}\n")
        return False
    return True


def read_report(source: str) -> Report:
    """The report in file ``source`` (``-``: stdin); :class:`UsageError` naming the file if it is not one."""
    name = "stdin" if source == "-" else source
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{name}: cannot read the report: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{name}: not a JSON report: not UTF-8 text (byte {exc.start})") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name}: not a JSON report: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{name}: not a phonekit report: expected a JSON object (got {type(data).__name__})")
    try:
        return Report.from_dict(data)
    except KeyError as exc:
        raise UsageError(f"{name}: not a phonekit report: field {exc.args[0]!r} is missing") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise UsageError(f"{name}: not a phonekit report: {exc}") from exc


def run(args: argparse.Namespace) -> int:
    try:
        report = read_report(args.report)
    except UsageError as exc:
        sys.stderr.write(f"phonekit: error: {exc}\n")
        return EXIT_USAGE
    return EXIT_OK if save_html(report, args.html) else EXIT_USAGE
