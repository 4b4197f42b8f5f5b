"""The output stage: staged whole files, exact modes, a manifest, nothing touched that is unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from diagnostics.errors import UsageError
from provision.model import Client
from provision.output import (
    MANIFEST_FORMAT,
    FileResult,
    FileStatus,
    Manifest,
    ManifestEntry,
    OutputTree,
    atomic_write,
    redacted_diff,
)

PASSWORD = "Kx3v9Q2mZpT7wRb4Ls8nYc1D"


@dataclass(frozen=True)
class File:
    """A rendered file as ``provision.render.RenderedFile`` gives it."""

    path: str
    content: str
    secret: bool = False
    encoding: str = "utf-8"

    def encode(self) -> bytes:
        if self.encoding == "utf-16":
            return b"\xff\xfe" + self.content.replace("\n", "\r\n").encode("utf-16-le")
        return self.content.encode("utf-8")


def baresip(password: str = PASSWORD, name: str = "Alice") -> list[File]:
    return [
        File("baresip/accounts", f'"{name}" <sip:1001@example.com>;auth_pass={password};regint=600\n', secret=True),
        File("baresip/config", "sip_listen 0.0.0.0:5060\n"),
    ]


def phonekit(password: str = PASSWORD) -> list[File]:
    return [File("phonekit.toml", f'[account]\nuser = "1001"\npassword = "{password}"\n', secret=True)]


def run(out: Path, machines: dict[str, dict[Client, list[File]]], **options: bool) -> list[FileResult]:
    """One run over ``machines`` (hostname → client → files), committed."""
    tree = OutputTree(out, **options)
    results = [r for host, clients in machines.items() for client, files in clients.items()
               for r in tree.add(host, client, files)]
    results += tree.stale(lambda host: True)
    tree.commit()
    return results


def statuses(results: list[FileResult]) -> dict[str, str]:
    return {r.path: r.status.value for r in results}


def snapshot(folder: Path) -> dict[str, tuple[int, int, int] | None]:
    """Every file's inode, mtime and mode; every folder (None: a folder's mtime changes with any staging)."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns, stat.S_IMODE(p.stat().st_mode))
            if p.is_file() else None for p in sorted(folder.rglob("*"))}


FLEET = {"ws-001": {Client.BARESIP: baresip(), Client.PHONEKIT: phonekit()}, "ws-002": {Client.PHONEKIT: phonekit()}}


def test_first_run_creates_files_with_exact_modes_and_a_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out" / "deeper"
    old_umask = os.umask(0o077)  # the modes are exact whatever the umask
    try:
        results = run(out, FLEET)
    finally:
        os.umask(old_umask)
    assert statuses(results) == {
        "ws-001/baresip/accounts": "created", "ws-001/baresip/config": "created",
        "ws-001/phonekit.toml": "created", "ws-002/phonekit.toml": "created",
    }
    mode = {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    assert mode == {"ws-001/baresip/accounts": 0o600, "ws-001/baresip/config": 0o644, "ws-001/phonekit.toml": 0o600,
                    "ws-002/phonekit.toml": 0o600, "manifest.json": 0o644}
    assert (out / "ws-001/baresip/config").read_text() == "sip_listen 0.0.0.0:5060\n"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == MANIFEST_FORMAT
    assert manifest["files"]["ws-001/baresip/accounts"] == {
        "sha256": hashlib.sha256((out / "ws-001/baresip/accounts").read_bytes()).hexdigest(),
        "client": "baresip", "secret": True,
    }
    assert list(manifest["files"]) == sorted(manifest["files"])
    lines = (out / "manifest.json").read_text().splitlines()
    assert lines[:2] == ['{"format": "phonekit-provision-manifest/1",', '"files": {'] and lines[-1] == "}}"
    assert lines[3] == json.dumps({"ws-001/baresip/config": manifest["files"]["ws-001/baresip/config"]})[1:-1] + ","
    assert not list(out.rglob("*.phonekit-tmp"))


def test_a_rerun_touches_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, FLEET)
    before = snapshot(out)
    results = run(out, FLEET)
    assert set(statuses(results).values()) == {"unchanged"}
    assert snapshot(out) == before  # same inode, mtime and mode for every file, the manifest included


def test_a_change_replaces_the_file_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, FLEET)
    before = snapshot(out)
    results = run(out, {**FLEET, "ws-001": {Client.BARESIP: baresip(name="Alice Smith"), Client.PHONEKIT: phonekit()}})
    assert statuses(results)["ws-001/baresip/accounts"] == "changed"
    after = snapshot(out)
    assert after["ws-001/baresip/accounts"] != before["ws-001/baresip/accounts"]  # a new inode: renamed over
    assert after["ws-001/baresip/config"] == before["ws-001/baresip/config"]
    assert after["manifest.json"] != before["manifest.json"]
    assert "Alice Smith" in (out / "ws-001/baresip/accounts").read_text()


def test_a_secret_file_others_can_read_is_rewritten_0600(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, FLEET)
    (out / "ws-002/phonekit.toml").chmod(0o644)
    [result] = [r for r in run(out, FLEET) if r.path == "ws-002/phonekit.toml"]
    assert (result.status, result.note) == (FileStatus.CHANGED, "mode 0644 → 0600")
    assert stat.S_IMODE((out / "ws-002/phonekit.toml").stat().st_mode) == 0o600


def test_a_file_phonekit_did_not_write_is_not_replaced_without_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "ws-002").mkdir(parents=True)
    (out / "ws-002/phonekit.toml").write_text("mine\n")
    tree = OutputTree(out)
    tree.add("ws-001", Client.PHONEKIT, phonekit())
    with pytest.raises(UsageError) as caught:
        tree.add("ws-002", Client.PHONEKIT, phonekit())
    assert str(caught.value) == (
        f"{out}/ws-002/phonekit.toml: exists and was not written by phonekit (it is not in {out}/manifest.json): "
        "move it away, or give --force to replace it"
    )
    tree.abort()
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["ws-002", "ws-002/phonekit.toml"]
    assert statuses(run(out, FLEET, force=True))["ws-002/phonekit.toml"] == "changed"


def test_an_identical_file_is_adopted(tmp_path: Path) -> None:
    """After a crash between the renames and the manifest, the next run finds the files and takes them on."""
    out = tmp_path / "out"
    run(out, FLEET)
    (out / "manifest.json").unlink()
    assert set(statuses(run(out, FLEET)).values()) == {"unchanged"}
    assert "ws-002/phonekit.toml" in json.loads((out / "manifest.json").read_text())["files"]


def test_a_hand_edited_file_is_overwritten_and_said_so(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, FLEET)
    (out / "ws-001/baresip/config").write_text("edited\n")
    [result] = [r for r in run(out, FLEET) if r.path == "ws-001/baresip/config"]
    assert (result.status, result.note) == (FileStatus.CHANGED, "edited since phonekit wrote it: overwritten")


def test_abort_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, FLEET)
    before = snapshot(out)
    tree = OutputTree(out)
    tree.add("ws-001", Client.BARESIP, baresip(name="Changed"))  # staged next to the old file
    tree.add("ws-003", Client.BARESIP, baresip())  # a new folder with a new subfolder
    assert list(out.rglob("*.phonekit-tmp")) and (out / "ws-003/baresip").is_dir()
    tree.abort()
    assert snapshot(out) == before
    tree.add("ws-004", Client.PHONEKIT, phonekit())  # after abort nothing is staged any more
    assert snapshot(out) == before


def test_abort_removes_an_output_folder_it_created(tmp_path: Path) -> None:
    tree = OutputTree(tmp_path / "new" / "out")
    tree.add("ws-001", Client.BARESIP, baresip())
    tree.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_dry_run_creates_nothing(tmp_path: Path) -> None:
    tree = OutputTree(tmp_path / "out", dry_run=True)
    assert {r.status for r in tree.add("ws-001", Client.BARESIP, baresip())} == {FileStatus.CREATED}
    assert not (tmp_path / "out").exists()


def test_stale_files_are_reported_kept_and_pruned_only_when_unedited(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, FLEET)
    (out / "ws-002/phonekit.toml").write_text("edited\n")
    tree = OutputTree(out)
    tree.add("ws-001", Client.PHONEKIT, phonekit())  # baresip dropped from ws-001, ws-002 gone from the inventory
    stale = tree.stale(lambda host: True)
    assert statuses(stale) == {"ws-001/baresip/accounts": "stale", "ws-001/baresip/config": "stale",
                               "ws-002/phonekit.toml": "stale"}
    assert {r.note for r in stale} == {"no longer generated: kept"}
    pruned = tree.prune(stale)
    tree.commit()
    assert statuses(pruned) == {"ws-001/baresip/accounts": "pruned", "ws-001/baresip/config": "pruned",
                                "ws-002/phonekit.toml": "stale"}
    assert not (out / "ws-001/baresip").exists()  # emptied by the prune, so removed
    assert (out / "ws-002/phonekit.toml").read_text() == "edited\n"
    assert set(json.loads((out / "manifest.json").read_text())["files"]) == {"ws-001/phonekit.toml",
                                                                           "ws-002/phonekit.toml"}


def test_machines_and_clients_outside_the_run_are_carried_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, FLEET)
    tree = OutputTree(out)
    tree.add("ws-001", Client.PHONEKIT, phonekit())
    # --only ws-001 --client phonekit: ws-002 and ws-001's baresip files are outside the run
    assert tree.stale(lambda host: host == "ws-001", frozenset({Client.PHONEKIT})) == []
    tree.commit()
    assert len(json.loads((out / "manifest.json").read_text())["files"]) == 4


def test_stale_entries_of_deleted_files_are_dropped(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, FLEET)
    (out / "ws-002/phonekit.toml").unlink()
    tree = OutputTree(out)
    for client, files in FLEET["ws-001"].items():
        tree.add("ws-001", client, files)
    assert tree.stale(lambda host: True) == []
    tree.commit()
    assert "ws-002/phonekit.toml" not in json.loads((out / "manifest.json").read_text())["files"]


def test_nothing_is_written_through_a_symbolic_link(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "ws-001").symlink_to(elsewhere)
    with pytest.raises(UsageError, match=r"out/ws-001: is a symbolic link: phonekit writes only into real folders"):
        OutputTree(out).add("ws-001", Client.PHONEKIT, phonekit())
    (out / "ws-002").mkdir()
    (out / "ws-002/phonekit.toml").symlink_to(elsewhere / "x")
    with pytest.raises(UsageError, match=r"out/ws-002/phonekit\.toml: is a symbolic link: move it away"):
        OutputTree(out).add("ws-002", Client.PHONEKIT, phonekit())
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "a//b", "baresip/./x", "", "x.phonekit-tmp"])
def test_file_names_stay_inside_the_machine_folder(tmp_path: Path, path: str) -> None:
    with pytest.raises(UsageError, match="the renderer gave a file name phonekit will not write"):
        OutputTree(tmp_path).add("ws-001", Client.PHONEKIT, [File(path, "x")])


def test_two_clients_writing_the_same_file(tmp_path: Path) -> None:
    tree = OutputTree(tmp_path)
    tree.add("ws-001", Client.PHONEKIT, phonekit())
    with pytest.raises(UsageError, match=r"two templates of machine 'ws-001' render the same file 'phonekit\.toml'"):
        tree.add("ws-001", Client.BARESIP, phonekit())


def test_the_manifest_reads_back_reformatted_and_rejects_garbage(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(out, FLEET)
    path = out / "manifest.json"
    ours = Manifest.load(path)
    path.write_text(json.dumps(json.loads(path.read_text()), indent=4))  # reformatted by hand
    assert Manifest.load(path).files == ours.files
    assert ours.get("ws-001/baresip/config") == ManifestEntry(
        hashlib.sha256(b"sip_listen 0.0.0.0:5060\n").digest(), "baresip", False)
    path.write_text('{"format": "something else"}')
    with pytest.raises(UsageError, match=r"manifest\.json: not a phonekit manifest \(format is not"):
        Manifest.load(path)


def test_utf16_files_are_compared_as_bytes_and_diffed_as_text(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ini = [File("MicroSIP.ini", "[Account1]\nlabel=Müller\n", encoding="utf-16")]
    run(out, {"ws-001": {Client.MICROSIP: ini}})
    assert (out / "ws-001/MicroSIP.ini").read_bytes().startswith(b"\xff\xfe[\x00")
    assert set(statuses(run(out, {"ws-001": {Client.MICROSIP: ini}})).values()) == {"unchanged"}
    assert OutputTree(out).read("ws-001/MicroSIP.ini") == "[Account1]\nlabel=Müller\n"


def test_atomic_write(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    inode = path.stat().st_ino
    atomic_write(path, [b"new ", b"content"], 0o600)
    assert (path.read_text(), stat.S_IMODE(path.stat().st_mode)) == ("new content", 0o600)
    assert path.stat().st_ino != inode
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


# -- dry-run diffs ---------------------------------------------------------------------------------


def test_a_diff_of_a_new_file(tmp_path: Path) -> None:
    redacted = baresip(password="***")[0].content
    diff = redacted_diff("ws-001/baresip/accounts", None, redacted, secret=True, password=PASSWORD)
    assert diff.splitlines() == [
        "--- /dev/null", "+++ b/ws-001/baresip/accounts", "@@ -0,0 +1 @@",
        '+"Alice" <sip:1001@example.com>;auth_pass=***;regint=600',
    ]


def test_a_diff_never_shows_the_old_or_the_new_password() -> None:
    old_password, new_password = "0ld-Passw0rd-on-disk", "n3w-Passw0rd-rendered"
    disk = (
        '[account]\nuser = "1001"\npassword = "0ld-Passw0rd-on-disk"\n'
        'display_name = "Alice"\nsecret_too = "0ld-Passw0rd-on-disk"\n'  # a line the new template dropped
    )
    new = '[account]\nuser = "1001"\npassword = "***"\ndisplay_name = "Alice Smith"\n'
    diff = redacted_diff("ws-001/phonekit.toml", disk, new, secret=True, password=new_password)
    assert old_password not in diff and new_password not in diff
    assert diff.splitlines()[3:] == [
        " [account]",
        ' user = "1001"',
        '-password = "<previous password>"',
        '-<line 4 hidden: this file holds a password>',
        '-<line 5 hidden: this file holds a password>',
        '+password = "***"',
        '+display_name = "Alice Smith"',
    ]


def test_a_diff_of_a_file_without_secrets_shows_everything_but_the_password() -> None:
    diff = redacted_diff("ws-001/baresip/config", "a 1\nb 2\n", f"a 1\nb 3 {PASSWORD}\n", secret=False,
                         password=PASSWORD)
    assert diff.splitlines()[3:] == [" a 1", "-b 2", "+b 3 ***"]
