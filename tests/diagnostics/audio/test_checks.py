"""Audio verdicts from synthetic recordings whose level, noise, clipping and echo are known."""

import numpy as np
import pytest

from diagnostics.audio.checks import assess_clipping, assess_echo, assess_mic_level, assess_noise, assess_speaker
from diagnostics.audio.echo import estimate_echo
from diagnostics.audio.synth import band_noise, tone
from diagnostics.report import Status
from tests.diagnostics.audio.echo_paths import echo_case

RATE = 48000


def speechlike(level_dbfs: float, noise_dbfs: float = -70.0, seconds: float = 3.0) -> np.ndarray:
    """0.4 s tone bursts with 0.4 s pauses over steady noise: P.56 sees 'speech' at ``level_dbfs``."""
    period = np.r_[tone(RATE, 0.4, 500.0, level_dbfs), np.zeros(int(0.4 * RATE))]
    bursts = np.tile(period, int(np.ceil(seconds / 0.8)))[: int(seconds * RATE)]
    return bursts + band_noise(RATE, seconds, noise_dbfs, seed=4)


@pytest.mark.parametrize(
    ("level", "status", "advice"),
    [
        (-60.0, Status.FAIL, "raise the microphone input gain by about"),
        (-40.0, Status.WARN, "raise the microphone input gain by about"),
        (-22.0, Status.PASS, None),
        (-8.0, Status.WARN, "lower the microphone input gain by about"),
    ],
)
def test_mic_level_verdict_and_gain_advice(level: float, status: Status, advice: str | None) -> None:
    result = assess_mic_level(speechlike(level, noise_dbfs=min(-85.0, level - 30)), RATE, asked_to_speak=True)
    assert result.status is status, result.summary
    # P.56 counts 0.2 s of hangover (and the envelope's decay) of each 0.4 s pause as active: activity
    # ≈ 0.84, so the active level is 3.01 − 10·log10(1/0.84) ≈ 2.25 dB under the burst level.
    assert result.measurements["active_level_dbfs"] == pytest.approx(level - 2.25, abs=0.3)
    if advice:
        assert result.remedy is not None and advice in result.remedy
        gain = float(result.remedy.split("about ")[1].split(" dB")[0])
        assert gain == pytest.approx(abs(-22.0 - result.measurements["active_level_dbfs"]), abs=1.0)


def test_digital_silence_fails_and_other_mic_checks_skip() -> None:
    silence = np.zeros(2 * RATE)
    level = assess_mic_level(silence, RATE, asked_to_speak=False)
    assert level.status is Status.FAIL and "digital silence" in level.summary
    assert assess_noise(silence, RATE).status is Status.SKIP
    assert assess_clipping(silence, RATE).status is Status.SKIP


def test_no_speech_in_a_non_interactive_run_is_a_skip_but_fails_when_asked() -> None:
    noise = band_noise(RATE, 2.0, -62.0)
    assert assess_mic_level(noise, RATE, asked_to_speak=False).status is Status.SKIP
    assert assess_mic_level(noise, RATE, asked_to_speak=True).status is Status.FAIL


@pytest.mark.parametrize(("noise", "status"), [(-40.0, Status.FAIL), (-50.0, Status.WARN), (-65.0, Status.PASS)])
def test_noise_floor_verdicts(noise: float, status: Status) -> None:
    result = assess_noise(band_noise(RATE, 2.0, noise), RATE)
    assert result.status is status
    assert result.measurements["noise_dbfs"] == pytest.approx(noise, abs=0.3)


def test_clipping_verdicts() -> None:
    clipped = np.clip(tone(RATE, 2.0, 440.0, 0.0, fade_s=0.0) * 1.5, -1.0, 1.0)
    result = assess_clipping(clipped, RATE)
    assert result.status is Status.FAIL and result.measurements["clipped_runs"] == 2 * 880
    assert assess_clipping(tone(RATE, 2.0, 440.0, -6.0), RATE).status is Status.PASS


def test_speaker_heard_through_an_acoustic_loop() -> None:
    sent = tone(RATE, 0.5, 1000.0, -12.0)
    quiet = band_noise(RATE, 1.0, -60.0, seed=1)
    heard = sent * 10 ** (-15 / 20) + band_noise(RATE, 0.5, -60.0, seed=2)
    result = assess_speaker(sent, heard, quiet, RATE, None)
    assert result.status is Status.PASS
    assert result.measurements["heard_dbfs"] == pytest.approx(-27.0, abs=0.3)
    assert result.measurements["heard_hz"] == pytest.approx(1000.0, abs=1.0)


def test_speaker_without_a_loop_needs_a_person() -> None:
    sent = tone(RATE, 0.5, 1000.0, -12.0)
    quiet, heard = band_noise(RATE, 1.0, -60.0, seed=1), band_noise(RATE, 0.5, -60.0, seed=2)
    assert assess_speaker(sent, heard, quiet, RATE, None).status is Status.SKIP
    assert assess_speaker(sent, heard, quiet, RATE, True).status is Status.PASS
    assert assess_speaker(sent, heard, quiet, RATE, False).status is Status.FAIL


@pytest.mark.parametrize(("loss", "status"), [(3.0, Status.FAIL), (20.0, Status.WARN), (50.0, Status.PASS)])
def test_echo_verdicts_follow_the_measured_loss(loss: float, status: Status) -> None:
    case = echo_case(RATE, 97.3, loss, snr_db=20.0)
    result = assess_echo(estimate_echo(case.reference, case.capture, RATE, case.noise))
    assert result.status is status
    assert result.measurements["delay_ms"] == pytest.approx(case.delay_ms, abs=0.05)
    assert result.measurements["erl_db"] == pytest.approx(case.erl_db, abs=0.5)
