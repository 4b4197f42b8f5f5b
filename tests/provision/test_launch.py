"""``phonekit launch`` end to end: virtual audio scenes, Kamailio with its echo extension, the embedded echo service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.testbed.kamailio import Kamailio
from tests.testbed.pulse import PulseScene


def write_profile(tmp_path: Path, kamailio: Kamailio, user: str, password: str | None = None) -> Path:
    secret = tmp_path / f"{user}.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write((kamailio.users[user] if password is None else password) + "\n")
    profile = tmp_path / f"{user}.toml"
    profile.write_text(
        f'[account]\nuser = "{user}"\ndomain = "{kamailio.domain}"\nregistrar = "{kamailio.host}:{kamailio.udp_port}"\n'
        f'password_file = "{secret.name}"\n[checks]\necho_extension = "{kamailio.echo_extension}"\n'
    )
    return profile


def launch(scene: PulseScene, args: list[str], stdin: str = "", tmp_path: Path | None = None) -> tuple[int, Any, str]:
    argv = [sys.executable, "-m", "provision.cli", "launch", "--non-interactive", "--json", *args]
    env = dict(scene.env)
    if tmp_path is not None:
        env["PHONEKIT_HISTORY"] = str(tmp_path / "history.jsonl")
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=90)
    report = json.loads(proc.stdout) if proc.stdout.strip() else None
    return proc.returncode, report, proc.stderr


def by_id(report: Any) -> dict[str, Any]:
    return {check["id"]: check for check in report["checks"]}


@pytest.mark.timeout(120)
def test_launch_passes_the_gate_and_starts_the_phone(
    headset_scene: PulseScene, kamailio: Kamailio, tmp_path: Path
) -> None:
    profile = write_profile(tmp_path, kamailio, "1001")
    since = kamailio.log_position()
    html = tmp_path / "launch.html"
    code, report, stderr = launch(headset_scene, ["--profile", str(profile), "--html", str(html)],
                                  stdin="status\nquit\n", tmp_path=tmp_path)  # fmt: skip
    assert code == 0, stderr
    # The ticket attachment of a full launch: every check and the echo call, with the audio plots, under 1 MB.
    page = html.read_text()
    assert 0 < len(page.encode()) <= 1_000_000 and oct(html.stat().st_mode & 0o777) == "0o600"
    assert "launch.verify" in page and page.count("<svg") >= 3 and "http://" not in page and "https://" not in page
    checks = by_id(report)
    assert "network.media" not in checks  # the verification call measures that path
    verify = checks["launch.verify"]
    assert verify["status"] == "pass", verify
    m = verify["measurements"]
    # The echo extension (baresip's echo module through Kamailio) returns what it gets: measured 40-120 ms here.
    assert 20.0 < m["round_trip_ms"] < 300.0
    assert -3.0 < m["level_change_db"] < 1.0
    assert m["rx_packets"] > 50 and m["echo_detected"]
    assert [c["status"] for c in report["checks"] if c["status"] in ("fail", "error")] == []
    # The phone started after the gate: it registered and answered 'status' on the terminal.
    assert "registered" in stderr and "no call" in stderr
    assert "Assertion" not in stderr and "Traceback" not in stderr  # pjsua2 torn down in order
    invites = kamailio.requests(since, "INVITE")
    assert any(kamailio.echo_extension in r.ruri for r in invites)
    assert kamailio.users[profile.stem] not in stderr + json.dumps(report)


@pytest.mark.timeout(120)
def test_launch_refuses_to_start_with_a_dead_microphone(
    dead_mic_scene: PulseScene, kamailio: Kamailio, tmp_path: Path
) -> None:
    profile = write_profile(tmp_path, kamailio, "1004")
    code, report, stderr = launch(dead_mic_scene, ["--profile", str(profile)], stdin="status\nquit\n")
    assert code == 1
    checks = by_id(report)
    assert checks["audio.mic_level"]["status"] == "fail"
    # The echo call may have overlapped the audio checks, but a gate that failed reports none.
    assert "launch.verify" not in checks
    assert "not starting the phone" in stderr and "type 'help'" not in stderr


@pytest.mark.timeout(120)
def test_launch_refuses_to_start_with_a_wrong_password(
    headset_scene: PulseScene, kamailio: Kamailio, tmp_path: Path
) -> None:
    profile = write_profile(tmp_path, kamailio, "1003", password="not-the-password")
    code, report, stderr = launch(headset_scene, ["--profile", str(profile), "--no-phone"])
    assert code == 1
    checks = by_id(report)
    assert checks["sip.register"]["status"] == "fail"
    assert "launch.verify" not in checks
    assert "not-the-password" not in stderr + json.dumps(report)


@pytest.mark.timeout(120)
def test_launch_without_a_profile_uses_the_embedded_echo_service(headset_scene: PulseScene, tmp_path: Path) -> None:
    code, report, stderr = launch(headset_scene, ["--no-phone"])
    assert code == 0, stderr
    verify = by_id(report)["launch.verify"]
    assert verify["status"] == "pass", verify
    m = verify["measurements"]
    assert m["target"].startswith("sip:echo@127.0.0.1:")
    # pjsua2 to pjsua2 on loopback: two jitter buffers and the echo's one frame, no network.
    assert 20.0 < m["round_trip_ms"] < 200.0
    assert abs(m["level_change_db"]) < 1.0
    assert by_id(report)["sip.register"]["status"] == "skip"
