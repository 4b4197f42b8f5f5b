"""Inventories: CSV and TOML give the same machines; every bad row is one line naming file, row and field."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from diagnostics.errors import UsageError
from diagnostics.profile import Transport
from provision.inventory import CODECS, FIELDS, InventoryError, open_inventory, validate
from provision.model import Client, Machine, SrtpMode

SITE = """\
[site]
domain = "example.com"
registrar = "sip.example.com:5061"
transport = "tls"
clients = ["phonekit", "baresip"]
codecs = ["G722", "PCMA"]

[groups.sales]
srtp = "mandatory"
clients = ["linphone", "baresip"]
codecs = ["opus", "G722"]
"""

HEADER = "hostname,user,display_name,extension,group,clients,codecs,allow_numbers,stun_server"
CSV = f"""\
{HEADER}
ws-001,alice,Alice Example,1001,sales,,,,
# a comment line, then a blank one

ws-002,bob,Bob Builder,1002,,microsip;phonekit,pcmu|gsm,110;+4930123456,stun.example.com:3478
"""

TOML = SITE + """
[[machines]]
hostname = "ws-001"
user = "alice"
display_name = "Alice Example"
extension = "1001"
group = "sales"

[[machines]]   # the second
hostname = "ws-002"
user = "bob"
display_name = "Bob Builder"
extension = "1002"
clients = ["microsip", "phonekit"]
codecs = ["pcmu", "gsm"]
allow_numbers = ["110", "+4930123456"]
stun_server = "stun.example.com:3478"
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def machines(path: Path, site: Path | None = None) -> list[Machine]:
    return list(open_inventory(path, site).machines())


def errors(path: Path, site: Path | None = None) -> list[str]:
    try:
        result = validate(open_inventory(path, site))
    except InventoryError as exc:
        return list(exc.errors)
    return list(result.errors)


def test_csv_with_site_and_group(tmp_path: Path) -> None:
    site = write(tmp_path, "site.toml", SITE)
    alice, bob = machines(write(tmp_path, "fleet.csv", CSV), site)
    assert (alice.hostname, alice.user, alice.display_name, alice.extension, alice.row) == (
        "ws-001", "alice", "Alice Example", "1001", 2)
    # group over site over model defaults
    assert alice.clients == (Client.LINPHONE, Client.BARESIP)
    assert alice.codecs == ("opus", "G722")
    assert alice.srtp is SrtpMode.MANDATORY
    assert (alice.domain, alice.registrar, alice.transport) == ("example.com", "sip.example.com:5061", Transport.TLS)
    assert (alice.dial_profile, alice.stun_server, alice.group) == ("de-default", "", "sales")
    # the machine over its site; lists split on ';' and '|', codec names in their canonical spelling
    assert bob.row == 5  # the comment and the blank line count: the line an editor shows
    assert bob.clients == (Client.MICROSIP, Client.PHONEKIT)
    assert bob.codecs == ("PCMU", "GSM")
    assert bob.allow_numbers == ("110", "+4930123456")
    assert bob.stun_server == "stun.example.com:3478"
    assert bob.srtp is SrtpMode.DISABLED
    assert not bob.password  # passwords come from provision.secrets


def test_toml_gives_the_same_machines(tmp_path: Path) -> None:
    from_csv = machines(write(tmp_path, "fleet.csv", CSV), write(tmp_path, "site.toml", SITE))
    from_toml = machines(write(tmp_path, "fleet.toml", TOML))
    assert [m.row for m in from_toml] == [0, 1]
    assert [(m.hostname, m.clients, m.codecs, m.srtp) for m in from_toml] == [
        (m.hostname, m.clients, m.codecs, m.srtp) for m in from_csv
    ]


def test_toml_takes_site_from_a_site_file_too(tmp_path: Path) -> None:
    site = write(tmp_path, "site.toml", SITE)
    only_machines = TOML[len(SITE):]
    assert [m.hostname for m in machines(write(tmp_path, "fleet.toml", only_machines), site)] == ["ws-001", "ws-002"]
    with pytest.raises(UsageError, match="has \\[site\\] or \\[groups\\] and --site was given"):
        open_inventory(write(tmp_path, "both.toml", TOML), site)


def test_semicolon_csv_from_a_spreadsheet(tmp_path: Path) -> None:
    text = "\ufeffHostname; User; Display_Name; Extension; Domain; Registrar; Codecs\n" \
           'ws-1;alice;"Example, Alice";1001;example.com;sip.example.com;G722|PCMA\n'
    [alice] = machines(write(tmp_path, "fleet.csv", text))
    assert (alice.display_name, alice.codecs) == ("Example, Alice", ("G722", "PCMA"))


BAD_HEADER = ("hostname,user,display_name,extension,clients,codecs,registrar,stun_server,transport,srtp,group,"
              "allow_numbers,echo_extension,domain,dial_profile,input_device")
CAROL = {"hostname": "ws-3", "user": "carol", "display_name": "Carol", "extension": "1003"}
BAD_ROWS: list[tuple[dict[str, str], str]] = [
    ({"extension": "10a2"}, "field 'extension' must be digits (got '10a2')"),
    ({"user": ""}, "field 'user' is missing"),
    ({"hostname": "ws_3"}, "field 'hostname' must be a host name: letters, digits, '-' and '.' (got 'ws_3')"),
    ({"display_name": 'Carol "C" Smith'},
     "field 'display_name' must not contain '\"', '\\' or control characters (got 'Carol \"C\" Smith')"),
    ({"transport": "sctp"}, "field 'transport' must be udp, tcp or tls (got 'sctp')"),
    ({"srtp": "always"}, "field 'srtp' must be disabled, optional or mandatory (got 'always')"),
    ({"clients": "phonekit;zoiper"},
     "field 'clients' has 'zoiper', not one of phonekit, linphone, baresip, microsip (got 'phonekit;zoiper')"),
    ({"codecs": "G729;PCMA"}, "field 'codecs' has 'G729', not one of " + ", ".join(CODECS) + " (got 'G729;PCMA')"),
    ({"codecs": "opus;PCMA"}, "field 'codecs' has 'opus', which client 'phonekit' does not support (got 'opus;PCMA')"),
    ({"clients": "baresip", "codecs": "speex/16000"},
     "field 'codecs' has 'speex/16000', which client 'baresip' does not support (got 'speex/16000')"),
    ({"codecs": "PCMA;pcma"}, "field 'codecs' lists 'pcma' twice (got 'PCMA;pcma')"),
    ({"registrar": "sip.example.com:99999"},
     "field 'registrar' must be host[:port] with a port 1..65535 (got 'sip.example.com:99999')"),
    ({"registrar": "sip..example.com"},
     "field 'registrar' must be host[:port] with a port 1..65535 (got 'sip..example.com')"),
    ({"stun_server": "stun example"},
     "field 'stun_server' must be host[:port] with a port 1..65535 (got 'stun example')"),
    ({"group": "nosuchgroup"}, "field 'group' names no [groups.<name>] (known: sales) (got 'nosuchgroup')"),
    ({"allow_numbers": "110;0900x"},
     "field 'allow_numbers' must hold numbers or prefixes: digits with an optional leading '+' (got '110;0900x')"),
    ({"echo_extension": "*99#x"}, "field 'echo_extension' must be digits, '*', '#' or '+' (got '*99#x')"),
    ({"domain": "example.com:5060"}, "field 'domain' must be a domain name without a port (got 'example.com:5060')"),
    ({"input_device": "Jabra\x07"}, "field 'input_device' must not contain control characters (got 'Jabra\\x07')"),
    ({"dial_profile": "nosuch-plan"}, "field 'dial_profile' does not load: "),
    ({"input_device": "Jabra,x,y,z,w"}, "has 20 values but the header names 16 fields"),
]


def csv_row(fields: dict[str, str]) -> str:
    values = {**CAROL, **fields}
    return ",".join(values.get(name, "") for name in BAD_HEADER.split(","))


@pytest.mark.parametrize(("fields", "message"), BAD_ROWS, ids=[m.split(" (")[0][:48] for _, m in BAD_ROWS])
def test_each_bad_row_is_one_line_naming_file_row_and_field(
    tmp_path: Path, fields: dict[str, str], message: str
) -> None:
    site = write(tmp_path, "site.toml", SITE)
    inventory = write(tmp_path, "fleet.csv", f"{BAD_HEADER}\nws-1,alice,Alice,1001\nws-2,bob,Bob,1002\n"
                                             f"{csv_row(fields)}\n")
    [error] = errors(inventory, site)
    assert error.startswith(f"{inventory} row 4: {message}")
    if not message.endswith(": "):
        assert error == f"{inventory} row 4: {message}"


def test_the_error_example_of_the_style_guide(tmp_path: Path) -> None:
    rows = "".join(f"ws-{n},u{n},User {n},{1000 + n},example.com,sip.example.com\n" for n in range(12))
    inventory = write(tmp_path, "fleet.csv", "hostname,user,display_name,extension,domain,registrar\n" + rows
                      + "ws-x,ux,User X,10a2,example.com,sip.example.com\n")
    assert errors(inventory) == [f"{inventory} row 14: field 'extension' must be digits (got '10a2')"]


def test_unknown_field_in_the_header(tmp_path: Path) -> None:
    inventory = write(tmp_path, "fleet.csv", "hostname,user,display_name,extention,colour\nws-1,a,A,1\n")
    assert errors(inventory) == [
        f"{inventory} row 1: unknown field 'extention' (did you mean 'extension'?)",
        f"{inventory} row 1: unknown field 'colour'",
    ]


def test_a_column_twice(tmp_path: Path) -> None:
    inventory = write(tmp_path, "fleet.csv", "hostname,user,Hostname\nws-1,a,ws-2\n")
    assert errors(inventory) == [f"{inventory} row 1: field 'hostname' appears twice (columns 1 and 3)"]


def test_duplicate_hostname_and_extension_name_both_rows(tmp_path: Path) -> None:
    site = write(tmp_path, "site.toml", SITE)
    inventory = write(tmp_path, "fleet.csv", "hostname,user,display_name,extension,domain\n"
                      "ws-1,a,A,1001,\n"
                      "ws-2,b,B,1002,\n"
                      "WS-1,c,C,1003,\n"      # host names are case-insensitive
                      "ws-4,d,D,1002,\n"
                      "ws-5,e,E,1002,other.example.com\n")  # another domain: fine
    assert errors(inventory, site) == [
        f"{inventory} row 4: field 'hostname' duplicates row 2 (got 'WS-1')",
        f"{inventory} row 5: field 'extension' duplicates row 3 in domain 'example.com' (got '1002')",
    ]


def test_duplicates_in_toml_name_both_tables(tmp_path: Path) -> None:
    inventory = write(tmp_path, "fleet.toml", SITE + "".join(
        f'[[machines]]\nhostname = "{h}"\nuser = "u"\ndisplay_name = "U"\nextension = "{e}"\n'
        for h, e in [("a", "1"), ("b", "2"), ("a", "3")]))
    assert errors(inventory) == [f"{inventory} machines[2]: field 'hostname' duplicates machines[0] (got 'a')"]


def test_the_first_20_errors_are_shown_and_all_counted(tmp_path: Path) -> None:
    rows = "".join(f"ws-{n},u,U,x{n}\n" for n in range(30))
    inventory = write(tmp_path, "fleet.csv", "hostname,user,display_name,extension,domain,registrar\n" + rows)
    result = validate(open_inventory(inventory))
    # three per row: the extension, and domain and registrar missing
    assert (len(result.errors), result.error_count, result.machines) == (20, 90, 0)
    assert result.errors[0] == f"{inventory} row 2: field 'extension' must be digits (got 'x0')"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[site]\ntransport = "sctp"\n', "[site]: field 'transport' must be udp, tcp or tls (got 'sctp')"),
        ('[site]\nhostname = "x"\n', "[site]: field 'hostname' belongs to each machine, not to a default"),
        ('[groups.a]\ngroup = "b"\n', "[groups.a]: field 'group' belongs to each machine, not to a default"),
        ('[site]\ncolour = "red"\n', "[site]: unknown field 'colour'"),
        ('[groups.a]\ncodecs = "G722"\n', "[groups.a]: field 'codecs' must be an array of strings, e.g. [\"a\", "
                                          "\"b\"] (got 'G722')"),
    ],
)
def test_bad_site_defaults(tmp_path: Path, text: str, message: str) -> None:
    site = write(tmp_path, "site.toml", text)
    inventory = write(tmp_path, "fleet.csv", "hostname\nws-1\n")
    assert errors(inventory, site) == [f"{site} {message}"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('extension = 1003', "field 'extension' must be a string, e.g. \"1003\" (got 1003)"),
        ('extension = "1003"\ncolour = "red"', "unknown field 'colour'"),
        ('extension = "1003"\ncodecs = []', "field 'codecs' must not be empty (got [])"),
        ('extension = "1003"\ndisplay_name = ""', "field 'display_name' must not be empty (got '')"),
        ('extension = "1003"\ntransport = ', "not valid TOML: Invalid value (at line 14, column 13)"),
        ('extension = "1003"\n[site]\ndomain = "x.example.com"', "[site] must come before the first [[machines]]"),
    ],
)
def test_bad_toml_machines(tmp_path: Path, lines: str, message: str) -> None:
    text = (
        '[site]\ndomain = "example.com"\nregistrar = "sip.example.com"\n\n'  # lines 1-4
        '[[machines]]\nhostname = "ws-1"\nuser = "u"\ndisplay_name = "U"\nextension = "1001"\n'  # 5-9
        '[[machines]]\nhostname = "ws-3"\nuser = "u"\n'  # 10-12
    )
    if "display_name" not in lines:
        lines = 'display_name = "U"\n' + lines
        message = message.replace("line 14", "line 15")
    inventory = write(tmp_path, "fleet.toml", text + lines + "\n")
    assert errors(inventory) == [f"{inventory} machines[1]: {message}"]


def test_unset_optional_field_in_toml(tmp_path: Path) -> None:
    text = SITE.replace('[site]\n', '[site]\nstun_server = "stun.example.com"\n') + (
        '[[machines]]\nhostname = "ws-1"\nuser = "u"\ndisplay_name = "U"\nextension = "1"\nstun_server = ""\n')
    [machine] = machines(write(tmp_path, "fleet.toml", text))
    assert machine.stun_server == ""


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("fleet.yaml", "", "{path}: YAML inventories are not supported: use CSV or TOML"),
        ("fleet.txt", "", "{path}: an inventory ends in .csv or .toml (got '.txt')"),
        ("fleet.toml", "[sites]\n", "{path}: unknown table [sites] (known: site, groups, machines)"),
        ("fleet.toml", "[site\n", "{path}: not valid TOML: Expected ']' at the end of a table declaration "
                                  "(at line 1, column 6)"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(UsageError) as caught:
        validate(open_inventory(path))
    assert str(caught.value) == message.format(path=path)


def test_missing_empty_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"fleet\.csv: no such inventory file$"):
        open_inventory(tmp_path / "fleet.csv")
    assert errors(write(tmp_path, "empty.csv", "hostname,user\n")) == [f"{tmp_path / 'empty.csv'}: lists no machines"]
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"hostname\n\xff\xfe\n")
    with pytest.raises(UsageError, match=r"binary\.csv: not UTF-8 text"):
        validate(open_inventory(binary))


def test_a_site_file_holds_no_machines(tmp_path: Path) -> None:
    site = write(tmp_path, "site.toml", TOML)
    with pytest.raises(UsageError, match=r"a site file holds \[site\] and \[groups.<name>\] only \(got \[machines\]\)"):
        open_inventory(write(tmp_path, "fleet.csv", CSV), site)


def test_a_second_pass_refuses_a_changed_file(tmp_path: Path) -> None:
    inventory = write(tmp_path, "fleet.csv", CSV)
    opened = open_inventory(inventory, write(tmp_path, "site.toml", SITE))
    inventory.write_text(CSV + "ws-003,carol,Carol,1003,,,,,\n")
    with pytest.raises(UsageError, match="changed while phonekit was using it"):
        next(opened.machines())


def test_every_field_is_a_machine_field() -> None:
    machine_fields = set(Machine.__dataclass_fields__) - {"password", "row"}
    assert {f.name for f in FIELDS} == machine_fields
    assert all(f.doc for f in FIELDS)


def test_validation_streams_in_flat_memory(tmp_path: Path) -> None:
    """10,000 machines: what stays is the duplicate keys (~150 bytes a machine), never the machines."""
    inventory = tmp_path / "fleet.csv"
    with open(inventory, "w") as out:
        out.write("hostname,user,display_name,extension,domain,registrar,codecs,clients\n")
        for n in range(10_000):
            out.write(f"ws-{n:05d},user{n},User {n},{10000 + n},example.com,sip.example.com,G722;PCMA,"
                      "phonekit;baresip\n")
    tracemalloc.start()
    try:
        result = validate(open_inventory(inventory))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.ok and result.machines == 10_000
    assert peak < 4_000_000, f"validating 10,000 machines peaked at {peak / 1e6:.1f} MB"


def test_a_dial_profile_file_is_found_next_to_the_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "office.toml").write_text('name = "office"\n[dial]\noutside_line = "0"\n')
    inventory = write(tmp_path, "fleet.csv", "hostname,user,display_name,extension,domain,registrar,dial_profile\n"
                                             "ws-1,a,A,1,example.com,sip.example.com,plans/office.toml\n"
                                             "ws-2,b,B,2,example.com,sip.example.com,plans/nothing.toml\n")
    monkeypatch.chdir("/")
    assert errors(inventory) == [f"{inventory} row 3: field 'dial_profile' names no file (got 'plans/nothing.toml')"]
    [machine] = [e.machine for e in open_inventory(inventory).scan() if e.machine]
    assert machine.dial_profile == str(tmp_path / "plans" / "office.toml")  # absolute: the renderer needs no cwd
