"""Pure audio measurements against synthesized ground truth, with explicit tolerances."""

import numpy as np
import pytest

from diagnostics.audio.levels import measure_clipping, measure_levels
from diagnostics.audio.noise import measure_noise_floor
from diagnostics.audio.p56 import active_speech_level
from diagnostics.audio.synth import band_noise, tone
from diagnostics.audio.tone import measure_tone

RATES = (8000, 16000, 48000)


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("level", [-3.0103, -20.0, -45.5])
def test_rms_of_a_tone_is_exact(rate: int, level: float) -> None:
    stats = measure_levels(tone(rate, 1.0, 1000.0, level, fade_s=0.0), rate)
    assert stats.rms_dbfs == pytest.approx(level, abs=0.1)
    assert stats.peak_dbfs == pytest.approx(level + 3.0103, abs=0.1)
    assert stats.crest_factor_db == pytest.approx(3.0103, abs=0.1)
    assert not stats.digital_silence


@pytest.mark.parametrize("rate", RATES)
def test_rms_of_band_noise_is_exact(rate: int) -> None:
    assert measure_levels(band_noise(rate, 2.0, -40.0), rate).rms_dbfs == pytest.approx(-40.0, abs=0.1)


def test_int16_input_and_dc_offset_and_silence() -> None:
    x = (tone(16000, 1.0, 440.0, -20.0, fade_s=0.0) * 32768).astype(np.int16) + np.int16(328)
    stats = measure_levels(x, 16000)
    assert stats.dc_offset == pytest.approx(328 / 32768, abs=1e-4)
    assert measure_levels(np.zeros(16000, np.int16), 16000).digital_silence
    assert not measure_levels(np.r_[np.zeros(15999, np.int16), np.int16(1)], 16000).digital_silence


def test_clipping_counts_pinned_runs_not_lone_peaks() -> None:
    rate = 16000
    x = np.clip(tone(rate, 1.0, 100.0, 0.0, fade_s=0.0) * 1.5, -1.0, 1.0)  # 100 Hz: 200 half-waves
    stats = measure_clipping((x * 32767).astype(np.int16), rate)
    assert stats.clipped_runs == 200
    expected = 1.0 - 2.0 / np.pi * np.arcsin(1.0 / (1.5 * np.sqrt(2.0)))  # time |sin| spends above 1/amplitude
    assert stats.full_scale_fraction == pytest.approx(expected, abs=0.005)
    assert stats.longest_run_ms > 1.0
    single = np.zeros(rate)
    single[::400] = 1.0
    assert measure_clipping(single, rate).clipped_runs == 0


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("frequency", [300.0, 1000.0, 1234.5, 3000.0])
def test_tone_frequency_and_level(rate: int, frequency: float) -> None:
    noise = band_noise(rate, 0.5, -60.0, 100.0, 0.45 * rate, seed=5)
    estimate = measure_tone(tone(rate, 0.5, frequency, -25.0, fade_s=0.0) + noise, rate)
    assert estimate.frequency_hz == pytest.approx(frequency, abs=0.5)
    assert estimate.level_dbfs == pytest.approx(-25.0, abs=0.1)
    assert estimate.tone_to_rest_db == pytest.approx(35.0, abs=1.5)


def _bursts(rate: int, level: float, on_s: float, off_s: float, total_s: float) -> np.ndarray:
    burst = tone(rate, on_s, 800.0, level)
    period = np.r_[burst, np.zeros(int(off_s * rate))]
    return np.tile(period, int(np.ceil(total_s / (on_s + off_s))))[: int(total_s * rate)]


# sv56demo (ITU-T G.191 STL, openitu/STL 139db49) on exactly these signals, quantised to int16:
# 8 kHz −27.077 dBov, activity 63.277 %; 16 kHz −27.082 dBov, activity 63.351 %.
SV56_BURSTS = {8000: (-27.077, 0.63277), 16000: (-27.082, 0.63351)}


@pytest.mark.parametrize("rate", sorted(SV56_BURSTS))
def test_p56_matches_the_itu_reference_on_tone_bursts(rate: int) -> None:
    burst = tone(rate, 1.0, 800.0, -26.0)
    x = np.clip(np.round(np.tile(np.r_[burst, np.zeros(rate)], 5) * 32768), -32768, 32767).astype(np.int16)
    asl = active_speech_level(x, rate)
    level, activity = SV56_BURSTS[rate]
    assert asl.level_dbfs == pytest.approx(level, abs=0.05)
    assert asl.activity == pytest.approx(activity, abs=0.002)
    # Definition (P.56 §B.3): active level = long-term level − 10·log10(activity).
    assert asl.level_dbfs == pytest.approx(asl.long_term_dbfs - 10 * np.log10(asl.activity), abs=1e-6)
    # Scaling the input moves the active level by the same amount.
    quieter = active_speech_level(x.astype(np.float64) / 32768 * 0.1, rate)
    assert quieter.level_dbfs == pytest.approx(asl.level_dbfs - 20, abs=0.05)


def test_p56_of_silence() -> None:
    asl = active_speech_level(np.zeros(8000), 8000)
    assert asl.activity == 0.0
    assert asl.level_dbfs < -150


@pytest.mark.parametrize("rate", RATES)
def test_noise_floor_of_steady_noise_and_under_bursts(rate: int) -> None:
    noise = band_noise(rate, 4.0, -55.0, seed=2)
    assert measure_noise_floor(noise, rate).noise_dbfs == pytest.approx(-55.0, abs=0.2)
    speechlike = _bursts(rate, -20.0, 0.5, 0.5, 4.0) + noise
    floor = measure_noise_floor(speechlike, rate)
    assert floor.noise_dbfs == pytest.approx(-55.0, abs=0.5)
    assert floor.quiet_fraction == pytest.approx(0.5, abs=0.1)
