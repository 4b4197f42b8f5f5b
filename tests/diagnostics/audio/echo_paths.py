"""Synthetic echo paths with known delay, loss, noise, nonlinearity and clock drift (ground truth)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diagnostics.audio.dsp import FloatArray, band_power, bandpass, db
from diagnostics.audio.echo import ERL_BAND_HZ, make_excitation
from diagnostics.audio.synth import drift, fractional_delay


@dataclass(frozen=True)
class EchoCase:
    reference: FloatArray
    capture: FloatArray
    noise: FloatArray
    delay_ms: float
    """Delay at the start of the excitation, in capture time (so scaled by the drift)."""
    erl_db: float


def echo_case(
    rate: int,
    delay_ms: float,
    loss_db: float,
    snr_db: float,
    drift_ppm: float = 0.0,
    nonlinear: bool = False,
    small_speaker: bool = False,
    seed: int = 3,
) -> EchoCase:
    """``snr_db`` is echo power over noise power in the ERL band."""
    x = make_excitation(rate, 2.0)
    speaker = bandpass(x, rate, 300.0, 7000.0) if small_speaker else x.copy()
    if nonlinear:
        speaker = np.tanh(4.0 * speaker) / 4.0  # soft saturation of a small driver
    length = len(x) + int(0.7 * rate)
    echo = fractional_delay(speaker, delay_ms * rate / 1000.0, length) * 10 ** (-loss_db / 20)
    echo = np.pad(drift(echo, drift_ppm), (0, length))[:length]
    low, high = ERL_BAND_HZ
    start = int(delay_ms * rate / 1000.0)
    echo_power = band_power(echo[start : start + len(x)], rate, low, high)
    noise = np.random.default_rng(seed).standard_normal(length + rate)
    noise *= np.sqrt(echo_power / 10 ** (snr_db / 10) / band_power(noise, rate, low, high))
    return EchoCase(
        reference=x,
        capture=echo + noise[:length],
        noise=noise[length:],
        delay_ms=delay_ms * (1.0 + drift_ppm * 1e-6),
        erl_db=db(band_power(x, rate, low, high)) - db(echo_power),
    )
