"""Dial rules and call barring: decide() on the German default, profile loading, renderers, the CLI, properties."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import provision.dialplan as dialplan
from diagnostics.errors import UsageError
from provision.dialplan import (
    INVALID,
    NO_AREA_CODE,
    BarRule,
    Dial,
    DialPlan,
    ExternalFormat,
    Refused,
    check_allow,
    decide,
    embedded_dialplan,
    linphone_dial,
    load_dialplan,
    microsip_dial_plan,
    phonekit_dialplan_toml,
)
from provision.dialplan_cli import register, run
from tests.testbed.procs import Process, require

DE = load_dialplan("de-default")
DOMAIN = "example.com"


def dialed(number: str, plan: DialPlan, allow: Sequence[str] = ()) -> Dial:
    decision = decide(number, plan, DOMAIN, allow)
    assert isinstance(decision, Dial), decision
    return decision

# ---------------------------------------------------------------------------------------------------------------
# A strict SIP URI check (RFC 3261 §25.1), written apart from the code under test.

_USER = r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_HOSTNAME = rf"(?:{_LABEL}\.)*[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?"
_SIP_URI = re.compile(rf"sip:(?P<user>{_USER})@(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\[\]]+)(?::(?P<port>[0-9]{{1,5}}))?",
                      re.ASCII)


def is_sip_uri(uri: str) -> bool:
    match = _SIP_URI.fullmatch(uri)
    if match is None:
        return False
    host, port = match["host"], match["port"]
    if port is not None and not 0 < int(port) < 65536:
        return False
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    return re.fullmatch(_HOSTNAME, host, re.ASCII) is not None


@pytest.mark.parametrize(("uri", "ok"), [
    ("sip:004930123456@example.com", True),
    ("sip:+4930123456@example.com:5061", True),
    ("sip:1234@[2001:db8::1]", True),
    ("sip:1234@192.0.2.1", True),
    ("sip:@example.com", False),
    ("sip:12 34@example.com", False),
    ("sip:1234@exa mple.com", False),
    ("sip:1234@-example.com", False),
    ("sip:1234@192.0.2.300", False),
    ("sip:1234@example.com:0", False),
    ("tel:+4930123456", False),
])
def test_the_uri_check_is_strict(uri: str, ok: bool) -> None:
    assert is_sip_uri(uri) is ok


# ---------------------------------------------------------------------------------------------------------------
# decide() on the German default


@pytest.mark.parametrize(("number", "normalized", "rule"), [
    ("110", "110", "emergency"),
    ("112", "112", "emergency"),
    (" 1 1 2 ", "112", "emergency"),
    ("1234", "1234", "internal"),
    ("42", "42", "internal"),
    ("99999", "99999", "internal"),
    ("030 123456", "004930123456", "national"),
    ("030/123456", "004930123456", "national"),
    ("(030) 12 34-56", "004930123456", "national"),
    ("0151 23456789", "004915123456789", "national"),
    ("0800 1234567", "00498001234567", "national"),
    ("+49 30 123456", "004930123456", "national"),
    ("+49 (0)30 123456", "004930123456", "national"),
    ("0049 30 123456", "004930123456", "national"),
    ("\u00a0+49\u200930\u2013123456\t", "004930123456", "national"),
    ("+43 1 234567", "00431234567", "international"),
    ("0043 1 234567", "00431234567", "international"),
    ("+41 44 123 45 67", "0041441234567", "international"),
    ("+420 123 456 789", "00420123456789", "international"),
    ("+352 123 456", "00352123456", "international"),
    ("116116", "116116", "short-code"),
    ("116 117", "116117", "short-code"),
    ("115", "115", "short-code"),
])
def test_german_default_dials(number: str, normalized: str, rule: str) -> None:
    decision = decide(number, DE, DOMAIN)
    assert decision == Dial(f"sip:{normalized}@{DOMAIN}", normalized, rule)
    assert is_sip_uri(decision.uri)


@pytest.mark.parametrize(("number", "rule", "reason"), [
    ("0900 123456", "premium-0900", "premium-rate 0900 numbers are barred (rule 'premium-0900')"),
    ("+49 900 123456", "premium-0900", "premium-rate 0900 numbers are barred (rule 'premium-0900')"),
    ("0049 900 123456", "premium-0900", "premium-rate 0900 numbers are barred (rule 'premium-0900')"),
    ("0190 123456", "online-019", "online-service and former premium-rate numbers 019x (0190, 0191-0194) are "
                                  "barred (rule 'online-019')"),
    ("0137 1234567", "mass-calls-013", "televoting and mass-call numbers 013x (0137, charged per call) are barred "
                                       "(rule 'mass-calls-013')"),
    ("0180 5 123456", "service-018", "service and closed-group numbers 018x (0180 shared-cost numbers) are barred "
                                     "(rule 'service-018')"),
    ("0700 12345678", "personal-0700", "personal 0700 numbers (forwarded anywhere at the caller's cost) are barred "
                                       "(rule 'personal-0700')"),
    ("01088 030 123456", "call-by-call-010", "call-by-call carrier selection numbers 010xy are barred "
                                             "(rule 'call-by-call-010')"),
    ("012 345678", "innovative-012", "012 numbers for innovative services (prices not regulated) are barred "
                                     "(rule 'innovative-012')"),
    ("11833", "directory-118", "directory enquiries 118xx (charged, and they connect onwards) are barred "
                               "(rule 'directory-118')"),
    ("118 880", "directory-118", "directory enquiries 118xx (charged, and they connect onwards) are barred "
                                 "(rule 'directory-118')"),
    ("+1 212 555 0100", "abroad", "international calls outside Germany's neighbours are barred (rule 'abroad')"),
    ("0044 20 1234 5678", "abroad", "international calls outside Germany's neighbours are barred (rule 'abroad')"),
    ("+421 2 1234 5678", "abroad", "international calls outside Germany's neighbours are barred (rule 'abroad')"),
    ("+423 123 4567", "abroad", "international calls outside Germany's neighbours are barred (rule 'abroad')"),
])
def test_german_default_bars(number: str, rule: str, reason: str) -> None:
    assert decide(number, DE, DOMAIN) == Refused(rule, reason)


@pytest.mark.parametrize(("number", "rule", "reason"), [
    ("", INVALID, "nothing to dial"),
    ("   ", INVALID, "nothing to dial"),
    ("abc", INVALID, "'abc' is not a phone number: use digits, a leading '+', spaces and - / . ( )"),
    ("030 12345x", INVALID, "'030 12345x' is not a phone number: use digits, a leading '+', spaces and - / . ( )"),
    ("sip:1234@example.com", INVALID, "'sip:1234@example.com' is not a phone number: use digits, a leading '+', "
                                      "spaces and - / . ( )"),
    ("+49+30", INVALID, "'+49+30' is not a phone number: use digits, a leading '+', spaces and - / . ( )"),
    ("*31#", INVALID, "'*31#' is not a phone number: use digits, a leading '+', spaces and - / . ( )"),
    ("١١٢", INVALID, "'١١٢' is not a phone number: use digits, a leading '+', spaces and - / . ( )"),
    ("5", INVALID, "'5' matches no rule of dial plan 'de-default'; extensions have 2 to 5 digits"),
    ("030", INVALID, "'030' is too short: national numbers after 0 have at least 4 digits"),
    ("+49 030 123456", INVALID, "'+49 030 123456': after the country code 49 the national prefix 0 is left out"),
    ("0049 030 123456", INVALID, "'0049 030 123456': after the country code 49 the national prefix 0 is left out"),
    ("+0 123456", INVALID, "'+0 123456': no country code starts with 0"),
    ("+49 3012345678901234", INVALID, "'+49 3012345678901234' is too long: numbers after +49 have at most 13 "
                                      "digits (ITU-T E.164)"),
    ("1234567", NO_AREA_CODE, "'1234567' has no prefix and dial plan 'de-default' has no area code: dial 0 and the "
                              "area code first"),
])
def test_garbage_is_refused_not_raised(number: str, rule: str, reason: str) -> None:
    assert decide(number, DE, DOMAIN) == Refused(rule, reason)


def test_local_numbers_take_the_area_code() -> None:
    berlin = replace(DE, name="berlin", area_code="30")
    assert decide("123 4567", berlin, DOMAIN) == Dial(f"sip:0049301234567@{DOMAIN}", "0049301234567", "local")
    assert decide("1234", berlin, DOMAIN).rule == "internal"  # still an extension
    national = replace(berlin, external_format=ExternalFormat.NATIONAL)
    assert dialed("123 4567", national).normalized == "0301234567"
    assert dialed("+43 1 234567", national).normalized == "00431234567"
    e164 = replace(berlin, external_format=ExternalFormat.E164)
    assert dialed("123 4567", e164).uri == f"sip:+49301234567@{DOMAIN}"


def test_area_code_is_written_without_the_national_prefix() -> None:
    with pytest.raises(ValueError, match=r"field 'dial.area_code' is written without the national prefix 0 "
                                         r"\(got '030'\)"):
        replace(DE, area_code="030")


def test_a_users_allow_list_bypasses_barring() -> None:
    allow = ["+49 900 123", "0044", "11833"]
    decision = decide("0900 123456", DE, DOMAIN, allow)
    assert decision == Dial(f"sip:0049900123456@{DOMAIN}", "0049900123456", "national",
                            bypassed="premium-0900", allowed_by="0900123")
    assert decide("+44 20 1234 5678", DE, DOMAIN, allow) == Dial(
        f"sip:00442012345678@{DOMAIN}", "00442012345678", "international", bypassed="abroad", allowed_by="0044")
    assert dialed("11833", DE, allow).bypassed == "directory-118"
    # only what the entries cover
    assert decide("0900 999999", DE, DOMAIN, allow).rule == "premium-0900"
    assert decide("+1 212 555 0100", DE, DOMAIN, allow).rule == "abroad"
    # entries that are no number never widen anything
    assert decide("0900 123456", DE, DOMAIN, ["", "x", "+"]).rule == "premium-0900"
    assert decide("030 123456", DE, DOMAIN, allow) == decide("030 123456", DE, DOMAIN)


def test_check_allow_normalizes_and_rejects() -> None:
    assert check_allow(["+49 900 1", "0041", "+43", "118 33"], DE) == ("09001", "0041", "0043", "11833")
    with pytest.raises(ValueError, match=r"allow entry must be a number or prefix: digits with an optional leading "
                                         r"'\+' \(got 'abc'\)"):
        check_allow(["abc"], DE)


def test_an_outside_line_is_stripped_or_kept() -> None:
    pbx = DialPlan("pbx", outside_line="0", internal_digits=(3, 4))
    assert dialed("0 030 123456", pbx).normalized == "004930123456"
    assert dialed("0 0043 1 234567", pbx).normalized == "00431234567"
    assert dialed("+49 30 123456", pbx).normalized == "004930123456"  # '+' needs no outside line
    assert dialed("0112", pbx).normalized == "112"
    assert dialed("112", pbx).normalized == "112"
    assert decide("0123", pbx, DOMAIN).rule == NO_AREA_CODE  # after the outside line: a local number
    assert decide("123", pbx, DOMAIN) == Dial(f"sip:123@{DOMAIN}", "123", "internal")
    kept = replace(pbx, keep_outside_line=True, external_format=ExternalFormat.NATIONAL)
    assert dialed("0 030 123456", kept).normalized == "0030123456"
    assert dialed("+43 1 234567", kept).normalized == "000431234567"
    assert dialed("112", kept).normalized == "0112"


def test_a_bad_domain_is_a_configuration_error() -> None:
    assert decide("1234", DE, "[2001:db8::1]:5060") == Dial("sip:1234@[2001:db8::1]:5060", "1234", "internal")
    assert decide("1234", DE, "192.0.2.1") == Dial("sip:1234@192.0.2.1", "1234", "internal")
    for domain in ("", "exa mple.com", "example.com:0", "1.2.3.999", "[::g]", "sip:example.com", "a@b"):
        with pytest.raises(ValueError, match="domain must be host"):
            decide("1234", DE, domain)


# ---------------------------------------------------------------------------------------------------------------
# Emergency numbers can never be barred


HOSTILE = """\
[dial]
emergency = ["110", "112"]

[[barring.rule]]
name = "premium-0900"
description = "premium-rate 0900 numbers"
prefixes = ["0900"]

[[barring.rule]]
name = "everything-1"
description = "numbers starting with 1"
prefixes = ["1"]
"""


def test_a_profile_that_bars_an_emergency_number_is_rejected(tmp_path: Path) -> None:
    profile = tmp_path / "hostile.toml"
    profile.write_text(HOSTILE)
    with pytest.raises(UsageError) as caught:
        load_dialplan(profile)
    assert str(caught.value) == (f"{profile}: field 'barring.rule[2].prefixes' would bar emergency number 110: "
                                 "emergency numbers are never barred (got '1')")
    profile.write_text(HOSTILE.replace('prefixes = ["1"]', 'prefixes = ["0137", "112"]'))
    with pytest.raises(UsageError, match=r"would bar emergency number 112: .* \(got '112'\)"):
        load_dialplan(profile)
    # 112 is an emergency number even when a profile leaves it out
    profile.write_text(HOSTILE.replace('["110", "112"]', '["110"]').replace('["1"]', '["11"]'))
    with pytest.raises(UsageError, match="would bar emergency number 110"):
        load_dialplan(profile)
    profile.write_text(HOSTILE.replace('["110", "112"]', '["911"]').replace('["1"]', '["112"]'))
    with pytest.raises(UsageError, match="would bar emergency number 112"):
        load_dialplan(profile)


def _forced(plan: DialPlan, **fields: object) -> DialPlan:
    """A plan that skipped validation, as if built by code with a bug."""
    for name, value in fields.items():
        object.__setattr__(plan, name, value)
    return plan


def test_decide_allows_emergency_numbers_even_under_a_plan_that_escaped_validation() -> None:
    hostile = _forced(DialPlan("hostile"), bars=(BarRule("everything", "all numbers", tuple("0123456789")),))
    for number in ("110", "112", " 1-1-2 "):
        assert decide(number, hostile, DOMAIN).rule == "emergency"
    assert decide("1234", hostile, DOMAIN).rule == "internal"  # extensions are never barred
    assert decide("030 123456", hostile, DOMAIN) == Refused("everything", "all numbers are barred (rule 'everything')")


# ---------------------------------------------------------------------------------------------------------------
# Loading profiles


def _write(tmp_path: Path, text: str, name: str = "site.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "error"), [
    ('[dial]\ncountry_code = 49\n', """field 'dial.country_code' must be a string in quotes, e.g. "49" (got 49)"""),
    ('[dial]\ncountry_code = "049"\n', "field 'dial.country_code' must be 1 to 3 digits, not starting with 0 "
                                       "(got '049')"),
    ('[dial]\nnational_prefix = "00"\n', "field 'dial.national_prefix' must not start with the international "
                                         "prefix (got '00')"),
    ('[dial]\nnatinal_prefix = "0"\n', "field 'dial.natinal_prefix' is not known: use outside_line, "
                                       "keep_outside_line, national_prefix, international_prefix, country_code, "
                                       "area_code, internal_digits, external_format, emergency, short_codes "
                                       "(got '0')"),
    ('[dial]\ninternal_digits = [5, 2]\n', "field 'dial.internal_digits' must be [min, max] with 1 <= min <= max "
                                           "<= 10 (got [5, 2])"),
    ('[dial]\ninternal_digits = [2]\n', "field 'dial.internal_digits' must be [min, max] digits, or [] for no "
                                        "extensions (got [2])"),
    ('[dial]\nexternal_format = "e.164"\n', "field 'dial.external_format' must be international, national, e164 "
                                            "(got 'e.164')"),
    ('[dial]\nkeep_outside_line = "yes"\n', "field 'dial.keep_outside_line' must be true or false (got 'yes')"),
    ('[dial]\nshort_codes = ["1x6"]\n', "field 'dial.short_codes[1]' must be 3 to 8 characters: digits, then 'x' "
                                        "for any digit (got '1x6')"),
    ('[dial]\nemergency = ["1"]\n', "field 'dial.emergency[1]' must be 2 to 6 digits (got '1')"),
    ('[dial]\noutside_line = "0"\nkeep_outside_line = true\nexternal_format = "e164"\n',
     "field 'dial.keep_outside_line' cannot put an outside line in front of +numbers (external_format 'e164') "
     "(got True)"),
    ('[[barring.rule]]\nname = "x"\ndescription = "y"\n', "field 'barring.rule[1].prefixes' is missing"),
    ('[[barring.rule]]\nname = "Premium"\ndescription = "y"\nprefixes = ["0900"]\n',
     "field 'barring.rule[1].name' must be lower-case letters, digits and '-' (got 'Premium')"),
    ('[[barring.rule]]\nname = "invalid"\ndescription = "y"\nprefixes = ["0900"]\n',
     "field 'barring.rule[1].name' must be unique and not one of emergency, internal, international, invalid, "
     "local, national, no-area-code, short-code (got 'invalid')"),
    ('[[barring.rule]]\nname = "p"\ndescription = "y"\nprefixes = ["+49900"]\n',
     "field 'barring.rule[1].prefixes' must be digits as dialed in the country, e.g. '0900' or '0041' "
     "(got '+49900')"),
    ('[[barring.rule]]\nname = "p"\ndescription = "y"\nprefixes = ["0049900"]\n',
     "field 'barring.rule[1].prefixes' never matches: numbers in country 49 are barred in national form ('0900') "
     "(got '0049900')"),
    ('[[barring.rule]]\nname = "p"\ndescription = "y"\nprefixes = ["00"]\nexcept = ["0900"]\n',
     "field 'barring.rule[1].except' must lie inside one of the rule's prefixes (got '0900')"),
    ('[[barring.rule]]\nname = "p"\ndescription = "y"\nprefixes = "0900"\n',
     """field 'barring.rule[1].prefixes' must be a list of strings, e.g. ["110", "112"] (got '0900')"""),
    ('[[barring.rule]]\nname = "p"\ndescription = "y"\nprefixes = ["0900"]\nlimit = 3\n',
     "field 'barring.rule[1].limit' is not known: use name, description, prefixes, except (got 3)"),
    ('[dial]\ncountry_code = "49"\n[dial]\n', "not valid TOML: "),
])
def test_a_bad_profile_names_file_and_field(tmp_path: Path, text: str, error: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load_dialplan(path)
    assert str(caught.value).startswith(f"{path}: {error}")


def test_profiles_by_name_or_file(tmp_path: Path) -> None:
    assert dialplan.builtin_dialplans() == ("de-default",)
    assert load_dialplan(Path(__file__).parents[2] / "templates" / "dialplans" / "de-default.toml") == DE
    with pytest.raises(UsageError, match=r"^unknown dial profile 'de-defualt': give a \.toml file or one of "
                                         r"de-default$"):
        load_dialplan("de-defualt")
    missing = tmp_path / "missing.toml"
    with pytest.raises(UsageError, match=rf"^{re.escape(str(missing))}: cannot read the dial profile: "):
        load_dialplan(str(missing))
    plain = load_dialplan(_write(tmp_path, ""))
    assert plain == DialPlan("site")  # every key optional; Germany's defaults, nothing barred


def test_barring_may_come_from_another_profile(tmp_path: Path) -> None:
    dial = _write(tmp_path, '[dial]\noutside_line = "0"\n', "dial.toml")
    plan = load_dialplan(dial, barring="de-default")
    assert plan.outside_line == "0"
    assert plan.bars == DE.bars
    assert decide("0 0900 123456", plan, DOMAIN).rule == "premium-0900"
    # checked against the emergency numbers of the dial profile
    emergency = _write(tmp_path, '[dial]\nemergency = ["1180"]\n', "emergency.toml")
    with pytest.raises(UsageError) as caught:
        load_dialplan(emergency, barring="de-default")
    assert str(caught.value) == ("templates/dialplans/de-default.toml: field 'barring.rule[8].prefixes' would bar "
                                 "emergency number 1180: emergency numbers are never barred (got '118') "
                                 "(with the dial rules of emergency)")


def test_the_shipped_profile_is_the_documented_one() -> None:
    assert DE.name == "de-default"
    assert (DE.national_prefix, DE.international_prefix, DE.country_code, DE.outside_line) == ("0", "00", "49", "")
    assert DE.internal_digits == (2, 5)
    assert DE.external_format is ExternalFormat.INTERNATIONAL
    assert DE.emergency_numbers == ("110", "112")
    assert DE.short_codes == ("115", "116xxx", "118xx", "118xxx")
    assert [(b.name, b.prefixes) for b in DE.bars] == [
        ("call-by-call-010", ("010",)), ("innovative-012", ("012",)), ("mass-calls-013", ("013",)),
        ("service-018", ("018",)), ("online-019", ("019",)), ("personal-0700", ("0700",)),
        ("premium-0900", ("0900",)), ("directory-118", ("118",)), ("abroad", ("00",)),
    ]
    assert DE.bars[-1].exceptions == ("0043", "0032", "00420", "0045", "0033", "00352", "0031", "0048", "0041")


# ---------------------------------------------------------------------------------------------------------------
# Renderers


def test_phonekit_profile_section_round_trips() -> None:
    berlin = replace(DE, name="berlin", area_code="30", description='quotes " and \\ and ümlauts')
    text = phonekit_dialplan_toml(berlin, allow=["+49 900 123", "0044"])
    assert text.startswith("[dialplan]\n")
    profile = tomllib.loads('[account]\nuser = "1001"\n\n' + text)
    assert embedded_dialplan(profile, "alice.toml") == (berlin, ("0900123", "0044"))
    assert embedded_dialplan({"account": {}}, "alice.toml") is None
    no_extensions = replace(DE, internal_digits=None)
    assert embedded_dialplan(tomllib.loads(phonekit_dialplan_toml(no_extensions)), "x") == (no_extensions, ())


def test_embedded_errors_name_the_dialplan_section() -> None:
    profile = tomllib.loads('[dialplan]\nallow = ["x"]\n[dialplan.dial]\ncountry_code = "049"\n')
    with pytest.raises(UsageError, match=r"^alice.toml: field 'dialplan.dial.country_code' must be 1 to 3 digits"):
        embedded_dialplan(profile, "alice.toml")
    profile = tomllib.loads('[dialplan]\nallow = ["x"]\n')
    with pytest.raises(UsageError, match=r"^alice.toml: field 'dialplan.allow' must be a number or prefix"):
        embedded_dialplan(profile, "alice.toml")


def test_linphone_keys() -> None:
    # dial_prefix stays empty: Linphone would turn 030 123456 into +49030123456 (see linphone_dial's docstring)
    assert linphone_dial(DE) == {"dial_prefix": "", "dial_escape_plus": "1"}
    assert linphone_dial(replace(DE, external_format=ExternalFormat.NATIONAL)) == {
        "dial_prefix": "", "dial_escape_plus": "1"}
    assert linphone_dial(replace(DE, external_format=ExternalFormat.E164)) == {
        "dial_prefix": "", "dial_escape_plus": "0"}


LINPHONE_DOMAIN = "dialplan.invalid"  # never resolves (RFC 6761): no call leaves the machine


def linphonec_dials(workdir: Path, keys: Mapping[str, str], numbers: Sequence[str]) -> list[str]:
    """The request URI Debian's linphonec (liblinphone 5.1) calls for each number, with ``keys`` in ``[proxy_0]``.

    The domain never resolves, so each call fails at once; the next starts when linphonec says so.
    """
    home = workdir / "home"
    (home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)  # liblinphone's database
    rc = workdir / "linphonerc"
    rc.write_text("[sip]\nsip_port=-1\ndefault_proxy=0\n\n[proxy_0]\nreg_proxy=<sip:127.0.0.1:9>\n"
                  f"reg_identity=sip:1001@{LINPHONE_DOMAIN}\nreg_sendregister=0\npublish=0\n"
                  + "".join(f"{key}={value}\n" for key, value in keys.items()))
    out = workdir / "linphonec.out"
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    process = Process("linphonec", [require("linphonec"), "-c", str(rc)], out, env=env, cwd=workdir,
                      stdin=subprocess.PIPE)
    stdin = process.popen.stdin
    assert stdin is not None

    def calls() -> list[str]:
        return re.findall(r"^Call \d+ with (sip:\S+) (?:error|ended)", out.read_text(errors="replace"), re.MULTILINE)

    def ended(count: int) -> Callable[[], bool]:
        return lambda: len(calls()) >= count

    try:
        for i, number in enumerate(numbers, 1):
            stdin.write(f"call {number}\n".encode())
            stdin.flush()
            process.wait_until(ended(i), 15.0, f"the end of the call to {number!r}")
        stdin.write(b"quit\n")
        stdin.flush()
    finally:
        process.stop()
    return calls()


@pytest.mark.testbed
def test_linphonec_dials_as_linphone_dial_says(tmp_path: Path) -> None:
    numbers = ["+49 30 123456", "0049 30 123456", "+43 1 234567", "0043 1 234567", "1234", "112", "116116"]
    dialed = linphonec_dials(tmp_path / "de", linphone_dial(DE), [*numbers, "030 123456"])
    assert dialed == [*(dialed_uri(n, DE) for n in numbers), f"sip:030123456@{LINPHONE_DOMAIN}"]  # national: as dialed
    e164 = replace(DE, external_format=ExternalFormat.E164)
    assert linphonec_dials(tmp_path / "e164", linphone_dial(e164), ["+49 30 123456", "+43 1 234567"]) == [
        dialed_uri("+49 30 123456", e164), dialed_uri("+43 1 234567", e164)]
    # Why dial_prefix stays empty: with it, Linphone keeps the national prefix and prefixes short codes.
    assert linphonec_dials(tmp_path / "prefix", {"dial_prefix": "49", "dial_escape_plus": "1"},
                           ["030 123456", "116116"]) == [f"sip:0049030123456@{LINPHONE_DOMAIN}",
                                                         f"sip:0049116116@{LINPHONE_DOMAIN}"]


def dialed_uri(number: str, plan: DialPlan) -> str:
    decision = decide(number, plan, LINPHONE_DOMAIN)
    assert isinstance(decision, Dial), decision
    return decision.uri


# MicroSIP's FormatNumber (global.cpp, 3.20.5 and 3.22.3 alike), followed step by step.

_MICROSIP_PSTN = frozenset("0123456789*#.-()/ ")


def _atl_to_python(atl: str) -> str:
    """ATL CAtlRegExp syntax (atlrx.h) as a Python pattern: {} capture, () only group, \\c escapes."""
    out, i = [], 0
    while i < len(atl):
        c = atl[i]
        if c == "\\":
            assert atl[i + 1] not in "abcdhnqwz", f"ATL abbreviation \\{atl[i + 1]} not emulated"
            out.append(re.escape(atl[i + 1]))
            i += 2
            continue
        if c == "[":
            end = atl.index("]", i)
            out.append(atl[i:end + 1])
            i = end + 1
            continue
        assert c not in "!$^", f"ATL operator {c!r} not emulated"
        out.append({"{": "(", "}": ")", "(": "(?:"}.get(c, c))
        i += 1
    return "".join(out)


def microsip_calls(dial_plan: str, number: str) -> str | None:
    """The user part MicroSIP calls for ``number``, or None when it calls nothing (invalid URI)."""
    if number.startswith("+") or all(c in _MICROSIP_PSTN for c in number):  # MSIP::IsPSTNNnmber
        number = "".join(c for c in number if c not in ".-()/ ")
    result = ""  # no rule matched: the number is emptied
    for token in (t for t in dial_plan.strip(" ()").split("|") if t):
        regex, replaces, group = "", [], None
        for c in token:
            if group is None and c == "<":
                group = ""
            elif group is not None:
                if c != ">":
                    group += c
                    continue
                if group:
                    match, colon, replacement = group.partition(":")
                    if colon:
                        regex += "{" + match + "}"
                        replaces.append(replacement)
                    else:
                        regex += match
                group = None
            else:
                regex += c
        regex = regex.replace(".", "*").replace("x", ".").replace("X", ".")
        found = re.fullmatch(_atl_to_python(regex), number, re.DOTALL)
        if found is None:
            continue
        result, previous = "", 0
        for index, replacement in enumerate(replaces, 1):
            result += number[previous:found.start(index)] + replacement
            previous = found.end(index)
        result += number[previous:]
        break
    # GetSIPURI: "sip:" + user (+ "@domain" unless there is an '@'); pjsip rejects an empty user part
    return None if not result or "@" in result else result


def test_the_emulator_follows_microsip() -> None:
    assert microsip_calls("", "0301234") is None
    assert microsip_calls("<0:0049>x.", "030 1234") == "0049301234"
    assert microsip_calls("<:0049301>[1-9]x.", "1234") == "00493011234"
    assert microsip_calls("11[025]", "112") == "112"
    assert microsip_calls("11[025]", "113") is None
    assert microsip_calls("<0900x.:@>|0x.", "0900123") is None
    assert microsip_calls("<0900x.:@>|0x.", "0800123") == "0800123"
    assert microsip_calls("[1-9]xx?x?x?", "123456") is None
    assert microsip_calls("<\\+49:0049>x.", "+49 30 1234") == "0049301234"


MICROSIP_DE = ("11[025]|116xxx|<118xx:@>|<\\+491[02389]x.:@>|<\\+49[79]00x.:@>|<\\+49:0049>x.|<\\+:00>4[1358]x.|"
               "<\\+:00>3[1-3]x.|<\\+:00>420x.|<\\+:00>352x.|004[1358]x.|003[1-3]x.|00420x.|00352x.|"
               "<01[02389]x.:@>|<0[79]00x.:@>|<0:0049>[1-9]x.|[1-9]xx?x?x?")


def test_microsip_dial_plan_of_the_german_default() -> None:
    assert microsip_dial_plan(DE) == MICROSIP_DE
    assert len(MICROSIP_DE) <= dialplan.MICROSIP_DIALPLAN_MAX


def _corpus(plan: DialPlan, allow: tuple[str, ...] = ()) -> list[str]:
    """Numbers that start with every prefix the plan knows, followed by a few tails."""
    heads = {"", "+", plan.national_prefix, plan.international_prefix, plan.outside_line,
             "+" + plan.country_code, plan.international_prefix + plan.country_code, *plan.emergency_numbers,
             *(code.rstrip("x") for code in plan.short_codes), *check_allow(allow, plan)}
    for bar in plan.bars:
        heads |= {*bar.prefixes, *bar.exceptions}
    views = {plan.national_prefix: ("+" + plan.country_code, plan.international_prefix + plan.country_code)}
    for head in list(heads):  # barring prefixes in every form they can be dialed
        for view, forms in views.items():
            if head.startswith(view):
                heads |= {form + head[len(view):] for form in forms}
        if head.startswith(plan.international_prefix):
            heads.add("+" + head[len(plan.international_prefix):])
    heads |= {plan.outside_line + h for h in list(heads) if not h.startswith("+")}
    tails = ["", "0", "1", "12", "123", "1234", "12345", "123456", "1234567", "98765432", "0123456789"]
    return sorted({head + tail for head in heads for tail in tails})


def _agrees(plan: DialPlan, text: str, number: str, allow: tuple[str, ...] = (), some_allowed: bool = False) -> None:
    """MicroSIP never calls what decide() bars, and calls what it dials the same, but for what is left out to fit."""
    decision = decide(number, plan, DOMAIN, allow)
    called = microsip_calls(text, number)
    if isinstance(decision, Dial):
        home_abroad = plan.outside_line + plan.international_prefix + plan.country_code
        if called is None and decision.rule == "national" and number.startswith(home_abroad):
            return  # numbers at home written as 0049…
        if called is None and some_allowed and decision.allowed_by:
            return  # allow entries in forms other than the entry's own
        assert called == decision.normalized, f"{number!r}: MicroSIP calls {called!r}, decide() {decision}"
    elif decision.rule not in (INVALID, NO_AREA_CODE):
        assert called is None, f"{number!r}: MicroSIP calls {called!r}, decide() {decision}"


def test_microsip_agrees_with_decide_on_the_german_default() -> None:
    corpus = _corpus(DE)
    assert len(corpus) > 500
    for number in corpus:
        _agrees(DE, MICROSIP_DE, number)
    assert microsip_calls(MICROSIP_DE, "0049 30 123456") is None  # the form left out to fit 255 characters


def test_microsip_takes_a_users_allow_list(caplog: pytest.LogCaptureFixture) -> None:
    allow = ("+44", "0900 123")
    plan = replace(DE, bars=(*DE.bars[:-1], BarRule("abroad", "international calls", ("00",))))
    text = microsip_dial_plan(plan, allow)
    assert text.startswith("11[025]|116xxx|<118xx:@>|<\\+49:0049>900123x.|")
    for number in _corpus(plan, allow):
        _agrees(plan, text, number, allow)
    assert microsip_calls(text, "+49 900 123 456") == "0049900123456"
    # With the whole German default, the entries apply only to numbers dialed as the entries are written.
    text = microsip_dial_plan(DE, allow)
    assert text == MICROSIP_DE.replace("004[1358]x.", "004[13-58]x.").replace(
        "<01[02389]", "<0:0049>900123x.|<01[02389]")
    assert "leaves out numbers at home dialed as 0049…, and the allow entries for numbers dialed with + or 0049" \
        in caplog.text
    for number in _corpus(DE, allow):
        _agrees(DE, text, number, allow, some_allowed=True)
    assert microsip_calls(text, "0900 123 456") == "0049900123456"
    assert microsip_calls(text, "0044 20 1234 5678") == "00442012345678"
    assert microsip_calls(text, "+49 900 123 456") is None
    assert microsip_calls(text, "+44 20 1234 5678") is None


def test_microsip_with_outside_line_local_numbers_and_e164() -> None:
    plans = [
        DialPlan("pbx", outside_line="0", internal_digits=(3, 4), area_code="89",
                 bars=(BarRule("premium", "premium numbers", ("0900",)),
                       BarRule("abroad", "foreign numbers", ("00",), ("0043",)))),
        DialPlan("pbx-kept", outside_line="9", keep_outside_line=True, external_format=ExternalFormat.NATIONAL,
                 short_codes=("116xxx",), bars=(BarRule("premium", "premium numbers", ("0900", "116")),)),
        DialPlan("plus", area_code="221", external_format=ExternalFormat.E164, internal_digits=None,
                 bars=(BarRule("mobile", "mobile numbers", ("015", "016", "017")),)),
    ]
    for plan in plans:
        text = microsip_dial_plan(plan)
        assert len(text) <= dialplan.MICROSIP_DIALPLAN_MAX
        for number in _corpus(plan):
            _agrees(plan, text, number)


def test_microsip_refuses_a_plan_that_does_not_fit() -> None:
    many = tuple(BarRule(f"r{i}", "numbers", (f"0{i}{i}",)) for i in range(1, 10))
    countries = BarRule("abroad", "foreign numbers", ("00",), tuple(f"00{c}" for c in range(210, 240, 3)))
    with pytest.raises(UsageError, match=r"^dial plan 'big' needs \d+ characters as a MicroSIP dialPlan; MicroSIP "
                                         r"reads at most 255"):
        microsip_dial_plan(DialPlan("big", bars=(*many, countries)))


# ---------------------------------------------------------------------------------------------------------------
# The command line


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="phonekit")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.handler is run
    code: int = run(args)
    return code


def test_cli_dials(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["dialplan", "test", "--profile", "de-default", "+49", "30", "123456"]) == 0
    assert capsys.readouterr().out == "dial sip:004930123456@example.com (rule 'national')\n"
    assert _cli(["dialplan", "test", "--profile", "de-default", "--domain", "pbx.example.org:5061", "1234"]) == 0
    assert capsys.readouterr().out == "dial sip:1234@pbx.example.org:5061 (rule 'internal')\n"


def test_cli_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["dialplan", "test", "--profile", "de-default", "0900 123456"]) == 1
    assert capsys.readouterr().out == "refused: premium-rate 0900 numbers are barred (rule 'premium-0900')\n"
    assert _cli(["dialplan", "test", "--profile", "de-default", "0900 123456", "--allow", "0900"]) == 0
    assert capsys.readouterr().out == ("dial sip:0049900123456@example.com (rule 'national'), allowed by the user's "
                                       "entry '0900' despite rule 'premium-0900'\n")


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["dialplan", "test", "--profile", "de-default", "--json", "11833"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "profile": "de-default", "number": "11833", "decision": "refused", "rule": "directory-118",
        "reason": "directory enquiries 118xx (charged, and they connect onwards) are barred (rule 'directory-118')"}
    assert _cli(["dialplan", "test", "--profile", "de-default", "--json", "112"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "profile": "de-default", "number": "112", "decision": "dial", "uri": "sip:112@example.com",
        "normalized": "112", "rule": "emergency", "bypassed": "", "allowed_by": ""}


def test_cli_bad_input_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = _write(tmp_path, HOSTILE, "hostile.toml")
    assert _cli(["dialplan", "test", "--profile", str(profile), "110"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"phonekit: error: {profile}: field 'barring.rule[2].prefixes' would bar emergency "
                            "number 110: emergency numbers are never barred (got '1')\n")
    assert _cli(["dialplan", "test", "--profile", "nowhere", "110"]) == 2
    assert capsys.readouterr().err.startswith("phonekit: error: unknown dial profile 'nowhere'")
    assert _cli(["dialplan", "test", "--profile", "de-default", "--domain", "a b", "110"]) == 2
    assert capsys.readouterr().err == "phonekit: error: domain must be host[:port] as in a SIP URI (got 'a b')\n"
    assert _cli(["dialplan", "test", "--profile", "de-default", "--allow", "abc", "110"]) == 2
    assert "allow entry must be a number or prefix" in capsys.readouterr().err


def test_cli_takes_barring_from_another_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    open_plan = _write(tmp_path, "", "open.toml")
    assert _cli(["dialplan", "test", "--profile", str(open_plan), "0900 123456"]) == 0
    capsys.readouterr()
    assert _cli(["dialplan", "test", "--profile", str(open_plan), "--barring", "de-default", "0900 123456"]) == 1


def test_public_api_is_all() -> None:
    public = {name for name in vars(dialplan) if not name.startswith("_")}
    assert set(dialplan.__all__) <= public
    assert all(hasattr(dialplan, name) for name in dialplan.__all__)


# ---------------------------------------------------------------------------------------------------------------
# Properties

_SEPARATOR = st.text(alphabet=" \t\u00a0\u2009-./()\u2013", max_size=3)


@st.composite
def _formatted(draw: st.DrawFn, number: str) -> str:
    """``number`` with arbitrary separators and white space around and between its characters."""
    return draw(_SEPARATOR) + "".join(c + draw(_SEPARATOR) for c in number)


_PHONE_LIKE = st.one_of(
    st.from_regex(r"\+?[0-9]{0,18}", fullmatch=True),
    st.builds(lambda head, tail: head + tail,
              st.sampled_from(["+49", "0049", "0", "00", "+", "+43", "0043", "1", "11", "116", "118", "0900",
                               "010", "0180", "+49900", "+1"]),
              st.from_regex(r"[0-9]{0,12}", fullmatch=True)),
)


@st.composite
def _plans(draw: st.DrawFn) -> DialPlan:
    national = draw(st.sampled_from(["0", "1", "8"]))
    rules = []
    for i in range(draw(st.integers(0, 3))):
        prefixes = draw(st.lists(st.from_regex(r"[0-9]{1,4}", fullmatch=True), min_size=1, max_size=3))
        exceptions = [p + draw(st.from_regex(r"[0-9]{1,2}", fullmatch=True))
                      for p in prefixes if draw(st.booleans())]
        rules.append(BarRule(f"rule-{i}", f"numbers of rule {i}", tuple(prefixes), tuple(exceptions)))
    low = draw(st.integers(1, 4))
    try:
        return DialPlan(
            "random",
            country_code=draw(st.sampled_from(["49", "1", "43", "352", "7"])),
            national_prefix=national,
            international_prefix=draw(st.sampled_from(["00", "011", "0011", "810", "99"])),
            area_code=draw(st.sampled_from(["", "30", "89", "221", "5"])),
            outside_line=draw(st.sampled_from(["", "", "0", "9"])),
            keep_outside_line=draw(st.booleans()),
            internal_digits=draw(st.sampled_from([None, (low, low), (low, low + 2)])),
            external_format=draw(st.sampled_from(list(ExternalFormat))),
            emergency=tuple(draw(st.lists(st.sampled_from(["110", "112", "911", "000", "999", "19222"]),
                                          max_size=3, unique=True))),
            short_codes=tuple(draw(st.lists(st.from_regex(r"[2-7][0-9]{1,3}x{0,3}", fullmatch=True),
                                            max_size=2, unique=True).filter(lambda c: all(3 <= len(x) <= 8
                                                                                           for x in c)))),
            bars=tuple(rules),
        )
    except ValueError:
        assume(False)
        raise


@settings(max_examples=400, deadline=None)
@given(number=st.one_of(st.text(), _PHONE_LIKE, _PHONE_LIKE.flatmap(_formatted)), plan=_plans(),
       allow=st.lists(st.one_of(st.text(max_size=6), _PHONE_LIKE), max_size=2))
def test_decide_never_raises_and_dials_only_valid_uris(number: str, plan: DialPlan, allow: list[str]) -> None:
    for candidate in (plan, DE):
        decision = decide(number, candidate, DOMAIN, allow)
        if isinstance(decision, Dial):
            assert is_sip_uri(decision.uri), decision
            assert decision.uri == f"sip:{decision.normalized}@{DOMAIN}"
            assert re.fullmatch(r"\+?[0-9]+", decision.normalized)
        else:
            assert isinstance(decision, Refused) and decision.rule and decision.reason


@settings(max_examples=300, deadline=None)
@given(prefixes=st.lists(st.from_regex(r"[0-9]{1,4}", fullmatch=True).filter(lambda p: not p.startswith("0049")),
                         min_size=1, max_size=6),
       emergency=st.lists(st.sampled_from(["110", "112", "911", "000", "19222"]), max_size=2, unique=True),
       data=st.data())
def test_emergency_numbers_are_never_refused(prefixes: list[str], emergency: list[str], data: st.DataObject) -> None:
    rule = BarRule("hostile", "everything", tuple(prefixes))
    numbers = tuple(dict.fromkeys((*emergency, "112")))
    covered = any(n.startswith(p) for n in numbers for p in prefixes)
    try:
        plan = DialPlan("hostile", emergency=tuple(emergency), bars=(rule,))
    except ValueError as exc:
        assert covered, exc
        assert "would bar emergency number" in str(exc)
        plan = _forced(DialPlan("hostile", emergency=tuple(emergency)), bars=(rule,))
    else:
        assert not covered
    for number in numbers:
        typed = data.draw(_formatted(number))
        decision = decide(typed, plan, DOMAIN)
        assert decision == Dial(f"sip:{number}@{DOMAIN}", number, "emergency"), typed


@settings(max_examples=200, deadline=None)
@given(plan=_plans(), data=st.data())
def test_emergency_numbers_of_random_plans_are_dialed(plan: DialPlan, data: st.DataObject) -> None:
    for number in plan.emergency_numbers:
        decision = decide(data.draw(_formatted(number)), plan, DOMAIN)
        assert isinstance(decision, Dial) and decision.rule == "emergency"
        assert decision.normalized.endswith(number)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(plan=_plans(), number=_PHONE_LIKE)
def test_dialing_the_normalized_form_dials_the_same(plan: DialPlan, number: str) -> None:
    # Holds where the normalized form is itself dialable: no outside line, or one the PBX gets too.
    assume(not plan.outside_line or plan.keep_outside_line)
    first = decide(number, plan, DOMAIN)
    if isinstance(first, Dial):
        again = decide(first.normalized, plan, DOMAIN)
        assert isinstance(again, Dial), (first, again)
        assert again.uri == first.uri


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(plan=_plans(), numbers=st.lists(_PHONE_LIKE, min_size=20, max_size=20),
       allow=st.lists(st.from_regex(r"\+?[0-9]{1,6}", fullmatch=True), max_size=2))
def test_microsip_agrees_with_decide_on_random_plans(plan: DialPlan, numbers: list[str], allow: list[str]) -> None:
    try:
        text = microsip_dial_plan(plan, allow)
    except UsageError:
        assume(False)
        raise
    assert len(text) <= dialplan.MICROSIP_DIALPLAN_MAX
    entries = tuple(allow)
    for number in [*numbers, *_corpus(plan, entries)]:
        _agrees(plan, text, number, entries, some_allowed=True)
