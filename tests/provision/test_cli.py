import json
from pathlib import Path

import pytest

from provision.cli import main


def test_help_and_version_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("phonekit ")
    assert main(["--help"]) == 0


def test_usage_errors_exit_two(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["dance"]) == 2
    assert main(["check", "video"]) == 2
    assert "invalid choice: 'video'" in capsys.readouterr().err


def test_check_sip_without_a_profile_skips_and_says_how(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "sip", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "skip"
    for check in report["checks"]:
        assert check["id"].startswith("sip.")
        assert (check["status"], check["summary"]) == ("skip", "not checked: no account profile given")
        assert "--profile FILE" in check["remedy"]


def test_bad_profile_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "bad.toml"
    profile.write_text('[account]\nuser = "1001"\n')
    assert main(["check", "sip", "--profile", str(profile)]) == 2
    assert capsys.readouterr().err.strip() == f"phonekit: error: {profile}: field 'account.domain' is missing"


def test_check_network_json_prints_only_a_report(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "network", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert {c["id"] for c in report["checks"]} >= {"network.interfaces", "network.route", "network.nat"}
    assert code == {"pass": 0, "warn": 0, "skip": 0, "fail": 1}[report["verdict"]]
