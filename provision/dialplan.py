"""Dial rules (Wählregeln) and call barring (Anwahlsperren) as data.

IT decides what a workstation may dial and in which form the PBX receives it; phonekit's phone
enforces that decision before it dials (:func:`decide`), and provisioning renders the same plan
into client configs (:func:`microsip_dial_plan`, :func:`linphone_dial`,
:func:`phonekit_dialplan_toml`). Everything here is pure: no I/O but :func:`load_dialplan`.

A dial profile is one TOML file with two sections. ``[dial]`` says how numbers are read and
rewritten, ``[barring]`` what is refused. Provisioning may take the two from different files
(:attr:`provision.model.Machine.dial_profile` and ``barring_profile``: ``load_dialplan(dial,
barring=other)``). Every key is optional; the defaults are Germany's::

    name = "de-default"                  # defaults to the file name without .toml
    description = "Germany, direct dialing"

    [dial]
    outside_line = ""                    # digits for an outside line (Amtsholung), "" = direct dialing
    keep_outside_line = false            # true: the PBX wants it in front of every external number,
                                         #   emergency numbers and short codes too
    national_prefix = "0"                # Verkehrsausscheidungsziffer national
    international_prefix = "00"
    country_code = "49"
    area_code = ""                       # e.g. "30": a number without prefix is then a local number in 030
    internal_digits = [2, 5]             # extensions: 2 to 5 digits -> sip:<ext>@<domain>; [] = none
    external_format = "international"    # how external numbers go to the PBX:
                                         #   "international" 004930123456, "national" 030123456
                                         #   (abroad 0043…), "e164" +4930123456
    emergency = ["110", "112"]           # dialed as is, never barred; 112 is always one
    short_codes = ["115", "116xxx", "118xx", "118xxx"]   # dialed without prefix and sent as is; x = a digit

    [[barring.rule]]                     # first matching rule refuses; each needs a unique name
    name = "premium-0900"
    description = "premium-rate 0900 numbers"        # the refusal says "<description> are barred (rule '<name>')"
    prefixes = ["0900"]
    except = []                          # prefixes inside the rule's prefixes that it does not bar

How a number is read: formatting goes first (white space, ``- . / ( )``, and a ``(0)`` after
``+<country code>``), then the first route in this table that claims the number decides
(:func:`_routes` builds it from the plan; the MicroSIP renderer compiles the same table). The
"sent" column is for ``external_format = "international"`` and no outside line kept:

=============  =====================================================  ==========================
rule           dialed (external numbers after the outside line)       sent
=============  =====================================================  ==========================
emergency      ``110``, ``112``, also after the outside line           ``110``
short-code     a short code, e.g. ``116116``                           ``116116``
national       ``+49 30 123456``, ``0049 30 123456``                   ``004930123456``
international  ``+43 1 234567``, ``0043 1 234567``                     ``00431234567``
national       ``030 123456`` (not ``00…``)                            ``004930123456``
internal       2 to 5 digits, not starting with 0 (or the outside      ``1234``
               line): ``sip:1234@<domain>``
local          longer (direct dialing) or after the outside line:      ``0049`` + area code +
               needs ``area_code``, else refused as ``no-area-code``    number
=============  =====================================================  ==========================

Anything else is refused with rule ``invalid``: letters, nothing, ``+0…``, ``+49 0…`` (the 0 is
left out after a country code), national numbers with fewer than 4 or more digits than E.164
allows (ITU-T E.164 §6.2.1: at most 15 digits after the ``+``).

Barring sees every barrable number (all but emergency numbers and extensions) in the form it
is dialed inside the country without an outside line: numbers at home as ``0…`` (so ``0900``
bars ``+49 900 …`` and ``0049 900 …`` too), numbers abroad as ``00…`` (``00`` bars every foreign
number, ``0043`` those in Austria), short codes as they are. Prefixes are written that way; a
prefix that could bar an emergency number is refused when the profile is loaded, and
:func:`decide` reads emergency numbers before anything else, so no plan can bar them. Per-user
allow entries (``Machine.allow_numbers``: numbers or prefixes, ``+`` allowed) bypass every rule.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import json
import logging
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import lru_cache
from itertools import groupby
from pathlib import Path
from typing import Any

from diagnostics.errors import UsageError

__all__ = [
    "ALWAYS_EMERGENCY",
    "INVALID",
    "MICROSIP_DIALPLAN_MAX",
    "NO_AREA_CODE",
    "BarRule",
    "Decision",
    "Dial",
    "DialPlan",
    "ExternalFormat",
    "Refused",
    "builtin_dialplans",
    "check_allow",
    "decide",
    "embedded_dialplan",
    "linphone_dial",
    "load_dialplan",
    "microsip_dial_plan",
    "parse_dialplan",
    "phonekit_dialplan_toml",
]

log = logging.getLogger(__name__)

ALWAYS_EMERGENCY = ("112",)
"""Emergency numbers of every plan: 112 is the EU-wide one (EECC Art. 109) and works on every GSM phone."""
INVALID = "invalid"
"""Rule of a refusal because the input is no number this plan can dial."""
NO_AREA_CODE = "no-area-code"
"""Rule of a refusal of a number without prefix when the plan has no ``area_code``."""
MICROSIP_DIALPLAN_MAX = 255
"""MicroSIP reads ``dialPlan`` into a 256-character buffer (settings.cpp, ``GetPrivateProfileString``)."""

E164_MAX_DIGITS = 15  # ITU-T E.164 (11/2010) §6.2.1: country code + national significant number
NSN_MIN_DIGITS = 4  # shorter "national numbers" are typos (the shortest real ones, e.g. Niue's, have 4)
FOREIGN_MIN_DIGITS = 5  # country code + national significant number
MAX_INPUT_DIGITS = 32
DIGITS = frozenset("0123456789")

_RESERVED_RULES = frozenset({"emergency", "short-code", "national", "international", "internal", "local",
                             INVALID, NO_AREA_CODE})
_RULE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,47}")
_PLAN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHORT_CODE = re.compile(r"[0-9]+x*")
_DIALABLE = re.compile(r"\+?[0-9]+")
# Visual separators (RFC 3966 §5.1.1: - . ( )) plus '/' (DIN 5008's old 030/123456) and typographic dashes.
_SEPARATORS = frozenset("-./()\u2010\u2011\u2012\u2013\u2014\u2212")
# "+49 (0)30 …": the bracketed 0 is the national prefix, which is not dialed after a country code.
_BRACKETED_TRUNK_ZERO = re.compile(r"\(\s*0\s*\)")


class ExternalFormat(StrEnum):
    """How :func:`decide` sends external numbers to the PBX."""

    INTERNATIONAL = "international"
    """``004930123456``: international prefix, country code, national significant number."""
    NATIONAL = "national"
    """``030123456`` at home, ``00431234567`` abroad."""
    E164 = "e164"
    """``+4930123456`` (RFC 3966 global number; '+' stands unescaped in a SIP user part)."""


@dataclass(frozen=True)
class BarRule:
    """One row of the barring table: numbers whose barring form starts with a prefix are refused."""

    name: str
    """Unique; the refusal names it."""
    description: str
    """Plural noun phrase: the refusal says "<description> are barred (rule '<name>')"."""
    prefixes: tuple[str, ...]
    exceptions: tuple[str, ...] = ()
    """Prefixes inside ``prefixes`` that this rule does not bar (TOML key ``except``)."""

    def __post_init__(self) -> None:
        # Lists given by code become tuples: a plan is hashable (decide() caches its route table).
        object.__setattr__(self, "prefixes", tuple(self.prefixes))
        object.__setattr__(self, "exceptions", tuple(self.exceptions))


@dataclass(frozen=True)
class DialPlan:
    """Dial rules and barring rules of one profile; validated on construction (ValueError naming the TOML key)."""

    name: str
    country_code: str = "49"
    national_prefix: str = "0"
    international_prefix: str = "00"
    area_code: str = ""
    """Without the national prefix; empty: numbers without prefix are refused (``no-area-code``)."""
    outside_line: str = ""
    """Digits for an outside line; empty: direct dialing."""
    keep_outside_line: bool = False
    internal_digits: tuple[int, int] | None = (2, 5)
    """Length of internal extensions (min, max); None: no extensions."""
    external_format: ExternalFormat = ExternalFormat.INTERNATIONAL
    emergency: tuple[str, ...] = ("110", "112")
    """Never barred; :data:`ALWAYS_EMERGENCY` is added to them."""
    short_codes: tuple[str, ...] = ()
    """Digits followed by ``x`` for any digit, e.g. ``116xxx``."""
    bars: tuple[BarRule, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        for name in ("emergency", "short_codes", "bars"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.internal_digits is not None:
            object.__setattr__(self, "internal_digits", tuple(self.internal_digits))
        if self.external_format not in set(ExternalFormat):
            raise _bad("dial.external_format", "must be " + ", ".join(ExternalFormat), self.external_format)
        object.__setattr__(self, "external_format", ExternalFormat(self.external_format))
        for check in _CHECKS:
            check(self)

    @property
    def emergency_numbers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.emergency, *ALWAYS_EMERGENCY)))


@dataclass(frozen=True)
class Dial:
    """Dial ``uri``; ``normalized`` is its user part, what the PBX receives."""

    uri: str
    normalized: str
    rule: str
    """Which route read the number: emergency, short-code, national, international, internal, local."""
    bypassed: str = ""
    """The barring rule a per-user allow entry let this number through."""
    allowed_by: str = ""
    """That allow entry, in barring form."""


@dataclass(frozen=True)
class Refused:
    """Not dialed: ``rule`` names the barring rule (or ``invalid``/``no-area-code``), ``reason`` says why in words."""

    rule: str
    reason: str


Decision = Dial | Refused


# ---------------------------------------------------------------------------------------------------------------
# Validation: one function per concern, run in order by DialPlan.__post_init__.


def _bad(key: str, why: str, value: object) -> ValueError:
    return ValueError(f"field '{key}' {why} (got {value!r})")


def _check_prefixes(plan: DialPlan) -> None:
    for key, value, pattern, why in (
        ("name", plan.name, _PLAN_NAME, "must be letters, digits, '.', '_' or '-'"),
        ("dial.country_code", plan.country_code, re.compile(r"[1-9][0-9]{0,2}"),
         "must be 1 to 3 digits, not starting with 0"),
        ("dial.national_prefix", plan.national_prefix, re.compile(r"[0-9]{1,3}"), "must be 1 to 3 digits"),
        ("dial.international_prefix", plan.international_prefix, re.compile(r"[0-9]{2,4}"),
         "must be 2 to 4 digits"),
        ("dial.area_code", plan.area_code, re.compile(r"(?:[0-9]{1,6})?"), "must be digits or empty"),
        ("dial.outside_line", plan.outside_line, re.compile(r"(?:[0-9]{1,3})?"), "must be 1 to 3 digits or empty"),
    ):
        if not pattern.fullmatch(value):
            raise _bad(key, why, value)
    if plan.national_prefix.startswith(plan.international_prefix):
        raise _bad("dial.national_prefix", "must not start with the international prefix", plan.national_prefix)
    if plan.area_code.startswith(plan.national_prefix):
        raise _bad("dial.area_code", f"is written without the national prefix {plan.national_prefix}",
                   plan.area_code)
    if plan.international_prefix.startswith(plan.national_prefix):
        # After the national prefix, this digit starts the international prefix (00 = 0 + 0).
        digit = plan.international_prefix[len(plan.national_prefix)]
        if plan.area_code.startswith(digit):
            raise _bad("dial.area_code", f"must not start with {digit}: after the national prefix "
                       f"{plan.national_prefix} that begins the international prefix", plan.area_code)


def _check_internal(plan: DialPlan) -> None:
    if plan.internal_digits is None:
        return
    low, high = plan.internal_digits
    if not 1 <= low <= high <= 10:
        raise _bad("dial.internal_digits", "must be [min, max] with 1 <= min <= max <= 10", [low, high])


def _check_format(plan: DialPlan) -> None:
    if plan.keep_outside_line and plan.external_format is ExternalFormat.E164:
        raise _bad("dial.keep_outside_line", "cannot put an outside line in front of +numbers (external_format "
                   "'e164')", True)


def _check_numbers(plan: DialPlan) -> None:
    for i, number in enumerate(plan.emergency, 1):
        if not re.fullmatch(r"[0-9]{2,6}", number):
            raise _bad(f"dial.emergency[{i}]", "must be 2 to 6 digits", number)
    for i, code in enumerate(plan.short_codes, 1):
        key = f"dial.short_codes[{i}]"
        if not _SHORT_CODE.fullmatch(code) or not 3 <= len(code) <= 8:
            raise _bad(key, "must be 3 to 8 characters: digits, then 'x' for any digit", code)
        if code.startswith((plan.national_prefix, plan.international_prefix)):
            raise _bad(key, "must not start with the national or international prefix", code)


def _check_bars(plan: DialPlan) -> None:
    names: set[str] = set()
    home = plan.international_prefix + plan.country_code
    for i, bar in enumerate(plan.bars, 1):
        key = f"barring.rule[{i}]"
        if not _RULE_NAME.fullmatch(bar.name):
            raise _bad(f"{key}.name", "must be lower-case letters, digits and '-'", bar.name)
        if bar.name in _RESERVED_RULES or bar.name in names:
            raise _bad(f"{key}.name", "must be unique and not one of " + ", ".join(sorted(_RESERVED_RULES)),
                       bar.name)
        names.add(bar.name)
        if not bar.description.strip():
            raise _bad(f"{key}.description", "must say what is barred, e.g. 'premium-rate 0900 numbers'",
                       bar.description)
        if not bar.prefixes:
            raise _bad(f"{key}.prefixes", "must name at least one prefix", [])
        for field_, entries in (("prefixes", bar.prefixes), ("except", bar.exceptions)):
            for prefix in entries:
                if not re.fullmatch(r"[0-9]{1,15}", prefix):
                    raise _bad(f"{key}.{field_}", "must be digits as dialed in the country, e.g. '0900' or "
                               "'0041'", prefix)
                if prefix.startswith(home):
                    national = plan.national_prefix + prefix[len(home):]
                    raise _bad(f"{key}.{field_}", f"never matches: numbers in country {plan.country_code} are "
                               f"barred in national form ('{national}')", prefix)
        for prefix in bar.prefixes:
            for number in plan.emergency_numbers:
                if number.startswith(prefix):
                    raise _bad(f"{key}.prefixes", f"would bar emergency number {number}: emergency numbers "
                               "are never barred", prefix)
        for exception in bar.exceptions:
            if not exception.startswith(bar.prefixes):
                raise _bad(f"{key}.except", "must lie inside one of the rule's prefixes", exception)


_CHECKS: tuple[Callable[[DialPlan], None], ...] = (
    _check_prefixes, _check_internal, _check_format, _check_numbers, _check_bars,
)


# ---------------------------------------------------------------------------------------------------------------
# The route table: how a cleaned number is read. decide() and the MicroSIP compiler both walk it.


@dataclass(frozen=True)
class _Route:
    """A route claims the numbers that start with ``prefix`` and have ``rest`` digits after it."""

    rule: str
    prefix: str
    rest: tuple[int, int | None]
    """How many digits after the prefix this route claims (max None: any)."""
    first: frozenset[str] | None = None
    """The first digit after the prefix must be one of these (None: any)."""
    view: str | None = None
    """Barring sees ``view + rest``; None: never barred."""
    out: str = ""
    """Sent: ``out + rest``."""
    valid: tuple[int, int] | None = None
    """How many digits after the prefix make a valid number (None: every claimed one)."""
    no_leading: tuple[str, ...] = ()
    """A valid rest starts with none of these."""
    what: str = ""
    """Words for the invalid-number messages."""
    refusal: str = ""
    """This route claims numbers only to refuse them with this rule."""


@lru_cache(maxsize=64)
def _routes(plan: DialPlan) -> tuple[_Route, ...]:
    ol, np, ip, cc = plan.outside_line, plan.national_prefix, plan.international_prefix, plan.country_code
    sent = ol if plan.keep_outside_line else ""
    home_out, abroad_out = {
        ExternalFormat.INTERNATIONAL: (ip + cc, ip),
        ExternalFormat.NATIONAL: (np, ip),
        ExternalFormat.E164: ("+" + cc, "+"),
    }[plan.external_format]
    nsn_max = E164_MAX_DIGITS - len(cc)
    home = _Route("national", "", (0, None), view=np, out=sent + home_out, valid=(NSN_MIN_DIGITS, nsn_max),
                  no_leading=(np, ip[len(np)]) if ip.startswith(np) else (np,), what=f"numbers after +{cc}")
    abroad = _Route("international", "", (0, None), view=ip, out=sent + abroad_out,
                    valid=(FOREIGN_MIN_DIGITS, E164_MAX_DIGITS), no_leading=("0",), what="international numbers")
    # After the national prefix, the rest of the international prefix means international (0|0…).
    after_np = DIGITS - {ip[len(np)]} if ip.startswith(np) else None
    leading = {np[0], ip[0]}
    routes: list[_Route] = []
    for number in plan.emergency_numbers:
        for dialed in dict.fromkeys((number, ol + number)):
            routes.append(_Route("emergency", dialed, (0, 0), out=sent + number))
    for code in plan.short_codes:
        digits = code.rstrip("x")
        extra = len(code) - len(digits)
        routes.append(_Route("short-code", ol + digits, (extra, extra), view=digits, out=sent + digits))
    routes += [
        replace(home, prefix="+" + cc),
        replace(abroad, prefix="+"),
        replace(home, prefix=ol + ip + cc),
        replace(abroad, prefix=ol + ip),
        replace(home, prefix=ol + np, rest=(1 if after_np else 0, None), first=after_np,
                what=f"national numbers after {np}"),
    ]
    local_min = 1
    if plan.internal_digits is not None:
        low, high = plan.internal_digits
        routes.append(_Route("internal", "", (low, high), first=DIGITS - ({ol[0]} if ol else leading)))
        local_min = 1 if ol else high + 1
    local = _Route("local", ol, (local_min, None), first=DIGITS - leading)
    if plan.area_code:
        routes.append(replace(local, view=np + plan.area_code, out=sent + home_out + plan.area_code,
                              valid=(max(local_min, NSN_MIN_DIGITS - len(plan.area_code)),
                                     nsn_max - len(plan.area_code)),
                              what=f"local numbers in {np}{plan.area_code}"))
    else:
        routes.append(replace(local, rule=NO_AREA_CODE, refusal=NO_AREA_CODE))
    return tuple(routes)


def _claims(route: _Route, dialed: str) -> str | None:
    """The digits after the route's prefix when the route claims ``dialed``."""
    if not dialed.startswith(route.prefix):
        return None
    rest = dialed[len(route.prefix):]
    low, high = route.rest
    if len(rest) < low or (high is not None and len(rest) > high):
        return None
    if route.first is not None and (not rest or rest[0] not in route.first):
        return None
    return rest


def _invalid(route: _Route, rest: str, shown: str, plan: DialPlan) -> str:
    """Why a claimed number is no valid number, or ''."""
    if route.valid is not None:
        low, high = route.valid
        if len(rest) < low:
            return f"{shown} is too short: {route.what} have at least {low} digits"
        if len(rest) > high:
            return f"{shown} is too long: {route.what} have at most {high} digits (ITU-T E.164)"
    if rest.startswith(route.no_leading):
        if route.view == plan.international_prefix:
            return f"{shown}: no country code starts with 0"
        if rest.startswith(plan.national_prefix):
            return (f"{shown}: after the country code {plan.country_code} the national prefix "
                    f"{plan.national_prefix} is left out")
        return f"{shown}: a national number does not start with {rest[0]}"
    return ""


# ---------------------------------------------------------------------------------------------------------------
# decide()


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:39] + "…")


def _strip_formatting(text: str) -> str:
    text = text.strip()
    if text.startswith("+"):
        text = _BRACKETED_TRUNK_ZERO.sub("", text, count=1)
    return "".join(c for c in text if not c.isspace() and c not in _SEPARATORS)


def _clean(number: str) -> str | Refused:
    dialed = _strip_formatting(number)
    if not dialed:
        return Refused(INVALID, "nothing to dial")
    if not _DIALABLE.fullmatch(dialed):
        return Refused(INVALID, f"{_shown(number)} is not a phone number: use digits, a leading '+', spaces "
                       "and - / . ( )")
    if len(dialed) > MAX_INPUT_DIGITS:
        return Refused(INVALID, f"{_shown(number)} is too long for a phone number")
    return dialed


def _allow_view(entry: str, plan: DialPlan) -> str | None:
    """An allow entry in barring form, or None when it is not a number or prefix."""
    cleaned = _strip_formatting(entry)
    if not _DIALABLE.fullmatch(cleaned):
        return None
    if not cleaned.startswith("+"):
        return cleaned
    digits = cleaned[1:]
    if digits.startswith(plan.country_code):
        return plan.national_prefix + digits[len(plan.country_code):]
    return plan.international_prefix + digits


def check_allow(entries: Sequence[str], plan: DialPlan) -> tuple[str, ...]:
    """Per-user allow entries in barring form (``+49 900 1`` → ``09001``); ValueError for one that is no number."""
    views = []
    for entry in entries:
        view = _allow_view(entry, plan)
        if view is None:
            raise ValueError(f"allow entry must be a number or prefix: digits with an optional leading '+' "
                             f"(got {entry!r})")
        views.append(view)
    return tuple(views)


_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?:{_HOST_LABEL}\.)*[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?", re.ASCII)
_HOSTPORT = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>[0-9]{1,5}))?", re.ASCII)


@lru_cache(maxsize=256)
def _sip_host(domain: str) -> str:
    """``domain`` as the hostport of a SIP URI (RFC 3261 §25.1), or ValueError."""
    match = _HOSTPORT.fullmatch(domain)
    ok = match is not None and (match["port"] is None or 0 < int(match["port"]) < 65536)
    if match is not None and ok:
        try:
            if match["v6"] is not None:
                ipaddress.IPv6Address(match["v6"])
            elif not _HOSTNAME.fullmatch(match["host"]) or len(match["host"]) > 253:
                ipaddress.IPv4Address(match["host"])
        except ValueError:
            ok = False
    if not ok:
        raise ValueError(f"domain must be host[:port] as in a SIP URI (got {domain!r})")
    return domain


def decide(number: str, plan: DialPlan, domain: str, allow: Sequence[str] = ()) -> Decision:
    """What dialing ``number`` does under ``plan``: a :class:`Dial` or a :class:`Refused` saying why.

    Never raises for ``number``: anything that is not a number is ``Refused('invalid', …)``.
    ``allow`` holds the user's allow entries (numbers or prefixes; ones that are no number are
    ignored, :func:`check_allow` finds them). Raises ValueError only for a ``domain`` that cannot
    stand in a SIP URI, which is a configuration error.
    """
    host = _sip_host(domain)
    dialed = _clean(number)
    if isinstance(dialed, Refused):
        return dialed
    shown = _shown(number.strip())
    for route in _routes(plan):
        rest = _claims(route, dialed)
        if rest is None:
            continue
        if route.refusal:
            return Refused(route.refusal, f"{shown} has no prefix and dial plan '{plan.name}' has no area code: "
                           f"dial {plan.national_prefix} and the area code first")
        problem = _invalid(route, rest, shown, plan)
        if problem:
            return Refused(INVALID, problem)
        normalized = route.out + rest
        dial = Dial(uri=f"sip:{normalized}@{host}", normalized=normalized, rule=route.rule)
        if route.view is None:
            return dial
        view = route.view + rest
        bar = next((b for b in plan.bars if view.startswith(b.prefixes) and not view.startswith(b.exceptions)),
                   None)
        if bar is None:
            return dial
        entry = next((v for v in (_allow_view(e, plan) for e in allow) if v and view.startswith(v)), "")
        if not entry:
            return Refused(bar.name, f"{bar.description} are barred (rule '{bar.name}')")
        log.debug("%s: rule %r bypassed by the user's allow entry %r", shown, bar.name, entry)
        return replace(dial, bypassed=bar.name, allowed_by=entry)
    extensions = ""
    if plan.internal_digits is not None:
        extensions = "; extensions have {} to {} digits".format(*plan.internal_digits)
    return Refused(INVALID, f"{shown} matches no rule of dial plan '{plan.name}'{extensions}")


# ---------------------------------------------------------------------------------------------------------------
# Loading


_DIAL_KEYS = ("outside_line", "keep_outside_line", "national_prefix", "international_prefix", "country_code",
              "area_code", "internal_digits", "external_format", "emergency", "short_codes")
_RULE_KEYS = ("name", "description", "prefixes", "except")


class _Reader:
    """Typed access to one TOML document; every error names the source and the key."""

    def __init__(self, source: str, prefix: str) -> None:
        self.source = source
        self.prefix = prefix

    def fail(self, key: str, why: str, value: object) -> UsageError:
        return UsageError(f"{self.source}: field '{self.prefix}{key}' {why} (got {value!r})")

    def known(self, table: Mapping[str, Any], where: str, keys: Sequence[str]) -> None:
        for key, value in table.items():
            if key not in keys:
                raise self.fail(where + key, "is not known: use " + ", ".join(keys), value)

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(key, "must be a table", value)
        return value

    def text(self, key: str, value: object) -> str:
        if not isinstance(value, str):
            raise self.fail(key, 'must be a string in quotes, e.g. "49"', value)
        return value.strip()

    def texts(self, key: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(key, 'must be a list of strings, e.g. ["110", "112"]', value)
        return tuple(self.text(f"{key}[{i}]", item) for i, item in enumerate(value, 1))

    def flag(self, key: str, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false", value)
        return value

    def span(self, key: str, value: object) -> tuple[int, int] | None:
        if value == []:
            return None
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise self.fail(key, "must be [min, max] digits, or [] for no extensions", value)
        return (value[0], value[1])

    def choice(self, key: str, value: object) -> ExternalFormat:
        try:
            return ExternalFormat(self.text(key, value))
        except ValueError:
            raise self.fail(key, "must be " + ", ".join(f.value for f in ExternalFormat), value) from None


# TOML key in [dial] → (DialPlan field, reader).
_DIAL_FIELDS: dict[str, tuple[str, Callable[[_Reader, str, object], object]]] = {
    "outside_line": ("outside_line", _Reader.text),
    "keep_outside_line": ("keep_outside_line", _Reader.flag),
    "national_prefix": ("national_prefix", _Reader.text),
    "international_prefix": ("international_prefix", _Reader.text),
    "country_code": ("country_code", _Reader.text),
    "area_code": ("area_code", _Reader.text),
    "internal_digits": ("internal_digits", _Reader.span),
    "external_format": ("external_format", _Reader.choice),
    "emergency": ("emergency", _Reader.texts),
    "short_codes": ("short_codes", _Reader.texts),
}


def _parse(data: Mapping[str, Any], reader: _Reader, default_name: str, extra: Sequence[str] = ()) -> DialPlan:
    reader.known(data, "", ("name", "description", "dial", "barring", *extra))
    dial = reader.table(data, "dial")
    reader.known(dial, "dial.", _DIAL_KEYS)
    barring = reader.table(data, "barring")
    reader.known(barring, "barring.", ("rule",))
    rules = barring.get("rule", [])
    if not isinstance(rules, list) or not all(isinstance(r, Mapping) for r in rules):
        raise reader.fail("barring.rule", "must be [[barring.rule]] tables", rules)
    fields: dict[str, Any] = {
        attr: read(reader, f"dial.{key}", dial[key]) for key, (attr, read) in _DIAL_FIELDS.items() if key in dial
    }
    bars = []
    for i, rule in enumerate(rules, 1):
        key = f"barring.rule[{i}]"
        reader.known(rule, f"{key}.", _RULE_KEYS)
        for required in ("name", "description", "prefixes"):
            if required not in rule:
                raise UsageError(f"{reader.source}: field '{reader.prefix}{key}.{required}' is missing")
        bars.append(BarRule(
            name=reader.text(f"{key}.name", rule["name"]),
            description=reader.text(f"{key}.description", rule["description"]),
            prefixes=reader.texts(f"{key}.prefixes", rule["prefixes"]),
            exceptions=reader.texts(f"{key}.except", rule.get("except", [])),
        ))
    name = reader.text("name", data["name"]) if "name" in data else default_name
    description = reader.text("description", data["description"]) if "description" in data else ""
    try:
        return DialPlan(name=name, description=description, bars=tuple(bars), **fields)
    except ValueError as exc:
        # DialPlan names keys from the top of a profile; embedded plans sit under a prefix.
        message = str(exc).replace("field '", f"field '{reader.prefix}", 1)
        raise UsageError(f"{reader.source}: {message}") from None


def parse_dialplan(data: Mapping[str, Any], source: str, default_name: str = "") -> DialPlan:
    """A plan from parsed TOML (``name``, ``description``, ``[dial]``, ``[barring]``); UsageError naming ``source``."""
    return _parse(data, _Reader(source, ""), default_name or Path(source).stem)


def embedded_dialplan(profile: Mapping[str, Any], source: str) -> tuple[DialPlan, tuple[str, ...]] | None:
    """The ``[dialplan]`` section of a phonekit account profile and its ``allow`` list; None without one."""
    section = profile.get("dialplan")
    if section is None:
        return None
    reader = _Reader(source, "dialplan.")
    if not isinstance(section, Mapping):
        raise UsageError(f"{source}: field 'dialplan' must be a table (got {section!r})")
    plan = _parse(section, reader, "embedded", extra=("allow",))
    entries = reader.texts("allow", section.get("allow", []))
    try:
        return plan, check_allow(entries, plan)
    except ValueError as exc:
        raise UsageError(f"{source}: field 'dialplan.allow' {str(exc).removeprefix('allow entry ')}") from None


def builtin_dialplans() -> tuple[str, ...]:
    """Names of the profiles shipped in ``templates/dialplans``."""
    folder = importlib.resources.files("templates") / "dialplans"
    return tuple(sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")))


def _read(source: str | Path) -> tuple[str, str, str]:
    """(label for messages, TOML text, default name) of a built-in name or a file."""
    text = str(source)
    if isinstance(source, Path) or "/" in text or "\\" in text or text.endswith(".toml"):
        path = Path(source)
        try:
            return str(path), path.read_text(encoding="utf-8"), path.stem
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the dial profile: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{path}: the dial profile is not UTF-8 text") from None
    resource = importlib.resources.files("templates") / "dialplans" / f"{text}.toml"
    if not _PLAN_NAME.fullmatch(text) or not resource.is_file():
        raise UsageError(f"unknown dial profile {text!r}: give a .toml file or one of "
                         + ", ".join(builtin_dialplans()))
    return f"templates/dialplans/{text}.toml", resource.read_text(encoding="utf-8"), text


def _load(source: str | Path) -> tuple[str, DialPlan]:
    label, text, default_name = _read(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{label}: not valid TOML: {exc}") from None
    return label, _parse(data, _Reader(label, ""), default_name)


def load_dialplan(source: str | Path, *, barring: str | Path | None = None) -> DialPlan:
    """A built-in profile by name (``de-default``) or a TOML file; UsageError naming the file and field.

    ``barring``: take the ``[barring]`` rules from this profile instead (a machine's
    ``barring_profile``); its rules are checked against the emergency numbers of ``source``.
    """
    _, plan = _load(source)
    if barring is None or str(barring) == str(source):
        return plan
    label, other = _load(barring)
    try:
        return replace(plan, bars=other.bars)
    except ValueError as exc:
        raise UsageError(f"{label}: {exc} (with the dial rules of {plan.name})") from None


# ---------------------------------------------------------------------------------------------------------------
# phonekit: the plan embedded in the account profile


def _toml(value: str | bool | Sequence[str] | Sequence[int]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    return "[" + ", ".join(_toml(v) if isinstance(v, str) else str(v) for v in value) + "]"


def phonekit_dialplan_toml(plan: DialPlan, allow: Sequence[str] = ()) -> str:
    """A ``[dialplan]`` section for phonekit's account profile: the whole plan and the user's allow entries.

    :func:`embedded_dialplan` reads it back into an equal plan, so the phone enforces it with :func:`decide`.
    """
    lines = [
        "[dialplan]",
        f"name = {_toml(plan.name)}",
        f"description = {_toml(plan.description)}",
        f"allow = {_toml(check_allow(allow, plan))}",
        "",
        "[dialplan.dial]",
        f"outside_line = {_toml(plan.outside_line)}",
        f"keep_outside_line = {_toml(plan.keep_outside_line)}",
        f"national_prefix = {_toml(plan.national_prefix)}",
        f"international_prefix = {_toml(plan.international_prefix)}",
        f"country_code = {_toml(plan.country_code)}",
        f"area_code = {_toml(plan.area_code)}",
        f"internal_digits = {_toml(plan.internal_digits or ())}",
        f"external_format = {_toml(plan.external_format.value)}",
        f"emergency = {_toml(plan.emergency)}",
        f"short_codes = {_toml(plan.short_codes)}",
    ]
    for bar in plan.bars:
        lines += [
            "",
            "[[dialplan.barring.rule]]",
            f"name = {_toml(bar.name)}",
            f"description = {_toml(bar.description)}",
            f"prefixes = {_toml(bar.prefixes)}",
            f"except = {_toml(bar.exceptions)}",
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Linphone


def linphone_dial(plan: DialPlan) -> dict[str, str]:
    """linphonerc ``[proxy_N]`` keys that make Linphone rewrite numbers the way :func:`decide` does, as far as it can.

    What Linphone does with them (liblinphone ``linphone_account_normalize_phone_number`` in
    src/c-wrapper/api/c-account.cpp and ``DialPlan::formatPhoneNumber`` in src/dial-plan/dial-plan.cpp,
    its tester tests/proxy_config_tester.c; checked with Debian 12's linphonec, liblinphone 5.1.65,
    in tests/provision/test_dialplan.py):

    * ``dial_escape_plus=1`` sends ``+49 30 123456`` as ``004930123456``, ``0`` keeps the ``+``:
      1 for external_format "international" and "national", 0 for "e164".
    * ``dial_prefix`` (a country code) stays empty on purpose. With ``49`` Linphone puts the
      country code in front of every number without ``+``/``00`` that is at least as long as
      the country's shortest national number, and drops the national prefix only by cutting a
      number to the country's longest (Germany: 6 to 12 digits, so never): ``030 123456`` is
      sent as ``0049030123456`` and the short code ``116116`` as ``0049116116``. Empty,
      national numbers, extensions and short codes go out as dialed.

    Linphone cannot express barring, the outside line, the area code, rewriting national
    numbers into international form, or the "national" format for +numbers at home. The PBX
    must accept national numbers as dialed, and bar what Linphone users must not dial.
    """
    escape = plan.external_format is not ExternalFormat.E164
    return {"dial_prefix": "", "dial_escape_plus": "1" if escape else "0"}


# ---------------------------------------------------------------------------------------------------------------
# MicroSIP


@dataclass(frozen=True)
class _Pattern:
    atoms: tuple[frozenset[str], ...]
    """One set of allowed characters per position."""
    more: tuple[int, int | None]
    """Further characters of any kind after the atoms (max None: any number)."""


@dataclass(frozen=True)
class _MicroRule:
    pattern: _Pattern
    group: int = 0
    """How many leading atoms the replaced group holds."""
    out: str | None = None
    """The group's replacement; None: dial as matched."""
    block: bool = False
    """The whole number becomes '@': no valid SIP URI, so MicroSIP does not call."""


def _region(route: _Route, extra: str) -> _Pattern | None:
    """The numbers ``route`` claims whose digits after the prefix start with ``extra``."""
    if extra.startswith(route.no_leading):
        return None  # decide() refuses these as invalid; no rule needs to name them
    atoms = [frozenset(c) for c in route.prefix + extra]
    fixed = len(extra)
    if route.first is not None:
        if extra and extra[0] not in route.first:
            return None
        if not extra:
            atoms.append(route.first)
            fixed = 1
    low, high = route.rest
    if high is not None and fixed > high:
        return None
    return _Pattern(tuple(atoms), (max(low - fixed, 0), None if high is None else high - fixed))


def _narrow(route: _Route, extra: str, prefix: str) -> str | None:
    """The part of region ``extra`` whose barring form starts with ``prefix``, as a new extra; None if none."""
    assert route.view is not None
    view = route.view + extra
    if prefix.startswith(view):
        return prefix[len(route.view):]
    if view.startswith(prefix):
        return extra
    return None


def _dial_rule(route: _Route, extra: str) -> list[_MicroRule]:
    pattern = _region(route, extra)
    if pattern is None:
        return []
    if route.out == route.prefix:
        return [_MicroRule(pattern)]
    return [_MicroRule(pattern, group=len(route.prefix), out=route.out)]


def _block_rule(route: _Route, extra: str) -> list[_MicroRule]:
    pattern = _region(route, extra)
    return [] if pattern is None else [_MicroRule(pattern, block=True)]


def _barred(route: _Route, extra: str, bars: Sequence[BarRule]) -> list[_MicroRule]:
    """Rules for region ``extra`` of ``route`` under ``bars`` in order: exceptions, blocks, then the rest."""
    if not bars:
        return _dial_rule(route, extra)
    bar, later = bars[0], bars[1:]
    rules: list[_MicroRule] = []
    for exception in bar.exceptions:
        narrowed = _narrow(route, extra, exception)
        if narrowed is not None:
            rules += _barred(route, narrowed, later)
            if narrowed == extra:
                return rules
    for prefix in bar.prefixes:
        narrowed = _narrow(route, extra, prefix)
        if narrowed is not None:
            rules += _block_rule(route, narrowed)
            if narrowed == extra:
                return rules
    return rules + _barred(route, extra, later)


def _length(pattern: _Pattern) -> tuple[int, float]:
    low, high = pattern.more
    return len(pattern.atoms) + low, float("inf") if high is None else len(pattern.atoms) + high


def _overlap(a: _Pattern, b: _Pattern) -> bool:
    (a_low, a_high), (b_low, b_high) = _length(a), _length(b)
    if max(a_low, b_low) > min(a_high, b_high):
        return False
    return all(x & y for x, y in zip(a.atoms, b.atoms, strict=False))


def _merge(a: _MicroRule, b: _MicroRule) -> _MicroRule | None:
    """One rule doing what two rules of the same kind do, when their patterns differ in one place."""
    if (a.group, a.out, a.block) != (b.group, b.out, b.block):
        return None
    pa, pb = a.pattern, b.pattern
    if pa.atoms == pb.atoms:
        (a_low, a_high), (b_low, b_high) = pa.more, pb.more
        if a_high is not None and b_high is not None and max(a_low, b_low) <= min(a_high, b_high) + 1:
            return replace(a, pattern=replace(pa, more=(min(a_low, b_low), max(a_high, b_high))))
        return None
    if pa.more != pb.more or len(pa.atoms) != len(pb.atoms):
        return None
    differ = [i for i, (x, y) in enumerate(zip(pa.atoms, pb.atoms, strict=True)) if x != y]
    # A rewrite replaces its group by a fixed text: merging inside the group would lose digits.
    if len(differ) != 1 or (not a.block and differ[0] < a.group):
        return None
    i = differ[0]
    atoms = (*pa.atoms[:i], pa.atoms[i] | pb.atoms[i], *pa.atoms[i + 1:])
    return replace(a, pattern=replace(pa, atoms=atoms))


def _simplify(rules: list[_MicroRule]) -> list[_MicroRule]:
    # A block matters only where a later dialing rule would take the number: unmatched numbers are not called.
    kept = [rule for i, rule in enumerate(rules)
            if not rule.block or any(not r.block and _overlap(rule.pattern, r.pattern) for r in rules[i + 1:])]
    # Neighbours of one kind commute (blocks all end in '@'; a rewrite is one function of the number): merge them.
    merged: list[_MicroRule] = []
    for _, group in groupby(kept, key=lambda r: (r.group, r.out, r.block)):
        run = list(group)
        i = 0
        while i < len(run):
            for j in range(i + 1, len(run)):
                joined = _merge(run[i], run[j])
                if joined is not None:
                    run[i] = joined
                    del run[j]
                    break
            else:
                i += 1
        merged += run
    return merged


def _micro_atom(chars: frozenset[str]) -> str:
    if chars == DIGITS:
        return "x"
    if len(chars) == 1:
        (char,) = chars
        return "\\+" if char == "+" else char
    digits = sorted(chars)
    spans: list[str] = []
    start = prev = digits[0]
    for d in [*digits[1:], ""]:
        if d and ord(d) == ord(prev) + 1:
            prev = d
            continue
        spans.append(start if start == prev else f"{start}{prev}" if ord(prev) == ord(start) + 1 else
                     f"{start}-{prev}")
        start = prev = d
    return "[" + "".join(spans) + "]"


def _micro_text(rule: _MicroRule) -> str:
    atoms = [_micro_atom(a) for a in rule.pattern.atoms]
    low, high = rule.pattern.more
    tail = "x" * low + ("x." if high is None else "x?" * (high - low))
    if rule.block:
        return f"<{''.join(atoms)}{tail}:@>"
    if rule.out is None:
        return "".join(atoms) + tail
    return f"<{''.join(atoms[:rule.group])}:{rule.out}>{''.join(atoms[rule.group:])}{tail}"


@dataclass(frozen=True)
class _MicroFit:
    """What the MicroSIP rules leave out to fit; every step only makes MicroSIP refuse more."""

    left_out: str
    home_abroad: bool = True
    """Dial numbers at home written with the international prefix (0049…)."""
    allow_forms: str = "all"
    """Where allow entries apply: "all" forms, "as-written" (0…, 00…, short codes), "none"."""


_MICRO_FITS = (
    _MicroFit(""),
    _MicroFit("numbers at home dialed as {home_abroad}…", home_abroad=False),
    _MicroFit("numbers at home dialed as {home_abroad}…, and the allow entries for numbers dialed with + or "
              "{home_abroad}", home_abroad=False, allow_forms="as-written"),
    _MicroFit("numbers at home dialed as {home_abroad}…, and the allow entries", home_abroad=False,
              allow_forms="none"),
)


def microsip_dial_plan(plan: DialPlan, allow: Sequence[str] = ()) -> str:
    """MicroSIP's ``dialPlan`` account value: the same routes, rewrites and barring as :func:`decide`.

    MicroSIP (3.19 to 3.22, ``FormatNumber`` in global.cpp) first removes ``. - ( ) /`` and spaces
    from a number that looks like one, then tries the ``|``-separated rules in order; the first
    that matches the whole number wins. In a rule ``x`` is any character and ``.`` repeats the one
    before (``x.`` = anything), the rest is ATL regular expression syntax (``[1-9]``, ``?``,
    ``\\+``), and ``<match:replace>`` replaces what ``match`` matched (``<:0049>`` inserts). A
    number no rule matches becomes empty, and ``sip:@<domain>`` fails ``pjsua_verify_sip_url``
    (PJSIP_EINVALIDURI; checked against pjsip 2.15), so nothing is called: a dial plan is an
    allowlist. Barring is a rule that turns the number into ``@``: ``sip:@`` fails the same way.
    Such a rule is written only where a later rule would dial the number. The renderer never
    uses an empty replacement (``<0:>`` deletes since 3.20 but was kept by 3.19).

    MicroSIP never dials a number :func:`decide` bars, and dials every number it dials the same
    way, but for what is left out to fit into :data:`MICROSIP_DIALPLAN_MAX` characters (MicroSIP
    would silently cut a longer value), in this order until it fits: numbers at home written
    with the international prefix (``0049 30 …``; ``030 …`` and ``+49 30 …`` work), then the
    user's allow entries for numbers dialed in another form than the entry's (``+49 900 …`` for
    ``0900``), then all allow entries. Each step is logged. It checks the length of extensions,
    short codes and emergency numbers, but not of external numbers: one :func:`decide` refuses
    as too short or too long goes to the PBX. Keep ``dialingPrefix`` empty: MicroSIP applies it
    before the dial plan. A user can bypass the plan by typing ``<sip:…>`` or editing
    MicroSIP.ini: barring that must hold belongs in the PBX.

    Raises UsageError when even the last step does not fit.
    """
    views = check_allow(allow, plan)
    home_abroad = plan.outside_line + plan.international_prefix + plan.country_code
    sizes: list[int] = []
    for fit in _MICRO_FITS:
        if fit.allow_forms != "all" and not views:
            break
        text = _micro_plan(plan, views, fit)
        if len(text) <= MICROSIP_DIALPLAN_MAX:
            if fit.left_out:
                level = logging.WARNING if fit.allow_forms != "all" else logging.INFO
                log.log(level, "dial plan '%s' as MicroSIP rules leaves out %s (%s characters otherwise)",
                        plan.name, fit.left_out.format(home_abroad=home_abroad), sizes[0])
            return text
        sizes.append(len(text))
    raise UsageError(f"dial plan '{plan.name}' needs {sizes[-1]} characters as a MicroSIP dialPlan; MicroSIP "
                     f"reads at most {MICROSIP_DIALPLAN_MAX}: fewer barring rules, exceptions or short codes "
                     "would fit")


def _micro_plan(plan: DialPlan, views: Sequence[str], fit: _MicroFit) -> str:
    home_abroad = plan.outside_line + plan.international_prefix + plan.country_code
    rules: list[_MicroRule] = []
    for route in _routes(plan):
        if route.refusal or (not fit.home_abroad and route.prefix == home_abroad):
            rules += _block_rule(route, "")
        elif route.view is None:
            rules += _dial_rule(route, "")
        else:
            as_written = route.prefix == plan.outside_line + route.view
            if fit.allow_forms == "all" or (fit.allow_forms == "as-written" and as_written):
                for view in views:
                    extra = _narrow(route, "", view)
                    if extra is not None:
                        rules += _dial_rule(route, extra)
            rules += _barred(route, "", plan.bars)
    return "|".join(_micro_text(rule) for rule in _simplify(rules))
