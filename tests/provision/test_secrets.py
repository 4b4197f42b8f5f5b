"""SIP passwords: a private secrets file, an environment variable, or generated and saved 0600 atomically."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from diagnostics.errors import UsageError
from provision.secrets import ENV_PREFIX, Passwords, env_name, generate_password, read_secrets_file


def secrets_file(folder: Path, text: str, mode: int = 0o600) -> Path:
    path = folder / "secrets.txt"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_file_format(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "# SIP passwords\n\nws-001=Kx3v9Q2m\n  WS-002 = correct horse battery = staple  \n")
    passwords = read_secrets_file(path)
    assert {host: secret.reveal() for host, secret in passwords.items()} == {
        "ws-001": "Kx3v9Q2m",
        "ws-002": "correct horse battery = staple",  # the first '=' splits; spaces around it go
    }
    assert repr(passwords["ws-001"]) == "Secret('***')"
    assert Passwords(path).for_machine("WS-001").reveal() == "Kx3v9Q2m"  # host names match without case


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = secrets_file(tmp_path, "ws-001=pw\n", mode)
    with pytest.raises(UsageError) as caught:
        Passwords(path)
    assert str(caught.value) == (
        f"{path}: secrets file must be readable by its owner only (mode 0600, got {oct(mode)}): chmod 600 {path}"
    )


def test_0400_is_private_enough(tmp_path: Path) -> None:
    assert Passwords(secrets_file(tmp_path, "ws-001=pw\n", 0o400)).for_machine("ws-001").reveal() == "pw"


def test_a_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "ws-001=pw\n")
    os.chown(path, 65534, 65534)  # nobody (the tests run as root)
    with pytest.raises(UsageError) as caught:
        Passwords(path)
    assert str(caught.value) == (
        f"{path}: secrets file must belong to the user running phonekit (uid {os.geteuid()}), not uid 65534"
    )


def test_an_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = secrets_file(tmp_path, "ws-001=pw\n", 0o000)
    real_open = os.open

    def open_as_a_user(file: str | os.PathLike[str], flags: int, *args: int) -> int:
        if Path(file) == path:  # root reads every file: be an ordinary user for this one
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *args)

    monkeypatch.setattr(os, "open", open_as_a_user)
    with pytest.raises(UsageError) as caught:
        Passwords(path)
    assert str(caught.value) == f"{path}: cannot read the secrets file (Permission denied)"


def test_a_folder_missing_file_and_binary_file(tmp_path: Path) -> None:
    folder = tmp_path / "secrets.d"
    folder.mkdir(mode=0o700)
    with pytest.raises(UsageError, match=r"secrets\.d: the secrets file is not a regular file$"):
        Passwords(folder)
    with pytest.raises(UsageError, match=r"nothing\.txt: no such secrets file \(--generate-missing creates it\)$"):
        Passwords(tmp_path / "nothing.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"ws-1=\xff\n")
    binary.chmod(0o600)
    with pytest.raises(UsageError, match=r"binary\.txt: the secrets file is not UTF-8 text \(at byte 5\)$"):
        Passwords(binary)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ws-001=a\nhunter2\n", "line 2: expected hostname=password (the line is not shown: it may hold a password)"),
        ("my pass=s3cr3t-w0rd\n",
         "line 1: the part before '=' is not a host name (not shown: it may be part of a password)"),
        ("ws-001=\n", "line 1: empty password for 'ws-001'"),
        ("ws-001=pa\x01ss\n", "line 1: the password for 'ws-001' holds a control character"),
        ("ws-001=a\n# two\nWS-001=b\n", "line 3: 'WS-001' has a password on line 1 already"),
    ],
)
def test_bad_lines_are_named_by_number_never_shown(tmp_path: Path, text: str, message: str) -> None:
    path = secrets_file(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        Passwords(path)
    assert str(caught.value) == f"{path} {message}"
    for secret in ("hunter2", "s3cr3t-w0rd", "pa\x01ss"):
        assert secret not in str(caught.value)


def test_environment_variables() -> None:
    assert env_name("ws-001.example.com") == "PHONEKIT_SECRET_WS_001_EXAMPLE_COM"
    environ = {ENV_PREFIX + "WS_001": "from-env", ENV_PREFIX + "WS_002": "shared"}
    passwords = Passwords(None, environ=environ)
    assert passwords.for_machine("ws-001").reveal() == "from-env"
    assert passwords.for_machine("ws-002").reveal() == "shared"
    with pytest.raises(UsageError) as caught:
        passwords.for_machine("ws.002")
    assert str(caught.value) == (
        "PHONEKIT_SECRET_WS_002 would give 'ws-002' and 'ws.002' the same password: put them in the secrets file"
    )


def test_the_file_wins_over_the_environment(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "ws-001=from-file\n")
    passwords = Passwords(path, environ={ENV_PREFIX + "WS_001": "from-env", ENV_PREFIX + "WS_002": "env-only"})
    assert passwords.for_machine("ws-001").reveal() == "from-file"
    assert passwords.for_machine("ws-002").reveal() == "env-only"


def test_no_password_says_where_it_looked(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "ws-001=pw\n")
    with pytest.raises(UsageError) as caught:
        Passwords(path, environ={}).for_machine("ws-003")
    assert str(caught.value) == (
        f"no password for 'ws-003': not in {path} and PHONEKIT_SECRET_WS_003 is not set (--generate-missing makes one)"
    )
    with pytest.raises(UsageError) as caught:
        Passwords(None, environ={}).for_machine("ws-003")
    assert str(caught.value) == (
        "no password for 'ws-003': PHONEKIT_SECRET_WS_003 is not set (give --secrets FILE (and --generate-missing))"
    )
    with pytest.raises(UsageError, match="--generate-missing needs --secrets FILE"):
        Passwords(None, generate=True)


def test_generated_passwords_are_strong_and_sip_safe() -> None:
    made = {generate_password().reveal() for _ in range(200)}
    assert len(made) == 200
    assert all(len(p) >= 20 and re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in made)


def test_generated_passwords_are_added_atomically_0600(tmp_path: Path) -> None:
    original = "# keep this comment\nws-001=old-one"  # no newline at the end
    path = secrets_file(tmp_path, original)
    inode = path.stat().st_ino
    passwords = Passwords(path, generate=True, environ={})
    assert passwords.for_machine("ws-001").reveal() == "old-one"
    made = passwords.for_machine("ws-002")
    assert passwords.for_machine("ws-002") is made  # one password per machine and run
    assert passwords.save_generated() == 1
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_ino != inode  # replaced, not rewritten in place
    lines = path.read_text().splitlines()
    assert lines[:2] == ["# keep this comment", "ws-001=old-one"]
    assert lines[2].startswith("# added by phonekit provision render --generate-missing, ")
    assert lines[3] == f"ws-002={made.reveal()}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secrets.txt"]  # no temporary file left
    assert Passwords(path).for_machine("ws-002") == made


def test_a_missing_file_is_created_0600(tmp_path: Path) -> None:
    path = tmp_path / "new-secrets.txt"
    os.umask(old := os.umask(0o022))
    passwords = Passwords(path, generate=True, environ={})
    made = passwords.for_machine("ws-001")
    assert not path.exists()  # nothing until saved
    passwords.save_generated()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_secrets_file(path)["ws-001"] == made
    assert old is not None


def test_a_file_changed_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "ws-001=a\n")
    passwords = Passwords(path, generate=True, environ={})
    passwords.for_machine("ws-002")
    path.write_text("ws-001=a\nws-009=someone-else\n")
    with pytest.raises(UsageError, match="the secrets file changed while phonekit ran: run again"):
        passwords.save_generated()
    assert "ws-009=someone-else" in path.read_text()


def test_a_symlinked_file_is_updated_where_it_lives(tmp_path: Path) -> None:
    real = secrets_file(tmp_path, "ws-001=a\n")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    passwords = Passwords(link, generate=True, environ={})
    passwords.for_machine("ws-002")
    passwords.save_generated()
    assert link.is_symlink() and "ws-002=" in real.read_text()
