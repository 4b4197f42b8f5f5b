"""``phonekit echo-server`` as its own process, and ``phonekit phone call|answer`` against it and the test bed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from diagnostics.audio.synth import tone
from diagnostics.audio.tone import measure_tone
from phone.cli import read_wav, write_wav
from provision.cli import main
from tests.testbed.baresip import BaresipPeer, analyse_wav
from tests.testbed.kamailio import Kamailio, sip_options
from tests.testbed.procs import Process, free_port
from tests.testbed.pulse import PulseScene
from tests.testbed.sipbed import PEER_TONE_HZ, PEER_USER

RATE = 16000


class EchoProcess:
    def __init__(self, workdir: Path) -> None:
        self.log = workdir / "echo.log"
        self.port = free_port()
        argv = [sys.executable, "-m", "provision.cli", "echo-server", "--port", str(self.port), "--json"]
        self.process = Process("phonekit echo-server", argv, self.log)
        self.process.wait_until(lambda: self.log.exists() and '"uri"' in self.log.read_text(), 10.0, "ready line")
        self.uri = json.loads(next(line for line in self.log.read_text().splitlines() if '"uri"' in line))["uri"]


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EchoProcess]:
    server = EchoProcess(tmp_path_factory.mktemp("echo"))
    try:
        yield server
    finally:
        server.process.stop()


def write_profile(tmp_path: Path, kamailio: Kamailio, user: str, extra: str = "") -> Path:
    secret = tmp_path / f"{user}.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(kamailio.users[user] + "\n")
    profile = tmp_path / f"{user}.toml"
    profile.write_text(
        f'[account]\nuser = "{user}"\ndomain = "{kamailio.domain}"\nregistrar = "{kamailio.host}:{kamailio.udp_port}"\n'
        f'password_file = "{secret.name}"\n{extra}'
    )
    return profile


@pytest.mark.timeout(60)
def test_echo_server_sends_the_callers_audio_back(echo_server: EchoProcess, tmp_path: Path) -> None:
    assert echo_server.uri == f"sip:echo@127.0.0.1:{echo_server.port}"
    write_wav(tmp_path / "tone.wav", tone(RATE, 3.0, 600.0, -18.0))
    code = main(["phone", "call", echo_server.uri, "--play", str(tmp_path / "tone.wav"), "--record",
                 str(tmp_path / "back.wav"), "--duration", "2.5", "--json", "--no-history"])  # fmt: skip
    assert code == 0
    back = read_wav(tmp_path / "back.wav")
    assert len(back) > 2 * RATE
    heard = measure_tone(back[RATE // 2 : 2 * RATE], RATE)
    assert heard.frequency_hz == pytest.approx(600.0, abs=3.0)
    assert heard.level_dbfs == pytest.approx(-18.0, abs=1.0)
    # Delay: the first sample above the noise arrives after both jitter buffers' start and the echo's frame
    # (40-120 ms alone, 283 ms once with the whole suite running on two cores): well under half a second.
    onset = int(np.argmax(np.abs(back) > 0.05))
    assert 0 < onset / RATE * 1000 < 500


@pytest.mark.timeout(60)
def test_echo_server_answers_options_and_one_call_after_another(echo_server: EchoProcess, tmp_path: Path) -> None:
    assert sip_options("127.0.0.1", echo_server.port) == 200
    for hz in (500.0, 900.0):
        write_wav(tmp_path / "tone.wav", tone(RATE, 1.5, hz, -20.0))
        assert main(["phone", "call", echo_server.uri, "--play", str(tmp_path / "tone.wav"), "--record",
                     str(tmp_path / "back.wav"), "--duration", "1.2", "--no-history"]) == 0  # fmt: skip
        back = read_wav(tmp_path / "back.wav")
        assert measure_tone(back[RATE // 4 : RATE], RATE).frequency_hz == pytest.approx(hz, abs=3.0)


@pytest.mark.timeout(60)
def test_call_one_shot_through_kamailio_to_baresip(
    kamailio: Kamailio, registered_peer: BaresipPeer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = write_profile(tmp_path, kamailio, "1001")
    write_wav(tmp_path / "tone.wav", tone(RATE, 3.0, 440.0, -16.0))
    mark = registered_peer.mark()
    code = main(["phone", "call", PEER_USER, "--profile", str(profile), "--play", str(tmp_path / "tone.wav"),
                 "--record", str(tmp_path / "heard.wav"), "--duration", "2.5", "--json",
                 "--history", str(tmp_path / "h.jsonl")])  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert code == 0, result
    assert result["outcome"] == "answered" and result["setup_ms"] > 0
    assert result["quality"]["rx_packets"] > 50 and result["quality"]["mos"] > 4.0
    heard = measure_tone(read_wav(tmp_path / "heard.wav")[RATE // 2 :], RATE)
    assert heard.frequency_hz == pytest.approx(PEER_TONE_HZ, abs=5.0)
    registered_peer.wait_event("CALL_CLOSED", 10.0, since=mark)
    theirs = analyse_wav(registered_peer.last_recording().received)
    assert theirs.frequency_hz == pytest.approx(440.0, abs=5.0)
    assert kamailio.users["1001"] not in json.dumps(result)


@pytest.mark.timeout(60)
def test_call_one_shot_refuses_a_barred_number_without_sending(
    kamailio: Kamailio, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = ('\n[dialplan]\nname = "t"\n[dialplan.dial]\narea_code = "30"\n[[dialplan.barring.rule]]\n'
            'name = "premium"\ndescription = "premium-rate numbers"\nprefixes = ["0900"]\n')
    profile = write_profile(tmp_path, kamailio, "1001", plan)
    since = kamailio.log_position()
    code = main(["phone", "call", "0900-123456", "--profile", str(profile), "--json", "--record",
                 str(tmp_path / "x.wav"), "--no-history"])  # fmt: skip
    result = json.loads(capsys.readouterr().out)
    assert code == 1
    assert result["outcome"] == "refused" and result["decision"]["rule"] == "premium"
    time.sleep(0.5)
    assert kamailio.requests(since, "INVITE") == []
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.timeout(60)
def test_answer_one_shot_takes_a_call_from_baresip(
    kamailio: Kamailio, registered_peer: BaresipPeer, tmp_path: Path
) -> None:
    profile = write_profile(tmp_path, kamailio, "1003")
    out = tmp_path / "answer.json"
    argv = [sys.executable, "-m", "provision.cli", "phone", "answer", "--profile", str(profile), "--timeout", "15",
            "--duration", "2", "--record", str(tmp_path / "heard.wav"), "--json", "--no-history"]  # fmt: skip
    with out.open("w") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 10
            while '"ready"' not in out.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            mark = registered_peer.dial(f"sip:1003@{kamailio.domain}")
            assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(5)
    text = out.read_text()
    result = json.loads(text[text.index("\n") + 1 :])
    assert result["outcome"] == "answered" and PEER_USER in result["caller"]
    heard = measure_tone(read_wav(tmp_path / "heard.wav")[RATE // 2 :], RATE)
    assert heard.frequency_hz == pytest.approx(PEER_TONE_HZ, abs=5.0)
    registered_peer.wait_event("CALL_CLOSED", 10.0, since=mark)
    kamailio.unregister("1003")


@pytest.mark.timeout(60)
def test_echo_server_shuts_down_cleanly_on_sigterm_during_a_call(tmp_path: Path) -> None:
    """SIGTERM with a call up: the call is hung up, pjsua2 is destroyed in order, exit 0, no assertion."""
    server = EchoProcess(tmp_path)
    caller = subprocess.Popen([sys.executable, "-m", "provision.cli", "phone", "call", server.uri, "--duration", "20",
                               "--record", str(tmp_path / "x.wav"), "--no-history", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        time.sleep(2.0)  # the caller's INVITE is answered well within this
        server.process.stop(timeout_s=5.0)
        code = server.process.popen.returncode
        out, err = caller.communicate(timeout=30)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
    log = server.log.read_text()
    assert code == 0, log
    assert "Assertion" not in log and "Aborted" not in log
    # The caller saw the far end hang up (BYE), ended cleanly too, and still wrote its recording.
    assert caller.returncode == 0, err
    assert json.loads(out)["outcome"] == "answered" and "Assertion" not in err
    assert (tmp_path / "x.wav").exists()


@pytest.mark.timeout(90)
def test_terminal_phone_driven_through_its_commands(
    kamailio: Kamailio, registered_peer: BaresipPeer, headset_scene: PulseScene, tmp_path: Path
) -> None:
    """The interactive phone, fed a script on stdin in a virtual headset scene: every command does its job."""
    profile = write_profile(tmp_path, kamailio, "1001", '[dialplan]\nname = "t"\n[dialplan.dial]\narea_code = "30"\n'
                            '[[dialplan.barring.rule]]\nname = "premium"\ndescription = "premium-rate numbers"\n'
                            'prefixes = ["0900"]\n')  # fmt: skip
    script = "\n".join([
        "status", "check 0900 123456", "dial 0900 123456", f"dial {PEER_USER}", "wait 1.5", "level", "dtmf 42#",
        "wait 1", "mute", "wait 0.3", "unmute", "hold", "wait 0.5", "resume", "wait 0.5", "stats", "status",
        "hangup", "wait 1", "history", "bogus", "quit",
    ]) + "\n"  # fmt: skip
    mark = registered_peer.mark()
    since = kamailio.log_position()
    done = subprocess.run([sys.executable, "-m", "provision.cli", "phone", "--profile", str(profile), "--history",
                           str(tmp_path / "h.jsonl")], input=script, capture_output=True, text=True,
                          env=headset_scene.env, timeout=60)  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert "registered (200 OK)" in out
    assert "would refuse" in out or "refused: premium-rate numbers are barred" in out
    assert out.count("refused: premium-rate numbers are barred") >= 1
    assert f"dialing sip:{PEER_USER}@{kamailio.domain}" in out and "call confirmed" in out
    assert "microphone -" in out and "dBFS, speaker" in out  # the level meter during the call
    assert "sent DTMF 42#" in out and "on hold" in out and "resumed" in out and "muted" in out
    assert "MOS" in out and "unknown command 'bogus'" in out
    assert registered_peer.dtmf_digits(since=mark) == "42#"
    history_lines = [line for line in out.splitlines() if line.startswith("  20")]
    assert any("refused" in line for line in history_lines) and any("answered" in line for line in history_lines)
    # Only the call to 1002 reached the wire: the barred number went nowhere.
    invites = kamailio.requests(since, "INVITE")
    assert invites and all(PEER_USER in r.ruri for r in invites)
    assert "Assertion" not in done.stderr and "Traceback" not in done.stderr
