"""The phone on sound devices: a call whose audio runs mic -> bridge -> pjsua2 -> baresip and back to the speaker."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from diagnostics.audio.tone import measure_tone
from phone.engine import EngineConfig
from phone.phone import Phone
from tests.phone.test_bridge import headset_bridge, loudest, record_monitor
from tests.testbed.baresip import PeerFactory, read_wav
from tests.testbed.pulse import SAMPLERATE, PulseScene

FAR_END_HZ = 700
FAR_END_DBFS = -9.03  # baresip's ausine: half of full scale


@pytest.mark.timeout(60)
def test_a_call_carries_the_microphone_out_and_the_far_end_to_the_speaker(
    headset_scene: PulseScene, baresip_factory: PeerFactory, tmp_path: Path
) -> None:
    peer = baresip_factory(name="far", user="far", tone_hz=FAR_END_HZ, codecs=("G722",))
    path = tmp_path / "speaker.f32"
    recorder = record_monitor(headset_scene, path)
    try:
        with headset_bridge(headset_scene) as bridge:
            bridge.stop()  # as the terminal phone runs it: the devices open for each call only
            phone = Phone(EngineConfig(bound_address="127.0.0.1"), account=None, domain="", audio=bridge,
                          audio_per_call=True)  # fmt: skip
            with phone:
                assert not bridge.running  # idle: no device open
                mark = peer.mark()
                phone.dial(peer.uri)
                assert phone.active is not None
                call = phone.active.call
                assert phone.wait(lambda: call.confirmed, 10.0), f"{call.last_code} {call.last_reason}"
                assert bridge.running
                phone.wait(lambda: call.disconnected, 3.0)
                stats = bridge.stats()
                phone.hangup()
                phone.wait(lambda: phone.active is None, 5.0)
                assert not bridge.running  # closed again with the call
        time.sleep(0.1)
    finally:
        recorder.terminate()
        recorder.wait(5)
    peer.wait_event("CALL_CLOSED", 10.0, since=mark)
    # Out: baresip decoded the scene's microphone: 1 kHz bursts at -20 dBFS (G.722, 16 kHz).
    heard, rate = read_wav(peer.last_recording().received)
    burst = measure_tone(loudest(heard, rate, 0.3), rate)
    truth = headset_scene.truth
    assert burst.frequency_hz == pytest.approx(truth.tone_hz, abs=3.0)
    assert burst.level_dbfs == pytest.approx(truth.tone_dbfs, abs=1.0)
    # In: the speaker played baresip's tone at its level.
    speaker = np.fromfile(path, dtype=np.float32).astype(np.float64)
    assert len(speaker) > 2 * SAMPLERATE
    tone_in = measure_tone(loudest(speaker, SAMPLERATE, 0.5), SAMPLERATE)
    assert tone_in.frequency_hz == pytest.approx(FAR_END_HZ, abs=3.0)
    assert tone_in.level_dbfs == pytest.approx(FAR_END_DBFS, abs=1.0)
    # The bridge kept up: no overruns, and it added less than a frame beyond the device buffers.
    assert stats.capture is not None and stats.capture.overrun_samples == 0
    assert stats.playback is not None and stats.playback.added_latency_ms < 40.0
