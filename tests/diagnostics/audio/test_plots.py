"""The audio checks' figures from synthetic signals whose level, spectrum and echo path are known."""

import json

import numpy as np
import pytest

from diagnostics.audio.echo import echo_path_response, estimate_echo, make_excitation
from diagnostics.audio.plots import echo_impulse_plot, level_plot, spectrum_plot
from diagnostics.audio.synth import band_noise, tone
from diagnostics.audio.verdicts import RULES
from diagnostics.report import MAX_PLOT_POINTS

RATE = 48000


def only_series(plot: dict) -> tuple[np.ndarray, np.ndarray]:
    series = plot["series"][0]
    return np.asarray(series["x"]), np.asarray(series["y"])


def test_level_plot_reads_the_rms_of_each_50_ms_and_draws_the_verdict_thresholds() -> None:
    loud, quiet = tone(RATE, 1.0, 1000.0, -20.0), tone(RATE, 1.0, 1000.0, -50.0)
    plot = level_plot(np.r_[loud, quiet], RATE)
    t, rms = only_series(plot)
    assert len(t) == 40 and t[0] == pytest.approx(0.025)
    # Away from the tones' fades and the step, each window reads the tone's level.
    assert rms[2:18] == pytest.approx(-20.0, abs=0.01)
    assert rms[22:38] == pytest.approx(-50.0, abs=0.01)
    peak = np.asarray(plot["series"][1]["y"])
    assert peak[2:18] == pytest.approx(-20.0 + 3.01, abs=0.05)  # a sine's peak is 3 dB over its RMS
    lines = {line["y"]: line["label"] for line in plot["hlines"]}
    thresholds = {rule.low for rule in RULES if rule.check_id == "audio.mic_level" and np.isfinite(rule.low)}
    assert thresholds == {-50.0, -34.0, -12.0} and thresholds < set(lines)
    assert lines[-34.0] == "speech level is good" and lines[-12.0] == "speech is too loud"
    assert lines[0.0] == "full scale: clipping" and "-22" in lines[-22.0]
    json.dumps(plot, allow_nan=False)


def test_level_plot_of_digital_silence_sits_on_the_floor_not_at_minus_infinity() -> None:
    _, rms = only_series(level_plot(np.zeros(RATE), RATE))
    assert np.all(rms == -150.0)


def test_spectrum_plot_peaks_at_the_tone_over_the_noise_density() -> None:
    x = tone(RATE, 2.0, 1000.0, -20.0) + band_noise(RATE, 2.0, -70.0, seed=3)
    plot = spectrum_plot(x, RATE, (50.0, 7000.0))
    freqs, density = only_series(plot)
    assert plot["x_log"] is True and len(freqs) <= MAX_PLOT_POINTS
    assert freqs[np.argmax(density)] == pytest.approx(1000.0, rel=0.02)
    assert freqs[0] >= 20.0 and freqs[-1] <= RATE / 2
    assert [line["x"] for line in plot["vlines"]] == [50.0, 7000.0]


def echo_path(delay_s: float, loss_db: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    excitation = make_excitation(RATE, 1.5)
    capture = band_noise(RATE, 2.1, -70.0, seed=5)
    start = round(delay_s * RATE)
    capture[start : start + len(excitation)] += excitation * 10 ** (-loss_db / 20)
    return excitation, capture, band_noise(RATE, 1.0, -70.0, seed=6)


def test_echo_path_response_peaks_at_the_delay_with_the_path_gain() -> None:
    excitation, capture, _ = echo_path(0.1, 10.0)
    response = echo_path_response(excitation, capture, RATE, 0.55)
    assert response.lag_ms[np.argmax(response.gain_db)] == pytest.approx(100.0, abs=0.05)
    assert np.max(response.gain_db) == pytest.approx(-10.0, abs=0.3)


def test_echo_plot_shows_the_peak_and_marks_the_measured_delay() -> None:
    excitation, capture, quiet = echo_path(0.1234, 12.0)
    estimate = estimate_echo(excitation, capture, RATE, quiet, max_delay_s=0.55)
    plot = echo_impulse_plot(excitation, capture, RATE, 0.55, estimate.delay_ms, estimate.erl_db)
    lag_ms, gain_db = only_series(plot)
    assert plot["kind"] == "impulse" and len(lag_ms) <= MAX_PLOT_POINTS
    (loss,) = plot["hlines"]
    assert loss["y"] == pytest.approx(-12.0, abs=0.3) and loss["label"].startswith("echo return loss 12.")
    assert lag_ms[np.argmax(gain_db)] == pytest.approx(123.4, abs=0.05)
    assert np.max(gain_db) == pytest.approx(-12.0, abs=0.3)
    assert plot["vlines"] == [{"x": pytest.approx(123.4, abs=0.01), "label": "echo after 123.4 ms"}]
    low, high = plot["y_range"]
    assert high - low == 100.0 and low < -70.0 < -12.0 < high


def test_without_an_echo_the_figure_marks_no_delay() -> None:
    excitation = make_excitation(RATE, 1.5)
    capture = band_noise(RATE, 2.1, -60.0, seed=8)
    quiet = band_noise(RATE, 1.0, -60.0, seed=9)
    estimate = estimate_echo(excitation, capture, RATE, quiet, max_delay_s=0.55)
    assert not estimate.detected
    plot = echo_impulse_plot(excitation, capture, RATE, 0.55, estimate.delay_ms, estimate.erl_db)
    assert plot["vlines"] == [] and plot["hlines"] == []
    assert np.max(only_series(plot)[1]) < -40.0  # nothing but the noise came back
