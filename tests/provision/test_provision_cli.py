"""``phonekit provision validate|render`` end to end, with the real renderer: any error writes nothing, a
re-run touches nothing, secrets stay 0600 and out of every output."""

from __future__ import annotations

import argparse
import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from provision import provision_cli
from provision.model import Client, Machine
from provision.provision_cli import main, register, run
from provision.render import TemplateFailure

ALICE_PW, BOB_PW, CAROL_PW = "Alice-s3cret-Passw0rd-1", "Bob-s3cret-Passw0rd-22", "Carol-s3cret-Passw0rd-333"

SITE = """\
[site]
domain = "example.com"
registrar = "sip.example.com:5061"
transport = "tls"
codecs = ["G722", "PCMA", "PCMU"]
clients = ["phonekit", "baresip"]
"""
HEADER = "hostname,user,display_name,extension,clients"
ROWS = [
    "ws-001,alice,Alice Example,1001,phonekit;linphone;baresip;microsip",
    "ws-002,bob,Bob Builder,1002,",
    "ws-003,carol,Carol Singer,1003,",
]


class Fleet:
    """An inventory, its site file and secrets file, and an output folder, in one temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.site = folder / "site.toml"
        self.site.write_text(SITE)
        self.inventory = folder / "fleet.csv"
        self.write_rows(ROWS)
        self.secrets = folder / "secrets.txt"
        self.secrets.write_text(f"ws-001={ALICE_PW}\nws-002={BOB_PW}\nws-003={CAROL_PW}\n")
        self.secrets.chmod(0o600)
        self.out = folder / "out"

    def write_rows(self, rows: Sequence[str], header: str = HEADER) -> None:
        self.inventory.write_text("\n".join([header, *rows]) + "\n")

    def args(self, *extra: str, command: str = "render") -> list[str]:
        args = ["provision", command, "--inventory", str(self.inventory), "--site", str(self.site)]
        if command == "render":
            args += ["--out", str(self.out), "--secrets", str(self.secrets)]
        return [*args, *extra]

    def snapshot(self) -> dict[str, tuple[int, int, int] | None]:
        """Every file's inode, mtime and mode, every folder; {} while there is no output folder."""
        if not self.out.exists():
            return {}
        return {str(p.relative_to(self.out)): (p.stat().st_ino, p.stat().st_mtime_ns, stat.S_IMODE(p.stat().st_mode))
                if p.is_file() else None for p in sorted(self.out.rglob("*"))}


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet(tmp_path)


def render(fleet: Fleet, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(fleet.args(*extra))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_no_password(*texts: str) -> None:
    for text in texts:
        for password in (ALICE_PW, BOB_PW, CAROL_PW):
            assert password not in text


# -- validate --------------------------------------------------------------------------------------


def test_validate_a_good_inventory(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(fleet.args(command="validate")) == 0
    assert capsys.readouterr().out == f"{fleet.inventory}: 3 machines, valid\n"
    assert main(fleet.args("--json", command="validate")) == 0
    assert json.loads(capsys.readouterr().out) == {
        "inventory": str(fleet.inventory), "valid": True, "machines": 3, "errors": [], "error_count": 0}


def test_validate_a_bad_inventory(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.write_rows([*ROWS, "ws-004,dave,Dave,10a4,", "ws-001,eve,Eve,1005,"])
    assert main(fleet.args(command="validate")) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"phonekit: error: {fleet.inventory} row 5: field 'extension' must be digits (got '10a4')\n"
        f"phonekit: error: {fleet.inventory} row 6: field 'hostname' duplicates row 2 (got 'ws-001')\n"
    )
    assert main(fleet.args("--json", command="validate")) == 2
    document = json.loads(capsys.readouterr().out)
    assert (document["valid"], document["machines"], document["error_count"]) == (False, 3, 2)


# -- render: anything wrong writes nothing ---------------------------------------------------------

BAD = [
    (["ws-004,,Dave,1004,"], "row 5: field 'user' is missing"),
    (["ws-004,dave,Dave,10a4,"], "row 5: field 'extension' must be digits (got '10a4')"),
    (["ws-004,dave,Dave,1004,phonekit;zoiper"],
     "row 5: field 'clients' has 'zoiper', not one of phonekit, linphone, baresip, microsip (got 'phonekit;zoiper')"),
    (["WS-002,dave,Dave,1004,"], "row 5: field 'hostname' duplicates row 3 (got 'WS-002')"),
    (["ws-004,dave,Dave,1003,"], "row 5: field 'extension' duplicates row 4 in domain 'example.com' (got '1003')"),
]


@pytest.mark.parametrize("first_run", [True, False], ids=["empty-out", "after-a-run"])
@pytest.mark.parametrize(("rows", "message"), BAD, ids=[m.split(" (")[0] for _, m in BAD])
def test_a_bad_inventory_writes_nothing(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], rows: list[str], message: str, first_run: bool
) -> None:
    if not first_run:
        assert render(fleet, capsys)[0] == 0
    before = fleet.snapshot()
    # ws-001 changes too: it is rendered and staged before the bad row is read
    fleet.write_rows([ROWS[0].replace("Alice Example", "Alice Smith"), *ROWS[1:], *rows])
    code, out, err = render(fleet, capsys)
    assert (code, out) == (2, "")
    assert err == f"phonekit: error: {fleet.inventory} {message}\nphonekit: nothing written\n"
    assert fleet.snapshot() == before
    assert not list(fleet.folder.rglob("*.phonekit-tmp"))


def test_an_unknown_field_writes_nothing(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.write_rows(ROWS, header=HEADER.replace("display_name", "displayname"))
    code, _, err = render(fleet, capsys)
    assert code == 2
    assert err == (f"phonekit: error: {fleet.inventory} row 1: unknown field 'displayname' "
                   "(did you mean 'display_name'?)\nphonekit: nothing written\n")
    assert not fleet.out.exists()


def test_a_secrets_file_others_can_read_writes_nothing(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.secrets.chmod(0o644)
    code, _, err = render(fleet, capsys)
    assert code == 2
    assert err == (f"phonekit: error: {fleet.secrets}: secrets file must be readable by its owner only (mode 0600, "
                   f"got 0o644): chmod 600 {fleet.secrets}\nphonekit: nothing written\n")
    assert not fleet.out.exists()


def test_an_unreadable_secrets_file_writes_nothing(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert render(fleet, capsys)[0] == 0
    before = fleet.snapshot()
    real_open = os.open

    def open_as_a_user(file: str | os.PathLike[str], flags: int, *args: int) -> int:
        if Path(file) == fleet.secrets:  # root reads every file: be an ordinary user for this one
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *args)

    monkeypatch.setattr(os, "open", open_as_a_user)
    code, _, err = render(fleet, capsys)
    assert code == 2
    assert err == (f"phonekit: error: {fleet.secrets}: cannot read the secrets file (Permission denied)\n"
                   "phonekit: nothing written\n")
    assert fleet.snapshot() == before


def test_a_missing_password_writes_nothing(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.secrets.write_text(f"ws-001={ALICE_PW}\n")
    code, _, err = render(fleet, capsys)
    assert code == 2
    assert err.splitlines()[0] == (
        f"phonekit: error: {fleet.inventory} row 3: no password for 'ws-002': not in {fleet.secrets} and "
        "PHONEKIT_SECRET_WS_002 is not set (--generate-missing makes one)")
    assert not fleet.out.exists()


def test_a_broken_site_template_writes_nothing(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    assert render(fleet, capsys)[0] == 0
    before = fleet.snapshot()
    templates = fleet.folder / "site-templates"
    (templates / "baresip").mkdir(parents=True)
    # an extra file for every baresip machine; it breaks only for the second one, after the first was staged
    (templates / "baresip" / "notes.j2").write_text("# {{ display_name }}\n{% if hostname == 'ws-002' %}"
                                                    "{{ extension_typo }}{% endif %}\n")
    code, out, err = render(fleet, capsys, "--templates", str(templates))
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert lines[0].startswith(f"phonekit: error: {fleet.inventory} row 3: template 'baresip/notes.j2' line 2: "
                               "'extension_typo' is undefined")
    assert lines[-1] == "phonekit: nothing written"
    assert fleet.snapshot() == before
    assert not list(fleet.out.rglob("notes*")) and not list(fleet.out.rglob("*.phonekit-tmp"))


def test_a_renderer_failure_writes_nothing(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from provision.render import render_machine

    def renderer(machine: Machine, clients: Sequence[Client] | None = None, site_templates: Path | None = None,
                 redact: bool = False) -> object:
        if machine.hostname == "ws-003":
            raise TemplateFailure("phonekit/profile.toml.j2", 7, "'codec_list' is undefined", machine)
        return render_machine(machine, clients, site_templates, redact)

    monkeypatch.setattr(provision_cli, "load_renderer", lambda: renderer)
    code, _, err = render(fleet, capsys)
    assert code == 2
    assert err == (f"phonekit: error: {fleet.inventory} row 4: template 'phonekit/profile.toml.j2' line 7: "
                   "'codec_list' is undefined (machine 'ws-003', inventory row 4)\nphonekit: nothing written\n")
    assert not fleet.out.exists()


def test_a_file_phonekit_did_not_write_is_kept_unless_forced(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    mine = fleet.out / "ws-002" / "phonekit.toml"
    mine.parent.mkdir(parents=True)
    mine.write_text("hand made\n")
    code, _, err = render(fleet, capsys)
    assert code == 2
    assert f"{mine}: exists and was not written by phonekit" in err
    assert sorted(p.name for p in fleet.out.rglob("*")) == ["phonekit.toml", "ws-002"]
    assert render(fleet, capsys, "--force")[0] == 0
    assert "hand made" not in mine.read_text()


# -- render: the output ----------------------------------------------------------------------------


def test_render_then_a_rerun_that_touches_nothing(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = render(fleet, capsys, "-v")
    assert code == 0
    assert "created   ws-001/MicroSIP.ini\n" in out
    assert out.endswith("created 12, changed 0, unchanged 0\n")  # ws-001: 6 files, ws-002 and ws-003: 3 each
    assert_no_password(out, err)
    modes = {str(p.relative_to(fleet.out)): stat.S_IMODE(p.stat().st_mode) for p in fleet.out.rglob("*")
             if p.is_file()}
    assert modes["ws-001/phonekit.toml"] == modes["ws-002/baresip/accounts"] == 0o600
    assert modes["ws-002/baresip/config"] == modes["manifest.json"] == 0o644
    manifest = json.loads((fleet.out / "manifest.json").read_text())["files"]
    assert all((modes[path] == 0o600) == entry["secret"] for path, entry in manifest.items())

    before = fleet.snapshot()
    code, out, _ = render(fleet, capsys)
    assert (code, out) == (0, "created 0, changed 0, unchanged 12\n")
    assert fleet.snapshot() == before  # not a file written, the manifest included

    fleet.write_rows([ROWS[0], ROWS[1].replace("Bob Builder", "Robert Builder"), ROWS[2]])
    code, out, _ = render(fleet, capsys, "-v")
    assert "changed   ws-002/baresip/accounts\n" in out and "unchanged ws-002/baresip/config\n" in out
    assert out.endswith("created 0, changed 2, unchanged 10\n")
    after = fleet.snapshot()
    assert {path for path in after if after[path] != before[path]} == {
        "ws-002/phonekit.toml", "ws-002/baresip/accounts", "manifest.json"}


def test_json_report(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = render(fleet, capsys, "--json")
    document = json.loads(out)
    assert code == 0
    assert document["summary"] == {"created": 12, "changed": 0, "unchanged": 0, "stale": 0, "pruned": 0}
    assert (document["written"], document["errors"], document["dry_run"]) == (True, [], False)
    assert {"path": "ws-002/baresip/config", "status": "created", "secret": False} in document["files"]
    fleet.secrets.chmod(0o640)
    code, out, err = render(fleet, capsys, "--json")
    document = json.loads(out)
    assert (code, err, document["written"], document["error_count"]) == (2, "", False, 1)


def test_a_dry_run_writes_nothing_and_shows_no_secret(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = render(fleet, capsys, "--dry-run", "-v")  # -v: debug logs on stderr too
    assert code == 0
    assert not fleet.out.exists()
    assert "+++ b/ws-001/baresip/accounts" in out and "auth_pass=***" in out
    assert out.endswith("created 12, changed 0, unchanged 0\ndry run: nothing written\n")
    assert_no_password(out, err)

    assert render(fleet, capsys)[0] == 0
    before = fleet.snapshot()
    old_alice = ALICE_PW
    fleet.secrets.write_text(f"ws-001=Alice-NEW-passw0rd-4\nws-002={BOB_PW}\nws-003={CAROL_PW}\n")
    fleet.write_rows([ROWS[0].replace("Alice Example", "Alice Smith"), *ROWS[1:]])
    code, out, err = render(fleet, capsys, "--dry-run", "--json")
    assert code == 0 and fleet.snapshot() == before
    document = json.loads(out)
    diffs = "".join(f.get("diff", "") for f in document["files"])
    assert "-passwd=<previous password>" in diffs and "+passwd=***" in diffs
    assert "Alice Smith" in diffs
    for text in (out, err):
        assert old_alice not in text and "Alice-NEW-passw0rd-4" not in text


def test_generated_passwords(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.secrets.unlink()
    code, _, err = render(fleet, capsys)
    assert (code, err) == (2, f"phonekit: error: {fleet.secrets}: no such secrets file (--generate-missing creates it)"
                              "\nphonekit: nothing written\n")
    code, out, err = render(fleet, capsys, "--dry-run", "--generate-missing")
    assert code == 0 and not fleet.secrets.exists() and not fleet.out.exists()
    assert "generated 3 passwords: would add to" in out
    code, out, err = render(fleet, capsys, "--generate-missing", "-v")
    assert code == 0
    assert f"generated 3 passwords: added to {fleet.secrets}\n" in out
    assert stat.S_IMODE(fleet.secrets.stat().st_mode) == 0o600
    made = dict(line.split("=", 1) for line in fleet.secrets.read_text().splitlines() if not line.startswith("#"))
    assert sorted(made) == ["ws-001", "ws-002", "ws-003"]
    for password in made.values():
        assert len(password) >= 20
        assert password not in out and password not in err
        assert any(password in p.read_text() for p in fleet.out.rglob("phonekit.toml"))
    before = fleet.snapshot()
    code, out, _ = render(fleet, capsys)  # the saved passwords are used: nothing changes
    assert (code, out, fleet.snapshot()) == (0, "created 0, changed 0, unchanged 12\n", before)


def test_only_and_client_select_what_is_rendered(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = render(fleet, capsys, "--only", "WS-002", "ws-003", "--client", "baresip", "-v")
    assert code == 0
    assert sorted(str(p.relative_to(fleet.out)) for p in fleet.out.rglob("*") if p.is_file()) == [
        "manifest.json", "ws-002/baresip/accounts", "ws-002/baresip/config", "ws-003/baresip/accounts",
        "ws-003/baresip/config"]
    code, out, _ = render(fleet, capsys, "--only", "ws-001")
    assert (code, out) == (0, "created 6, changed 0, unchanged 0\n")
    assert len(json.loads((fleet.out / "manifest.json").read_text())["files"]) == 10  # ws-002/003 kept
    code, _, err = render(fleet, capsys, "--only", "ws-009")
    assert err.startswith(f"phonekit: error: --only: no machine 'ws-009' in {fleet.inventory}\n")


def test_stale_files_are_kept_and_pruned_on_request(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    assert render(fleet, capsys)[0] == 0
    fleet.write_rows([ROWS[0].replace("phonekit;linphone;baresip;microsip", "phonekit;baresip"), ROWS[1]])
    code, out, _ = render(fleet, capsys)
    assert code == 0
    assert out == ("created 0, changed 0, unchanged 6\n"
                   "stale 6: no longer generated, kept (--prune deletes them; -v lists them)\n")
    assert (fleet.out / "ws-001/MicroSIP.ini").exists() and (fleet.out / "ws-003/phonekit.toml").exists()
    code, out, _ = render(fleet, capsys, "--prune", "-v")
    assert "pruned    ws-001/MicroSIP.ini\n" in out and out.endswith("pruned 6\n")
    assert not (fleet.out / "ws-001/MicroSIP.ini").exists() and not (fleet.out / "ws-003").exists()
    assert render(fleet, capsys)[1] == "created 0, changed 0, unchanged 6\n"


def test_register_adds_provision_to_a_command_line(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    """What phonekit's own main does: its parser, register(), then run()."""
    parser = argparse.ArgumentParser(prog="phonekit")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check")
    register(commands)
    args = parser.parse_args(fleet.args(command="validate"))
    assert (args.command, args.provision_command, args.json, args.verbose) == ("provision", "validate", False, False)
    assert run(args) == 0
    assert capsys.readouterr().out == f"{fleet.inventory}: 3 machines, valid\n"
    assert main(["provision", "render", "--inventory", "x.csv"]) == 2  # --out is required
    assert "the following arguments are required: --out" in capsys.readouterr().err
