"""Echo delay and ERL on synthetic paths. The full accuracy grid is bench/echo_accuracy.py."""

import numpy as np
import pytest

from diagnostics.audio.echo import estimate_echo, make_excitation
from tests.diagnostics.audio.echo_paths import echo_case

DELAY_TOLERANCE_MS = 0.05
ERL_TOLERANCE_DB = 0.5


@pytest.mark.parametrize(
    ("rate", "delay_ms", "loss_db", "snr_db", "drift_ppm", "nonlinear", "small"),
    [
        (48000, 5.0133, 0.0, 30.0, 0.0, False, False),
        (48000, 123.4567, 20.0, 10.0, 100.0, True, True),
        (48000, 499.99, 40.0, 0.0, 100.0, True, True),
        (16000, 87.654, 10.0, 0.0, -100.0, False, True),
        (8000, 250.0625, 30.0, 10.0, 0.0, True, False),
    ],
)
def test_delay_and_erl_within_tolerance(
    rate: int, delay_ms: float, loss_db: float, snr_db: float, drift_ppm: float, nonlinear: bool, small: bool
) -> None:
    case = echo_case(rate, delay_ms, loss_db, snr_db, drift_ppm, nonlinear, small)
    estimate = estimate_echo(case.reference, case.capture, rate, case.noise)
    assert estimate.detected
    assert estimate.delay_ms == pytest.approx(case.delay_ms, abs=DELAY_TOLERANCE_MS)
    assert estimate.erl_db == pytest.approx(case.erl_db, abs=ERL_TOLERANCE_DB)
    assert estimate.drift_ppm == pytest.approx(drift_ppm, abs=10.0)


def test_no_echo_is_reported_as_not_detected_with_a_bound() -> None:
    rate = 16000
    x = make_excitation(rate, 2.0)
    rng = np.random.default_rng(9)
    noise = rng.standard_normal(len(x) + rate) * 10 ** (-60 / 20)
    estimate = estimate_echo(x, noise[: len(x) + rate // 2], rate, noise[-rate:])
    assert not estimate.detected
    assert estimate.delay_ms is None and estimate.erl_db is None
    # Excitation at −15 dBFS over 200–7200 Hz, noise at −60 dBFS over 0–8000 Hz: both counted in 300–3400 Hz.
    expected = (-15 + 10 * np.log10(3100 / 7000)) - (-60 + 10 * np.log10(3100 / 8000))
    assert estimate.erl_min_db == pytest.approx(expected, abs=0.5)


def test_refuses_captures_too_short_to_hold_the_echo() -> None:
    x = make_excitation(8000, 1.0)
    with pytest.raises(ValueError, match="longer than the reference"):
        estimate_echo(x, x, 8000, np.zeros(8000))
    with pytest.raises(ValueError, match=r"at least 0.5 s of noise-only capture \(got 0.100 s\)"):
        estimate_echo(x, np.r_[x, x], 8000, np.zeros(800))
