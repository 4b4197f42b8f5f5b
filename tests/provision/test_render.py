"""The renderer: every client file renders, hostile values survive each format, errors name template and line.

Each format is read back the way its client reads it (tomllib and load_profile for the phonekit
profile, liblinphone's lpconfig rules, an XML parser, Windows' GetPrivateProfileString rules and
configparser for MicroSIP, libre's parameter rules for baresip); the real clients read the same
files in test_real_clients.py.
"""

from __future__ import annotations

import configparser
import os
import re
import sys
import time
import tomllib
import types
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from diagnostics.errors import UsageError
from diagnostics.profile import load_profile
from diagnostics.secret import Secret
from provision.model import CLIENT_FILES, Client, Machine, SrtpMode
from provision.render import (
    CODECS,
    RenderedFile,
    TemplateFailure,
    clear_caches,
    ini_value,
    lpc_value,
    parse_linphonerc,
    render_machine,
    sip_quote,
    toml_str,
    xml,
)

PASSWORD = "s3cr3t pw=#é"
HOSTILE_NAME = 'Alice "Al" = ; <x> & é \\ #'

# The client forms of a dial plan, as provision.dialplan's contract says (render.py only passes them on).
STUB_PLANS = {
    "de-default": {
        "microsip": "0<:+49>xx.|<00:+>x.|xxxx",
        "linphone": {"dial_prefix": "49", "dial_escape_plus": "1"},
        "phonekit_toml": '[dialplan]\nname = "de-default"\n',
    },
}


@pytest.fixture(autouse=True)
def stub_dialplan(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """A stand-in provision.dialplan: these tests are about the renderer, not the dial rules."""
    module = types.ModuleType("provision.dialplan")
    module.load_dialplan = lambda name, barring=None: STUB_PLANS[name]  # type: ignore[attr-defined]
    module.microsip_dial_plan = lambda plan, allow=(): plan["microsip"]  # type: ignore[attr-defined]
    module.linphone_dial = lambda plan: plan["linphone"]  # type: ignore[attr-defined]
    module.phonekit_dialplan_toml = lambda plan, allow=(): plan["phonekit_toml"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "provision.dialplan", module)
    clear_caches()
    yield module
    clear_caches()


def machine(**changes: Any) -> Machine:
    base = Machine(
        hostname="pc-017",
        user="alice",
        display_name="Alice Example",
        extension="1003",
        domain="example.com",
        registrar="sip.example.com:5060",
        password=Secret(PASSWORD),
        stun_server="stun.example.com:3478",
        echo_extension="9196",
        input_device="Jabra Link 380",
        output_device="Jabra Link 380",
        clients=tuple(Client),
        row=14,
    )
    return replace(base, **changes)


def by_path(files: list[RenderedFile]) -> dict[str, RenderedFile]:
    return {f.path: f for f in files}


def write_private(folder: Path, file: RenderedFile) -> Path:
    """Write as the output stage does: 0600 for secret files, bytes from encode()."""
    path = folder / file.path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if file.secret else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(file.encode())
    return path


# --- how each client reads its file (the rules cited in render.py and the templates) ---


def windows_ini(data: bytes) -> dict[str, dict[str, str]]:
    """GetPrivateProfileString: UTF-16 with BOM, value trimmed, one pair of enclosing quotes removed."""
    assert data.startswith(b"\xff\xfe"), "MicroSIP.ini must be UTF-16LE with a BOM"
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in data[2:].decode("utf-16-le").split("\r\n"):
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        elif "=" in line and not line.startswith(";"):
            key, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            current[key.strip()] = value
    return sections


def baresip_param(line: str, name: str) -> str | None:
    """libre msg_param_decode: ';name=' then [~ \\t\\r\\n;]+ (quote-aware, enclosing quotes stripped)."""
    match = re.search(rf";[ \t]*{name}[ \t]*=[ \t]*", line)
    if match is None:
        return None
    value, quote, escape = "", False, False
    for ch in line[match.end() :]:
        if escape:
            escape = False
        elif ch == "\\":
            escape = True
        elif ch == '"':
            quote = not quote
        elif not quote and ch in " \t\r\n;":
            break
        value += ch
    if len(value) > 1 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


# ----------------------------------------------------------------------------------------------- tests


def test_every_client_file_renders_in_contract_order_with_secret_flags() -> None:
    files = render_machine(machine())
    expected = [output for client in Client for _, output in CLIENT_FILES[client]]
    assert [f.path for f in files] == expected
    secret = {f.path: f.secret for f in files}
    assert secret == {"phonekit.toml": True, "linphonerc": True, "linphone.xml": True, "baresip/accounts": True,
                      "baresip/config": False, "MicroSIP.ini": True}  # fmt: skip
    for f in files:
        assert (PASSWORD in (f.content if f.path != "MicroSIP.ini" else windows_ini(f.encode())["Account1"]["password"])
                ) is f.secret  # fmt: skip


def test_clients_argument_selects_and_orders() -> None:
    files = render_machine(machine(), clients=[Client.MICROSIP, Client.PHONEKIT])
    assert [f.path for f in files] == ["MicroSIP.ini", "phonekit.toml"]


def test_redacted_render_never_holds_the_password_and_keeps_the_flags() -> None:
    real = render_machine(machine())
    dry = render_machine(machine(), redact=True)
    assert [(f.path, f.secret) for f in dry] == [(f.path, f.secret) for f in real]
    for f in dry:
        assert PASSWORD not in f.content
        assert PASSWORD.encode("utf-16-le") not in f.encode()
        if f.secret:
            assert "***" in f.content


def test_generated_profile_loads_and_carries_everything(tmp_path: Path) -> None:
    m = machine(display_name=HOSTILE_NAME, srtp=SrtpMode.MANDATORY, codecs=("speex/16000", "G722", "PCMU"))
    path = write_private(tmp_path, render_machine(m, clients=[Client.PHONEKIT])[0])
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    profile = load_profile(path)
    assert (profile.user, profile.domain, profile.digest_user) == ("1003", "example.com", "1003")
    assert profile.display_name == HOSTILE_NAME
    assert profile.password.reveal() == PASSWORD
    assert str(profile.registrar) == "sip.example.com:5060" and profile.transport.value == "udp"
    assert str(profile.stun_server) == "stun.example.com:3478"
    assert profile.echo_extension == "9196"
    assert profile.codecs == ("speex/16000", "G722", "PCMU") and profile.srtp == "mandatory"
    assert (profile.input_device, profile.output_device) == ("Jabra Link 380", "Jabra Link 380")
    assert profile.dialplan == {"name": "de-default"}


def test_profile_of_a_minimal_machine_loads(tmp_path: Path) -> None:
    m = machine(display_name="", stun_server="", echo_extension="", input_device="", output_device="",
                auth_user="a-1003")  # fmt: skip
    profile = load_profile(write_private(tmp_path, by_path(render_machine(m))["phonekit.toml"]))
    assert (profile.display_name, profile.stun_server, profile.echo_extension) == ("", None, None)
    assert profile.digest_user == "a-1003"


def test_a_readable_profile_with_inline_password_is_refused(tmp_path: Path) -> None:
    """Why the output stage must honour ``secret``: load_profile refuses the file otherwise."""
    path = tmp_path / "phonekit.toml"
    path.write_text(by_path(render_machine(machine()))["phonekit.toml"].content)
    path.chmod(0o644)
    with pytest.raises(UsageError, match="readable by others"):
        load_profile(path)


def test_hostile_display_name_and_password_survive_every_format() -> None:
    password = "p w\\d =#<&> 'é"  # everything but '"' and ';' (baresip cannot carry them) and line breaks
    m = machine(display_name=HOSTILE_NAME, password=Secret(password), input_device='Mic "1" ;x')
    files = by_path(render_machine(m, clients=[Client.PHONEKIT, Client.LINPHONE, Client.MICROSIP]))
    files |= by_path(render_machine(replace(m, input_device=""), clients=[Client.BARESIP]))

    toml = tomllib.loads(files["phonekit.toml"].content)
    assert toml["account"]["display_name"] == HOSTILE_NAME and toml["account"]["password"] == password
    assert toml["audio"]["input"] == 'Mic "1" ;x'

    rc = {name: dict(entries) for name, entries in parse_linphonerc(files["linphonerc"].content)}
    assert rc["proxy_0"]["reg_identity"] == f"{sip_quote(HOSTILE_NAME)} <sip:1003@example.com>"
    assert rc["auth_info_0"]["passwd"] == password
    assert rc["sound"]["capture_dev_id"] == 'Mic "1" ;x'

    ns = {"lp": "http://www.linphone.org/xsds/lpconfig.xsd"}
    root = ET.fromstring(files["linphone.xml"].content.encode())
    from_xml = {s.get("name"): {e.get("name"): e.text for e in s.findall("lp:entry", ns)}
                for s in root.findall("lp:section", ns)}  # fmt: skip
    assert from_xml == rc
    assert all(e.get("overwrite") == "true" for e in root.iter(f"{{{ns['lp']}}}entry"))

    ini = windows_ini(files["MicroSIP.ini"].encode())
    assert ini["Account1"]["password"] == password
    assert ini["Account1"]["displayName"] == 'Alice \\"Al\\" = ; <x> & é \\\\ #'  # MicroSIP adds the quotes
    assert ini["Account1"]["label"] == HOSTILE_NAME
    assert ini["Settings"]["audioInputDevice"] == 'Mic "1" ;x'

    accounts = files["baresip/accounts"].content.splitlines()
    line = accounts[-1]
    assert len(accounts) == 3 and accounts[0].startswith("#") and line.startswith(sip_quote(HOSTILE_NAME) + " <sip:")
    assert baresip_param(line, "auth_pass") == password
    assert baresip_param(line, "regint") == "600"
    assert baresip_param(line, "outbound") == "sip:sip.example.com:5060;transport=udp"


def test_quotes_in_a_password_reach_every_client_but_baresip() -> None:
    m = machine(password=Secret('a"b'))
    files = by_path(render_machine(m, clients=[Client.PHONEKIT, Client.LINPHONE, Client.MICROSIP]))
    assert tomllib.loads(files["phonekit.toml"].content)["account"]["password"] == 'a"b'
    assert dict(dict(parse_linphonerc(files["linphonerc"].content))["auth_info_0"])["passwd"] == 'a"b'
    assert windows_ini(files["MicroSIP.ini"].encode())["Account1"]["password"] == 'a"b'
    with pytest.raises(
        TemplateFailure,
        match=r"^template 'baresip/accounts\.j2' line \d+: a baresip account line "
        r"cannot carry '\"' in a value \(machine 'pc-017', inventory row 14\)$",
    ):
        render_machine(m, clients=[Client.BARESIP])


def test_device_name_baresip_cannot_carry_is_refused_naming_template_and_line() -> None:
    with pytest.raises(TemplateFailure) as caught:
        render_machine(machine(input_device='Mic "1"'), clients=[Client.BARESIP])
    assert str(caught.value) == (
        "template 'baresip/config.j2' line 20: baresip's config cannot carry '\"' in a value "
        "(machine 'pc-017', inventory row 14)"
    )


@pytest.mark.parametrize("client", list(Client))
def test_a_password_with_a_line_break_is_refused_and_never_shown(client: Client) -> None:
    password = 'line1\nline2;"x'
    try:
        files = render_machine(machine(password=Secret(password)), clients=[client])
    except TemplateFailure as exc:
        assert "line1" not in str(exc) and "line2" not in str(exc)
        assert re.match(rf"template '{client.value}/[^']+' line \d+: .+ \(machine 'pc-017', inventory row 14\)$",
                        str(exc))  # fmt: skip
        return
    # Only TOML can carry a line break (escaped): the profile reads it back exactly.
    assert client is Client.PHONEKIT
    assert tomllib.loads(files[0].content)["account"]["password"] == password


def test_microsip_ini_is_utf16_with_bom_and_crlf_and_parses() -> None:
    file = by_path(render_machine(machine(display_name="Jürgen Müller")))["MicroSIP.ini"]
    assert (file.encoding, file.newline) == ("utf-16", "\r\n")
    data = file.encode()
    assert (
        data[:2] == b"\xff\xfe"
        and "\r\n".encode("utf-16-le") in data
        and b"\n\x00" not in data.replace("\r\n".encode("utf-16-le"), b"")
    )
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(data[2:].decode("utf-16-le"))
    assert parser["Account1"]["displayName"] == "Jürgen Müller"
    assert parser["Settings"]["accountId"] == "1"


def test_microsip_value_longer_than_its_buffer_is_refused(stub_dialplan: types.ModuleType) -> None:
    STUB_PLANS["long"] = dict(STUB_PLANS["de-default"], microsip="x" * 256)
    try:
        with pytest.raises(TemplateFailure, match=r"microsip/MicroSIP\.ini\.j2' line \d+: value too long for this "
                                                  r"key: 256 characters, the reader keeps 255"):  # fmt: skip
            render_machine(machine(dial_profile="long"), clients=[Client.MICROSIP])
    finally:
        del STUB_PLANS["long"]


def test_unknown_codec_names_the_template_and_machine() -> None:
    with pytest.raises(TemplateFailure, match=r"template 'linphone/linphonerc\.j2' line \d+: codec 'G729' is not "
                                              r"one the templates know \(known: opus, G722, PCMA, PCMU, GSM, iLBC, "
                                              r"speex/8000, speex/16000, speex/32000\) "
                                              r"\(machine 'pc-017', inventory row 14\)"):  # fmt: skip
        render_machine(machine(codecs=("G722", "G729")), clients=[Client.LINPHONE])


def test_baresip_account_line_too_long_for_baresip_is_refused() -> None:
    with pytest.raises(TemplateFailure, match=r"at most 511 bytes \(this one: \d+\)"):
        render_machine(machine(display_name="A" * 400), clients=[Client.BARESIP])


def test_codecs_reach_every_client_in_order() -> None:
    m = machine(codecs=("PCMU", "opus"), srtp=SrtpMode.OPTIONAL)
    files = by_path(render_machine(m, clients=[Client.LINPHONE, Client.BARESIP, Client.MICROSIP]))
    assert "audio_codecs=PCMU/8000/1,opus/48000/2;" in files["baresip/accounts"].content
    assert ";mediaenc=srtp;" in files["baresip/accounts"].content
    config = files["baresip/config"].content
    assert config.index("module g711.so") < config.index("module opus.so") and "module srtp.so" in config
    rc = dict(parse_linphonerc(files["linphonerc"].content))
    assert dict(rc["audio_codec_0"]) == {"mime": "PCMU", "rate": "8000", "channels": "1", "enabled": "1"}
    assert dict(rc["audio_codec_1"]) == {"mime": "opus", "rate": "48000", "channels": "2", "enabled": "1"}
    assert "audio_codec_2" not in rc and dict(rc["misc"])["add_missing_audio_codecs"] == "0"
    assert dict(rc["sip"])["media_encryption"] == "srtp"
    ini = windows_ini(files["MicroSIP.ini"].encode())
    assert ini["Settings"]["audioCodecs"] == "PCMU/8000/1 opus/48000/2"
    assert ini["Account1"]["SRTP"] == "optional"


def test_dial_plan_forms_reach_their_clients() -> None:
    files = by_path(render_machine(machine()))
    proxy = dict(dict(parse_linphonerc(files["linphonerc"].content))["proxy_0"])
    assert (proxy["dial_prefix"], proxy["dial_escape_plus"]) == ("49", "1")
    assert windows_ini(files["MicroSIP.ini"].encode())["Account1"]["dialPlan"] == "0<:+49>xx.|<00:+>x.|xxxx"
    assert tomllib.loads(files["phonekit.toml"].content)["dialplan"] == {"name": "de-default"}


# ------------------------------------------------------------------------------------- site templates


def site(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "site" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "site"


def test_undefined_variable_names_template_line_and_variable(tmp_path: Path) -> None:
    folder = site(tmp_path, {"baresip/accounts.j2": "# one\n# two\n<sip:{{ extensoin }}@{{ domain }}>\n"})
    with pytest.raises(TemplateFailure) as caught:
        render_machine(machine(), clients=[Client.BARESIP], site_templates=folder)
    assert str(caught.value) == "template 'baresip/accounts.j2' line 3: 'extensoin' is undefined"
    assert isinstance(caught.value, UsageError)
    assert (caught.value.template, caught.value.line) == ("baresip/accounts.j2", 3)


def test_undefined_variable_in_an_included_partial_names_the_partial(tmp_path: Path) -> None:
    folder = site(tmp_path, {"baresip/accounts.j2": "a\n{% include 'baresip/_head.j2' %}\n",
                             "baresip/_head.j2": "x\ny\n{{ nope }}\n"})  # fmt: skip
    with pytest.raises(TemplateFailure, match=r"^template 'baresip/_head\.j2' line 3: 'nope' is undefined$"):
        render_machine(machine(), clients=[Client.BARESIP], site_templates=folder)


def test_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    folder = site(tmp_path, {"microsip/MicroSIP.ini.j2": "[Settings]\n{% if %}\n"})
    with pytest.raises(TemplateFailure, match=r"^template 'microsip/MicroSIP\.ini\.j2' line 2: syntax error: "):
        render_machine(machine(), clients=[Client.MICROSIP], site_templates=folder)


def test_site_template_overrides_extends_and_adds_files(tmp_path: Path) -> None:
    ca = tmp_path / "site-ca.pem"
    ca.write_text("not checked here\n")
    folder = site(tmp_path, {
        # extends the packaged profile, replacing one block
        "phonekit/profile.toml.j2": '{% extends "builtin:phonekit/profile.toml.j2" %}\n'
                                    '{% block tls %}\n\n[tls]\nca_file = {{ "' + str(ca) + '"|toml_str }}\n'
                                    '{% endblock %}\n',
        # replaces a packaged template outright
        "baresip/config.j2": "# site config for {{ hostname }}\n",
        # adds files: one with the password (secret), one without; a partial renders to nothing
        "baresip/contacts.j2": "{% include 'baresip/_contact.j2' %}",
        "baresip/_contact.j2": "<sip:{{ echo_extension }}@{{ domain }}>;presence=p2p\n",
        "linphone/friends.xml.j2": "<p>{{ password.reveal()|xml }}</p>\n",
    })  # fmt: skip
    files = by_path(render_machine(machine(), site_templates=folder))
    assert list(files) == ["phonekit.toml", "linphonerc", "linphone.xml", "friends.xml", "baresip/accounts",
                           "baresip/config", "baresip/contacts", "MicroSIP.ini"]  # fmt: skip
    profile = tomllib.loads(files["phonekit.toml"].content)
    assert profile["tls"] == {"ca_file": str(ca)} and profile["account"]["user"] == "1003"
    assert files["baresip/config"].content == "# site config for pc-017\n"
    assert files["baresip/contacts"].content == "<sip:9196@example.com>;presence=p2p\n"
    assert (files["baresip/contacts"].secret, files["friends.xml"].secret) == (False, True)
    assert files["friends.xml"].content == "<p>s3cr3t pw=#é</p>\n"


def test_two_templates_writing_one_file_is_an_error(tmp_path: Path) -> None:
    folder = site(tmp_path, {"linphone/MicroSIP.ini.j2": "x\n"})
    with pytest.raises(TemplateFailure, match=r"template 'microsip/MicroSIP\.ini\.j2': writes 'MicroSIP\.ini', "
                                              r"which 'linphone/MicroSIP\.ini\.j2' already writes"):  # fmt: skip
        render_machine(machine(), site_templates=folder)


@pytest.mark.parametrize("expression", ["password._secret", "''.__class__.__mro__", "password.reveal.__globals__"])
def test_sandbox_keeps_templates_away_from_internals(tmp_path: Path, expression: str) -> None:
    folder = site(tmp_path, {"phonekit/profile.toml.j2": "x\n{{ " + expression + " }}\n"})
    with pytest.raises(TemplateFailure, match=r"^template 'phonekit/profile\.toml\.j2' line 2: .*unsafe"):
        render_machine(machine(), clients=[Client.PHONEKIT], site_templates=folder)


def test_printing_the_password_object_shows_nothing(tmp_path: Path) -> None:
    folder = site(tmp_path, {"phonekit/profile.toml.j2": "{{ password }}\n"})
    [file] = render_machine(machine(), clients=[Client.PHONEKIT], site_templates=folder)
    assert (file.content, file.secret) == ("***\n", False)


def test_missing_site_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="site template folder does not exist"):
        render_machine(machine(), site_templates=tmp_path / "nope")


def test_ten_thousand_machines_render_well_under_ten_seconds() -> None:
    """Budget: 10,000 machines x 4 clients in < 10 s; here a tenth of them in < 1 s (measured ~0.3 s)."""
    machines = [machine(hostname=f"pc-{i}", extension=str(2000 + i), password=Secret(f"pw-{i}")) for i in range(1000)]
    render_machine(machines[0])
    start = time.perf_counter()
    count = sum(len(render_machine(m)) for m in machines)
    elapsed = time.perf_counter() - start
    assert count == 6000
    assert elapsed < 1.0, f"1,000 machines took {elapsed:.2f} s"


# -------------------------------------------------------------------------------------------- filters


@given(st.text())
def test_toml_str_round_trips_any_text(text: str) -> None:
    assert tomllib.loads(f"v = {toml_str(text)}")["v"] == text


@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0")))
def test_ini_value_round_trips_through_windows_rules(text: str) -> None:
    line = "k=" + ini_value(text)
    assert windows_ini(b"\xff\xfe" + f"[S]\r\n{line}\r\n".encode("utf-16-le"))["S"]["k"] == text


@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0")).map(str.rstrip))
def test_lpc_value_round_trips_through_lpconfig_rules(text: str) -> None:
    if text:  # lpconfig ignores an empty value
        assert parse_linphonerc(f"[s]\nk={lpc_value(text)}\n") == [("s", [("k", text)])]


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")))
def test_xml_round_trips_as_content_and_attribute(text: str) -> None:
    element = ET.fromstring(f'<e a="{xml(text)}">{xml(text)}</e>')
    assert element.get("a") == text and (element.text or "") == text


@pytest.mark.parametrize(("value", "message"), [
    ("a\nb", r"an INI file cannot carry '\\n'"),
    ("x" * 256, "value too long for this key: 256 characters, the reader keeps 255"),
])  # fmt: skip
def test_ini_value_refusals(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ini_value(value, 255)


def test_filters_refuse_the_password_object() -> None:
    from provision.render import _PasswordView, _Tracker

    with pytest.raises(ValueError, match=r"toml_str needs text \(got a _PasswordView: use password.reveal\(\)\)"):
        toml_str(_PasswordView(Secret("x"), _Tracker(), False))


def test_codec_table_matches_what_the_inventory_lets_through(real_dialplan: types.ModuleType) -> None:
    """The inventory refuses a codec a machine's client lacks; the renderer must know every one it lets through."""
    from provision.inventory import CODECS as INVENTORY_CODECS

    assert set(CODECS) == {name.lower() for name in INVENTORY_CODECS}
    for name, clients in INVENTORY_CODECS.items():
        row = CODECS[name.lower()]
        assert row.name == name
        assert {c for c in Client if getattr(row, c.value)} == clients, name
        if row.baresip is not None:
            assert row.baresip_module and row.microsip == row.baresip  # both name/sampling-rate/channels


def test_codec_a_client_lacks_is_refused_naming_the_template() -> None:
    with pytest.raises(TemplateFailure, match=r"^template 'baresip/accounts\.j2' line \d+: codec 'iLBC' is not one "
                                              r"baresip has \(it has: opus, G722, PCMA, PCMU, GSM\)"):  # fmt: skip
        render_machine(machine(codecs=("G722", "ilbc")), clients=[Client.BARESIP])


# --------------------------------------------------------------------------------- the real dial plans


@pytest.fixture
def real_dialplan(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """provision.dialplan itself, not the stand-in."""
    monkeypatch.delitem(sys.modules, "provision.dialplan", raising=False)
    clear_caches()
    import provision.dialplan as dialplan

    return dialplan


def test_the_real_default_plan_reaches_phonekit_and_linphone(real_dialplan: types.ModuleType, tmp_path: Path) -> None:
    m = machine(allow_numbers=("+499001234",))
    files = by_path(render_machine(m, clients=[Client.PHONEKIT, Client.LINPHONE]))
    profile = load_profile(write_private(tmp_path, files["phonekit.toml"]))
    plan, allow = real_dialplan.embedded_dialplan({"dialplan": dict(profile.dialplan)}, str(profile.path))
    assert plan == real_dialplan.load_dialplan("de-default") and allow == ("09001234",)
    proxy = dict(dict(parse_linphonerc(files["linphonerc"].content))["proxy_0"])
    assert proxy["dial_escape_plus"] == "1" and "dial_prefix" not in proxy  # linphone_dial leaves it empty


def test_a_plan_too_long_for_microsip_fails_naming_template_and_machine(
    real_dialplan: types.ModuleType, tmp_path: Path
) -> None:
    big = tmp_path / "big.toml"
    rule = '[[barring.rule]]\nname = "r{0}"\ndescription = "r{0}"\nprefixes = ["0{0}"]\nexcept = ["0{0}1", "0{0}2"]\n'
    rules = "".join(rule.format(i) for i in range(100, 140))
    big.write_text('name = "big"\n' + rules)
    with pytest.raises(TemplateFailure, match=r"^template 'microsip/MicroSIP\.ini\.j2' line \d+: dial plan "
                                              r"'big' needs \d+ characters as a MicroSIP dialPlan; MicroSIP reads at "
                                              r"most 255"):  # fmt: skip
        render_machine(machine(dial_profile=str(big), barring_profile=str(big)), clients=[Client.MICROSIP])


# ------------------------------------------------ the profile sections provisioning adds (diagnostics/profile.py)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[media]\nsrtp = "often"\n', "field 'media.srtp' must be disabled, optional or mandatory (got 'often')"),
        ('[media]\ncodecs = "G722"\n', "field 'media.codecs' must be a list of codec names (got 'G722')"),
        ("[media]\ncodecs = [722]\n", "field 'media.codecs' must be a list of codec names (got [722])"),
        ('[media]\nvideo = "off"\n', "unknown field 'media.video'"),
        ("[audio]\ninput = 3\n", "field 'audio.input' must be a device name (a string) (got 3)"),
        ('[audio]\nspeaker = "x"\n', "unknown field 'audio.speaker'"),
    ],
)
def test_profile_extensions_refuse_bad_values(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[account]\nuser = "1"\ndomain = "d"\npassword_env = "HOME"\n' + text)
    with pytest.raises(UsageError) as caught:
        load_profile(path)
    assert str(caught.value) == f"{path}: {message}"


def test_profile_without_the_new_sections_keeps_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[account]\nuser = "1"\ndomain = "d"\npassword_env = "HOME"\n')
    profile = load_profile(path)
    assert (profile.codecs, profile.srtp, profile.input_device, profile.output_device) == ((), "disabled", "", "")
    assert dict(profile.dialplan) == {}
