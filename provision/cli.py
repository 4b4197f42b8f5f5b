"""The ``phonekit`` command line: ``main(argv) -> int``.

Exit codes: 0 all checks passed (warnings allowed), 1 a check failed, 2 usage
or input error, 3 environment error (could not measure). ``--json`` prints only
JSON on stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from diagnostics.checks import GROUPS, CheckContext, all_checks, run_checks
from diagnostics.errors import MeasurementError, UsageError
from diagnostics.render import progress_on, render_json, render_text
from diagnostics.report import EXIT_ENVIRONMENT, EXIT_OK, EXIT_USAGE, exit_code, phonekit_version
from phone import cli as phone_cli
from phone import echo
from provision import diagnose_cli, dialplan_cli, launch, provision_cli, report_cli

__all__ = ["main"]

log = logging.getLogger("phonekit")

# Commands whose issue has not landed yet: they say so and exit 2 rather than pretend.
_PENDING: dict[str, str] = {}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print only JSON on stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phonekit", description="Get a softphone working on this workstation.")
    parser.add_argument("--version", action="version", version=f"phonekit {phonekit_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    devices = sub.add_parser("devices", help="list audio devices")
    _common(devices)

    check = sub.add_parser("check", help="run checks and print a verdict per check")
    check.add_argument("group", nargs="?", default="all", choices=(*GROUPS, "all"))
    check.add_argument("--input", metavar="DEV", help="capture device by index or name substring")
    check.add_argument("--output", metavar="DEV", help="playback device by index or name substring")
    check.add_argument("--profile", type=Path, metavar="FILE", help="account profile (TOML) for SIP checks")
    check.add_argument("--non-interactive", action="store_true", help="never ask the person anything")
    check.add_argument("--save-wav", type=Path, metavar="DIR", help="keep raw recordings here")
    check.add_argument("--html", type=Path, metavar="FILE", help="also write the report as one HTML file (0600)")
    _common(check)

    dialplan_cli.register(sub)
    provision_cli.register(sub)
    phone_cli.register(sub)
    echo.register(sub)
    launch.register(sub)
    diagnose_cli.register(sub)
    report_cli.register(sub)

    for name, what in _PENDING.items():
        pending = sub.add_parser(name, help=f"{what}: not implemented yet")
        pending.add_argument("rest", nargs=argparse.REMAINDER)
        _common(pending)
    return parser


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _cmd_devices(args: argparse.Namespace) -> int:
    from diagnostics.audio.classify import classify
    from diagnostics.audio.probe import list_devices
    from diagnostics.audio.system import system_devices

    devices, system = list_devices(), system_devices()
    classes = [classify(d.name) for d in devices]
    system_classes = [classify(s.name, s.description, s.properties) for s in system]
    if args.json:
        json.dump(
            {
                "devices": [{**d.to_dict(), "class": c.value} for d, c in zip(devices, classes, strict=True)],
                "system_devices": [
                    {**s.to_dict(), "class": c.value} for s, c in zip(system, system_classes, strict=True)
                ],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return EXIT_OK
    console = Console()
    table = Table(title="Audio devices (as applications open them)")
    for column in ("#", "name", "class", "host API", "in", "out", "rates in (Hz)", "rates out (Hz)", "default"):
        table.add_column(column)
    for d, device_class in zip(devices, classes, strict=True):
        default = " ".join(x for x, on in (("input", d.is_default_input), ("output", d.is_default_output)) if on)
        table.add_row(
            str(d.index),
            d.name,
            device_class.value,
            d.hostapi,
            str(d.max_input_channels),
            str(d.max_output_channels),
            ",".join(map(str, d.input_rates_hz)),
            ",".join(map(str, d.output_rates_hz)),
            default,
        )
    console.print(table)
    if system:
        table = Table(title="Sound server devices (what is behind them)")
        for column in ("direction", "name", "description", "class", "default"):
            table.add_column(column)
        for s, device_class in zip(system, system_classes, strict=True):
            table.add_row(s.direction, s.name, s.description, device_class.value, "yes" if s.is_default else "")
        console.print(table)
    return EXIT_OK


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _ask(question: str) -> bool:
    print(f"{question} [y/n] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in {"y", "yes", "j", "ja"}


def _cmd_check(args: argparse.Namespace) -> int:
    groups = GROUPS if args.group == "all" else (args.group,)
    specs = tuple(spec for spec in all_checks() if spec.group in groups)
    missing = [g for g in groups if not any(spec.group == g for spec in specs)]
    if args.group != "all" and missing:
        print(f"phonekit check {args.group}: not implemented yet (issue #4 adds the SIP checks)", file=sys.stderr)
        return EXIT_USAGE
    for group in missing:
        log.info("no %s checks yet: they arrive with a later issue", group)
    if args.html is not None:
        report_cli.check_destination(args.html)
    ctx = CheckContext(
        input_device=args.input,
        output_device=args.output,
        profile=args.profile,
        interactive=not args.non_interactive and sys.stdin.isatty(),
        save_wav=args.save_wav,
        say=_say,
        ask=_ask,
    )
    if args.json:
        report = run_checks(specs, ctx)
        render_json(report, sys.stdout)
    else:
        console = Console()
        report = run_checks(specs, ctx, progress=progress_on(Console(stderr=True)))
        render_text(report, console)
    if args.html is not None and not report_cli.save_html(report, args.html):
        return EXIT_USAGE
    return exit_code(c.status for c in report.checks)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version exit 0, usage errors exit 2
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    _setup_logging(args.verbose)
    if args.command in _PENDING:
        print(f"phonekit {args.command}: not implemented yet: {_PENDING[args.command]}", file=sys.stderr)
        return EXIT_USAGE
    if args.command in ("dialplan", "provision", "phone", "echo-server", "launch", "diagnose", "report"):
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    try:
        if args.command == "devices":
            return _cmd_devices(args)
        return _cmd_check(args)
    except UsageError as exc:
        print(f"phonekit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MeasurementError as exc:
        print(f"phonekit: could not measure: {exc} ({exc.remedy})", file=sys.stderr)
        return EXIT_ENVIRONMENT


if __name__ == "__main__":
    sys.exit(main())
