"""``phonekit dialplan test``: what dialing a number does under a dial profile, and why.

    phonekit dialplan test --profile de-default 0900 123456
    refused: premium-rate 0900 numbers are barred (rule 'premium-0900')

Exit codes: 0 the number is dialed, 1 it is refused, 2 a bad profile, domain or allow entry
(one line naming the file and field). ``--json`` prints only the decision as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from diagnostics.errors import UsageError
from diagnostics.report import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE
from provision.dialplan import Dial, check_allow, decide, load_dialplan

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``dialplan test`` to phonekit's subcommands; the parsed args carry ``handler=run``."""
    dialplan = subparsers.add_parser("dialplan", help="dial rules and call barring")
    commands = dialplan.add_subparsers(dest="dialplan_command", required=True, metavar="COMMAND")
    test = commands.add_parser("test", help="show what a number dials, or which rule bars it")
    test.add_argument("number", nargs="+", metavar="NUMBER", help="the number as dialed (may be several words)")
    test.add_argument("--profile", required=True, metavar="P",
                      help="dial profile: a built-in name (de-default) or a .toml file")
    test.add_argument("--barring", metavar="P", help="take the barring rules from this profile instead")
    test.add_argument("--domain", default="example.com", help="SIP domain of the account (default example.com)")
    test.add_argument("--allow", action="append", default=[], metavar="N",
                      help="the user's allow entry (number or prefix); repeat for more")
    test.add_argument("--json", action="store_true", help="print only JSON on stdout")
    test.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    test.set_defaults(handler=run)
    return dialplan


def run(args: argparse.Namespace) -> int:
    """Write the decision: ``dial <uri> (rule '…')`` and 0, or ``refused: <reason>`` and 1."""
    number = " ".join(args.number)
    try:
        plan = load_dialplan(args.profile, barring=args.barring)
        check_allow(args.allow, plan)
        decision = decide(number, plan, args.domain, args.allow)
    except (UsageError, ValueError) as exc:
        sys.stderr.write(f"phonekit: error: {exc}\n")
        return EXIT_USAGE
    dialed = isinstance(decision, Dial)
    if args.json:
        json.dump({"profile": plan.name, "number": number, "decision": "dial" if dialed else "refused",
                   **asdict(decision)}, sys.stdout)
        sys.stdout.write("\n")
    elif isinstance(decision, Dial):
        line = f"dial {decision.uri} (rule '{decision.rule}')"
        if decision.bypassed:
            line += f", allowed by the user's entry '{decision.allowed_by}' despite rule '{decision.bypassed}'"
        sys.stdout.write(line + "\n")
    else:
        sys.stdout.write(f"refused: {decision.reason}\n")
    return EXIT_OK if dialed else EXIT_CHECK_FAILED
