"""The baresip peer works: it auto-answers, plays its tone, records what it hears.

A second, independent baresip calls the peer directly on loopback; each side's
recording of what it received must hold the other side's tone.  If any part
of the peer broke (config, auto-answer, ctrl_tcp, audio source, recorder,
codec choice, the resampler path), one of these assertions fails.
"""

from __future__ import annotations

import stat
import time

import pytest

from tests.testbed.baresip import BaresipPeer, PeerFactory, analyse_wav

# ausine plays a 50 % full-scale sine: -9.0 dBFS RMS.  Codec, filters and the
# recording's edges move that by a dB or two; silence or a broken path would
# be far outside this window.
LEVEL_MIN_DBFS = -14.0
LEVEL_MAX_DBFS = -6.0
CALL_S = 2.0


def _call_and_hang_up(caller: BaresipPeer, callee: BaresipPeer) -> None:
    callee_mark = callee.mark()
    caller_mark = caller.dial(callee.uri)
    caller.wait_event("CALL_ESTABLISHED", 5.0, since=caller_mark)
    answered = callee.wait_event("CALL_ESTABLISHED", 5.0, since=callee_mark)
    assert answered.direction == "incoming"
    time.sleep(CALL_S)
    caller.hangup()
    caller.wait_event("CALL_CLOSED", 5.0, since=caller_mark)
    callee.wait_event("CALL_CLOSED", 5.0, since=callee_mark)


def _assert_tone(peer: BaresipPeer, expected_hz: float, rate: int) -> None:
    wav = peer.received_wav()
    tone = analyse_wav(wav)
    where = f"{peer.name} received {wav}: {tone}"
    assert tone.rate == rate, where
    assert tone.duration_s > CALL_S - 0.7, where
    assert abs(tone.frequency_hz - expected_hz) <= 5.0, where
    assert LEVEL_MIN_DBFS <= tone.rms_dbfs <= LEVEL_MAX_DBFS, where


@pytest.mark.timeout(30)
def test_config_files(baresip_peer: BaresipPeer) -> None:
    """The files baresip needs are there with the properties its pitfalls demand."""
    accounts = baresip_peer.config_dir / "accounts"
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o600
    assert "answermode=auto" in accounts.read_text()
    assert not (baresip_peer.config_dir / "uuid").read_text().endswith("\n")
    assert baresip_peer.alive()
    assert baresip_peer.uri == f"sip:peer@127.0.0.1:{baresip_peer.sip_port}"


@pytest.mark.timeout(30)
def test_direct_call_pcmu(baresip_peer: BaresipPeer, baresip_factory: PeerFactory) -> None:
    """G.711: each side hears the other's tone, at 8 kHz."""
    caller = baresip_factory(name="caller", user="caller", tone_hz=440, codecs=("PCMU",))
    _call_and_hang_up(caller, baresip_peer)
    _assert_tone(baresip_peer, 440.0, 8000)
    _assert_tone(caller, 1000.0, 8000)
    sent = analyse_wav(baresip_peer.last_recording().sent)  # type: ignore[arg-type]
    assert abs(sent.frequency_hz - 1000.0) <= 5.0, sent


@pytest.mark.timeout(30)
def test_direct_call_g722_keeps_wideband(baresip_factory: PeerFactory) -> None:
    """G.722 at 16 kHz: a 5 kHz tone survives, so no 16<->8 kHz resampling cuts the band."""
    peer = baresip_factory(name="wbpeer", user="wbpeer", tone_hz=3000)
    caller = baresip_factory(name="wbcaller", user="wbcaller", tone_hz=5000, codecs=("G722",))
    _call_and_hang_up(caller, peer)
    _assert_tone(peer, 5000.0, 16000)
    _assert_tone(caller, 3000.0, 16000)


@pytest.mark.timeout(30)
def test_dtmf_received(baresip_peer: BaresipPeer, baresip_factory: PeerFactory) -> None:
    """RFC 4733 digits sent by a caller arrive as CALL_DTMF_START events at the peer."""
    caller = baresip_factory(name="dtmfcaller", user="dtmfcaller", tone_hz=700, codecs=("PCMA",))
    peer_mark = baresip_peer.mark()
    caller_mark = caller.dial(baresip_peer.uri)
    caller.wait_event("CALL_ESTABLISHED", 5.0, since=caller_mark)
    baresip_peer.wait_event("CALL_ESTABLISHED", 5.0, since=peer_mark)
    caller.send_dtmf("159#*0")
    baresip_peer.wait_event("CALL_DTMF_START", 3.0, since=peer_mark, where=lambda e: e.param == "0")
    caller.hangup()
    baresip_peer.wait_event("CALL_CLOSED", 5.0, since=peer_mark)
    assert baresip_peer.dtmf_digits(since=peer_mark) == "159#*0"
