"""Account profiles: valid ones load, bad ones give one line naming the file and field; secrets stay secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from diagnostics.errors import UsageError
from diagnostics.profile import HostPort, Transport, load_profile, parse_host_port


def write(folder: Path, text: str, name: str = "alice.toml", mode: int = 0o644) -> Path:
    path = folder / name
    path.write_text(text)
    path.chmod(mode)
    return path


def secret_file(folder: Path, password: str = "s3cret-pw", mode: int = 0o600) -> None:
    write(folder, password + "\n", "alice.secret", mode)


FULL = """
[account]
user = "1001"
domain = "example.com"
auth_user = "a1001"
display_name = "Alice"
registrar = "sip.example.com:5070"
transport = "TLS"
password_file = "alice.secret"

[network]
stun_server = "stun.example.com"
dns_server = "[::1]:5353"
rtp_ports = [10000, 10100]

[tls]
verify = false

[checks]
echo_extension = "9196"
"""


def test_full_profile(tmp_path: Path) -> None:
    secret_file(tmp_path)
    profile = load_profile(write(tmp_path, FULL))
    assert profile.aor == "sip:1001@example.com"
    assert profile.digest_user == "a1001"
    assert profile.transport is Transport.TLS and profile.transport.default_port == 5061
    assert profile.registrar == HostPort("sip.example.com", 5070)
    assert profile.stun_server == HostPort("stun.example.com", None)
    assert profile.dns_server == HostPort("::1", 5353)
    assert profile.rtp_ports == (10000, 10100)
    assert profile.tls_verify is False
    assert profile.echo_extension == "9196"
    assert profile.password.reveal() == "s3cret-pw"
    assert "s3cret-pw" not in repr(profile)


def test_password_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PK_TEST_PW", "from-env")
    path = write(tmp_path, '[account]\nuser = "1"\ndomain = "d"\npassword_env = "PK_TEST_PW"\n')
    assert load_profile(path).password.reveal() == "from-env"


def test_inline_password_needs_a_private_profile(tmp_path: Path) -> None:
    text = '[account]\nuser = "1"\ndomain = "d"\npassword = "inline"\n'
    with pytest.raises(UsageError, match=r"holds 'account\.password' but is readable by others"):
        load_profile(write(tmp_path, text))
    assert load_profile(write(tmp_path, text, mode=0o600)).password.reveal() == "inline"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[account]\ndomain = "d"\npassword_env = "X"\n', "field 'account.user' is missing"),
        ('[account]\nuser = "10 01"\ndomain = "d"\npassword_env = "X"\n',
         "field 'account.user' has characters a SIP URI cannot carry unescaped (got '10 01')"),
        ('[account]\nuser = "1"\ndomain = "d"\npassword_env = "X"\ntransport = "sctp"\n',
         "field 'account.transport' must be udp, tcp or tls (got 'sctp')"),
        ('[account]\nuser = "1"\ndomain = "d"\npassword_env = "X"\nregistrar = "a:b:c"\n',
         "field 'account.registrar' must be host[:port] (got 'a:b:c')"),
        ('[account]\nuser = "1"\ndomain = "d"\npassword_env = "X"\n[network]\nrtp_ports = [5000, 4000]\n',
         "field 'network.rtp_ports' must be [first, last]"),
        ('[account]\nuser = "1"\ndomain = "d"\npassword_env = "X"\ncolour = "red"\n',
         "unknown field 'account.colour'"),
        ('[acount]\nuser = "1"\n', "unknown section [acount]"),
        ('[account]\nuser = "1"\ndomain = "d"\n', "give exactly one of 'account.password_file'"),
        ('[account]\nuser = "1"\ndomain = "d"\npassword_env = "PK_SURELY_UNSET"\n',
         "names an unset environment variable ('PK_SURELY_UNSET')"),
        ("[account\n", "not valid TOML"),
    ],
)
def test_bad_profiles_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    os.environ["X"] = "x"
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as caught:
        load_profile(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_world_readable_secrets_file_is_refused(tmp_path: Path) -> None:
    secret_file(tmp_path, mode=0o644)
    with pytest.raises(UsageError, match=r"secrets file must be readable by its owner only \(mode 0600, got 0o644\)"):
        load_profile(write(tmp_path, FULL))


def test_missing_profile(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such profile file"):
        load_profile(tmp_path / "nope.toml")


@pytest.mark.parametrize(("text", "expected"), [("h", HostPort("h")), ("h:1", HostPort("h", 1)),
                                                ("[fe80::1]:5060", HostPort("fe80::1", 5060))])
def test_host_port(text: str, expected: HostPort) -> None:
    assert parse_host_port(text) == expected
    assert parse_host_port(str(expected)) == expected
