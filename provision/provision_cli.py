"""``phonekit provision``: check an inventory; render and write every machine's softphone files.

::

    phonekit provision validate --inventory FILE [--site FILE] [--json] [-v]
    phonekit provision render --inventory FILE --out DIR [--site FILE] [--secrets FILE] [--generate-missing]
        [--only HOST ...] [--client NAME ...] [--templates DIR] [--dry-run] [--force] [--prune] [--json] [-v]

``render`` goes through the inventory once, one machine at a time, keeping none in memory:

1. each machine is validated, gets its password, is rendered, and each file is compared with the disk;
   a file that differs is staged (a temporary file next to it, see :mod:`provision.output`);
2. any error (a bad row or duplicate, a missing password, a broken template, a file phonekit did not
   make in the way; up to :data:`~provision.inventory.MAX_ERRORS` shown, all counted) removes what was
   staged and ends the run with exit code 2: nothing written;
3. otherwise generated passwords are saved to the secrets file, stale files pruned (``--prune``), the
   staged files renamed into place, and the manifest saved last.

``--dry-run`` does 1 without staging and shows a diff per file, with no secret in it. A crash leaves
every file old or new, never half-written, and the previous manifest; the next run finds the new
files identical and adopts them. Exit codes: 0 done, 2 input error, 3 the output could not be written.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TextIO, cast

from diagnostics.errors import MeasurementError, UsageError
from diagnostics.report import EXIT_ENVIRONMENT, EXIT_OK, EXIT_USAGE
from provision.inventory import MAX_ERRORS, InventoryError, open_inventory, validate
from provision.model import Client, Machine
from provision.output import FileResult, FileStatus, OutputTree, RenderedFileLike, redacted_diff
from provision.secrets import Passwords

__all__ = ["Renderer", "cmd_render", "cmd_validate", "load_renderer", "main", "register", "run"]

log = logging.getLogger(__name__)


class Renderer(Protocol):
    """``provision.render.render_machine``."""

    def __call__(
        self,
        machine: Machine,
        clients: Sequence[Client] | None = None,
        site_templates: Path | None = None,
        redact: bool = False,
    ) -> Sequence[RenderedFileLike]: ...


def load_renderer() -> Renderer:
    """The template renderer, imported when a run needs it."""
    try:
        module = importlib.import_module("provision.render")
    except ModuleNotFoundError as exc:
        if exc.name != "provision.render":
            raise
        raise UsageError("phonekit provision render: the renderer (provision/render.py) is not installed") from exc
    return cast(Renderer, module.render_machine)


# -- arguments -------------------------------------------------------------------------------------


def _leaf(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inventory", type=Path, required=True, metavar="FILE", help="machines: .csv or .toml")
    parser.add_argument("--site", type=Path, metavar="FILE", help="TOML with [site] defaults and [groups.<name>]")
    parser.add_argument("--json", action="store_true", help="print only JSON on stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per file; debug logging on stderr")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``provision validate`` and ``provision render`` to phonekit's command line."""
    provision = subparsers.add_parser("provision", help="softphone configs from an inventory")
    actions = provision.add_subparsers(dest="provision_command", required=True, metavar="ACTION")

    check = actions.add_parser("validate", help="check an inventory: exit 0 when valid, 2 with the errors")
    _leaf(check)
    check.set_defaults(handler=cmd_validate)

    render = actions.add_parser("render", help="write each machine's files to OUT/<hostname>/")
    _leaf(render)
    render.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    render.add_argument("--secrets", type=Path, metavar="FILE", help="hostname=password lines, mode 0600")
    render.add_argument("--generate-missing", action="store_true",
                        help="make passwords for machines that have none and add them to --secrets")
    render.add_argument("--only", nargs="+", action="extend", metavar="HOST",
                        help="only these machines (the whole inventory is still validated)")
    render.add_argument("--client", nargs="+", action="extend", choices=[c.value for c in Client],
                        help="only these clients' files")
    render.add_argument("--templates", type=Path, metavar="DIR", help="site templates that override the built-in ones")
    render.add_argument("--dry-run", action="store_true", help="write nothing; show what would change (redacted)")
    render.add_argument("--force", action="store_true", help="replace existing files phonekit did not write")
    render.add_argument("--prune", action="store_true",
                        help="delete stale files phonekit wrote (unless edited since)")
    render.set_defaults(handler=cmd_render)


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``provision`` command; returns the exit code."""
    return int(args.handler(args))


# -- output ----------------------------------------------------------------------------------------


class _Errors:
    """The first ``limit`` errors, and how many there were."""

    def __init__(self, limit: int = MAX_ERRORS) -> None:
        self.limit = limit
        self.shown: list[str] = []
        self.count = 0

    def add(self, *lines: str) -> None:
        for line in lines:
            self.count += 1
            if len(self.shown) < self.limit:
                self.shown.append(line)


def _print_errors(errors: _Errors, out: TextIO) -> None:
    for line in errors.shown:
        out.write(f"phonekit: error: {line}\n")
    if errors.count > len(errors.shown):
        out.write(f"phonekit: error: ... and {errors.count - len(errors.shown)} more ({errors.count} errors)\n")


class _Report:
    """What ``render`` tells: per-file lines (-v), diffs (dry run) and a summary; or one JSON document,
    streamed to stdout so that 60,000 files need no list in memory."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.json: bool = args.json
        self.verbose: bool = args.verbose
        self.dry_run: bool = args.dry_run
        self.out = out
        self.counts: Counter[FileStatus] = Counter()
        self._files = 0
        if self.json:
            head = {"inventory": str(args.inventory), "out": str(args.out), "dry_run": self.dry_run}
            out.write(json.dumps(head)[:-1] + ', "files": [')

    def file(self, result: FileResult, diff: str | None = None) -> None:
        self.counts[result.status] += 1
        if self.json:
            item: dict[str, object] = {"path": result.path, "status": result.status.value, "secret": result.secret}
            if result.note:
                item["note"] = result.note
            if diff is not None:
                item["diff"] = diff
            self.out.write(("\n" if self._files == 0 else ",\n") + json.dumps(item))
            self._files += 1
            return
        if diff:
            self.out.write(diff if diff.endswith("\n") else diff + "\n")
        if self.verbose or (diff is not None and not diff) or (self.dry_run and result.note):
            note = f"  ({result.note})" if result.note else ""
            self.out.write(f"{result.status.value:<9} {result.path}{note}\n")

    def finish(self, errors: _Errors, generated: int, secrets_file: Path | None, written: bool) -> None:
        c = self.counts
        if self.json:
            tail = {
                "summary": {s.value: c[s] for s in FileStatus},
                "generated_passwords": generated,
                "written": written,
                "errors": errors.shown,
                "error_count": errors.count,
            }
            self.out.write("\n], " + json.dumps(tail)[1:] + "\n")
            return
        if errors.count:
            return
        self.out.write(f"created {c[FileStatus.CREATED]}, changed {c[FileStatus.CHANGED]}, "
                       f"unchanged {c[FileStatus.UNCHANGED]}\n")
        if c[FileStatus.STALE]:
            listed = "" if self.verbose else "; -v lists them"
            self.out.write(f"stale {c[FileStatus.STALE]}: no longer generated, kept (--prune deletes them{listed})\n")
        if c[FileStatus.PRUNED]:
            self.out.write(f"pruned {c[FileStatus.PRUNED]}\n")
        if generated:
            verb = "would add" if self.dry_run else "added"
            self.out.write(f"generated {generated} passwords: {verb} to {secrets_file}\n")
        if self.dry_run:
            self.out.write("dry run: nothing written\n")


# -- commands --------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    """``phonekit provision validate``: exit 0 when every machine is valid, else 2 with the errors."""
    errors = _Errors()
    machines = 0
    try:
        result = validate(open_inventory(args.inventory, args.site))
    except InventoryError as exc:
        errors.add(*exc.errors)
        errors.count = exc.count
    except UsageError as exc:
        errors.add(str(exc))
    else:
        errors.add(*result.errors)
        errors.count = result.error_count
        machines = result.machines
    if args.json:
        document = {"inventory": str(args.inventory), "valid": errors.count == 0, "machines": machines,
                    "errors": errors.shown, "error_count": errors.count}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    elif errors.count:
        _print_errors(errors, sys.stderr)
    else:
        sys.stdout.write(f"{args.inventory}: {machines} machines, valid\n")
    return EXIT_USAGE if errors.count else EXIT_OK


def _clients(machine: Machine, selected: frozenset[Client] | None) -> list[Client]:
    return [c for c in machine.clients if selected is None or c in selected]


def cmd_render(args: argparse.Namespace) -> int:
    """``phonekit provision render``: render and stage every machine, then (unless --dry-run) commit."""
    report = _Report(args, sys.stdout)
    errors = _Errors()
    generated = 0
    written = False
    try:
        generated, written = _render(args, report, errors)
    except InventoryError as exc:
        errors.add(*exc.errors)
        errors.count += exc.count - len(exc.errors)
    except UsageError as exc:
        errors.add(str(exc))
    except MeasurementError as exc:
        errors.add(f"{exc} ({exc.remedy})")
        report.finish(errors, generated, args.secrets, written)
        if not args.json:
            _print_errors(errors, sys.stderr)
        return EXIT_ENVIRONMENT
    report.finish(errors, generated, args.secrets, written)
    if errors.count:
        if not args.json:
            _print_errors(errors, sys.stderr)
            sys.stderr.write("phonekit: nothing written\n")
        return EXIT_USAGE
    return EXIT_OK


def _render(args: argparse.Namespace, report: _Report, errors: _Errors) -> tuple[int, bool]:
    """Plan and stage every machine, then commit; returns (passwords generated, whether anything was written)."""
    started = time.perf_counter()
    inventory = open_inventory(args.inventory, args.site)
    if args.templates is not None and not args.templates.is_dir():
        raise UsageError(f"--templates: no such folder {str(args.templates)!r}")
    renderer = load_renderer()
    passwords = Passwords(args.secrets, generate=args.generate_missing)
    tree = OutputTree(args.out, force=args.force, dry_run=args.dry_run)
    only = {host.lower() for host in args.only} if args.only else None
    selected = frozenset(Client(c) for c in args.client) if args.client else None
    try:
        scan = inventory.scan()
        for entry in scan:
            if entry.machine is None:
                errors.add(*entry.errors)
                tree.abort()
                continue
            if only is not None and entry.machine.hostname.lower() not in only:
                continue
            try:
                machine = dataclasses.replace(entry.machine, password=passwords.for_machine(entry.machine.hostname))
                planned = [(c, tree.add(machine.hostname, c, renderer(machine, [c], args.templates)))
                           for c in _clients(machine, selected)]
            except UsageError as exc:
                errors.add(f"{entry.where}: {exc}")
                tree.abort()
                continue
            if errors.count:
                continue  # keep looking for errors, but report no more files
            if args.dry_run:
                _report_dry(report, machine, planned, renderer, tree, args.templates)
            else:
                for _, results in planned:
                    for result in results:
                        report.file(result)
        if only is not None:
            for host in sorted(only - set(scan.hostnames)):
                errors.add(f"--only: no machine {host!r} in {inventory.path}")
        if scan.machine_count == 0 and scan.error_count == 0:
            errors.add(f"{inventory.path}: lists no machines")
        if errors.count:
            tree.abort()
            return len(passwords.generated), False
        log.debug("rendered and staged %d machines in %.2f s", scan.machine_count, time.perf_counter() - started)

        def processed(host: str) -> bool:
            return host.lower() in only if only is not None else True

        stale = tree.stale(processed, selected)
        for result in tree.prune(stale, dry_run=True) if args.prune else stale:
            report.file(result)
        if args.dry_run:
            return len(passwords.generated), False
        generated = passwords.save_generated()
        if args.prune:
            tree.prune(stale)
        tree.commit()
    except BaseException:
        tree.abort()
        raise
    log.debug("provisioned %d machines in %.2f s", scan.machine_count, time.perf_counter() - started)
    return generated, True


def _report_dry(
    report: _Report,
    machine: Machine,
    planned: list[tuple[Client, list[FileResult]]],
    renderer: Renderer,
    tree: OutputTree,
    templates: Path | None,
) -> None:
    """A dry run's results for one machine: each created or changed file with a diff that holds no secret."""
    password = machine.password.reveal()
    for client, results in planned:
        redacted: dict[str, str] = {}
        if any(r.status in {FileStatus.CREATED, FileStatus.CHANGED} for r in results):
            redacted = {
                tree.relative(machine.hostname, f.path): f.content
                for f in renderer(machine, [client], templates, True)
            }
        for result in results:
            if result.status is FileStatus.UNCHANGED:
                report.file(result)
                continue
            disk = tree.read(result.path)
            report.file(result, redacted_diff(result.path, disk, redacted[result.path], result.secret, password))


# -- standalone ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``phonekit provision …`` on its own (phonekit's main calls :func:`register` and :func:`run`)."""
    parser = argparse.ArgumentParser(prog="phonekit")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
