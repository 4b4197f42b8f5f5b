"""``phonekit diagnose one-way``: which leg of a call is broken, and why (see :mod:`diagnostics.oneway`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from diagnostics.errors import MeasurementError, UsageError
from diagnostics.report import EXIT_ENVIRONMENT, EXIT_USAGE, CheckResult, Report, exit_code

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("diagnose", help="helpdesk diagnoses: 'one-way' finds the broken audio leg")
    kinds = parser.add_subparsers(dest="diagnosis", required=True, metavar="DIAGNOSIS")
    oneway = kinds.add_parser("one-way", help="a test call that names the failing direction and its cause")
    oneway.add_argument("--profile", type=Path, metavar="FILE", required=True, help="account profile (TOML)")
    oneway.add_argument("--number", metavar="N", help="call this instead of the profile's echo extension")
    oneway.add_argument("--input", metavar="DEV", help="capture device by index or name substring")
    oneway.add_argument("--output", metavar="DEV", help="playback device by index or name substring")
    oneway.add_argument("--seconds", type=float, default=3.0, metavar="S", help="length of the test call (3)")
    oneway.add_argument("--html", type=Path, metavar="FILE", help="also write the report as one HTML file (0600)")
    oneway.add_argument("--json", action="store_true", help="print only JSON on stdout")
    oneway.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    parser.set_defaults(handler=main)


def one_way(args: argparse.Namespace) -> Report:
    from diagnostics.oneway import assess
    from diagnostics.oneway_probe import gather

    if not 1.0 <= args.seconds <= 30.0:
        raise UsageError(f"--seconds must be between 1 and 30 (got {args.seconds:g})")
    started = time.perf_counter()
    evidence = gather(args.profile, args.number, args.input, args.output, args.seconds)
    checks = list(assess(evidence))
    verdict = checks[-1]
    checks[-1] = CheckResult(verdict.id, verdict.status, verdict.summary, verdict.measurements, verdict.remedy,
                             (time.perf_counter() - started) * 1000.0, plots=verdict.plots)  # fmt: skip
    return Report(checks=tuple(checks))


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from diagnostics.render import render_json, render_text

    try:
        if args.html is not None:
            from provision.report_cli import check_destination

            check_destination(args.html)
        report = one_way(args)
    except UsageError as exc:
        print(f"phonekit diagnose: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MeasurementError as exc:
        print(f"phonekit diagnose: could not measure: {exc} ({exc.remedy})", file=sys.stderr)
        return EXIT_ENVIRONMENT
    if args.json:
        render_json(report, sys.stdout)
    else:
        render_text(report, Console())
    if args.html is not None:
        from provision.report_cli import save_html

        if not save_html(report, args.html):
            return EXIT_USAGE
    return exit_code(c.status for c in report.checks)
