"""Signals with known properties: test tones, and synthetic echo paths with known delay.

The speaker check plays :func:`tone`; tests and ``bench/`` build ground truth
with the rest (an echo path of exact fractional delay, a clock that drifts).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy import signal as sps

from diagnostics.audio.dsp import FloatArray, bandpass

__all__ = ["band_noise", "drift", "fractional_delay", "tone"]


def tone(
    samplerate: int, duration_s: float, frequency_hz: float, level_dbfs: float, fade_s: float = 0.01
) -> FloatArray:
    """A sine at ``level_dbfs`` RMS (so amplitude = √2·10^(level/20)), with raised-cosine fades."""
    n = round(duration_s * samplerate)
    amplitude = np.sqrt(2.0) * 10.0 ** (level_dbfs / 20.0)
    x = amplitude * np.sin(2.0 * np.pi * frequency_hz * np.arange(n) / samplerate)
    fade = min(int(fade_s * samplerate), n // 2)
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    return np.asarray(x, dtype=np.float64)


def band_noise(
    samplerate: int, duration_s: float, level_dbfs: float, low_hz: float = 300.0, high_hz: float = 3400.0, seed: int = 0
) -> FloatArray:
    """Gaussian noise band-limited to [low, high] at exactly ``level_dbfs`` RMS.

    Band-limited so that its level does not depend on the sample rate it is measured at.
    """
    rng = np.random.default_rng(seed)
    x = bandpass(rng.standard_normal(round(duration_s * samplerate)), samplerate, low_hz, high_hz)
    return np.asarray(x * (10.0 ** (level_dbfs / 20.0) / np.sqrt(np.mean(np.square(x)))), dtype=np.float64)


def fractional_delay(x: FloatArray, delay_samples: float, length: int) -> FloatArray:
    """``x`` delayed by a fractional number of samples, band-limited (phase ramp in the frequency domain)."""
    n_fft = int(2 ** np.ceil(np.log2(length + len(x) + 64)))
    freqs = np.fft.rfftfreq(n_fft)
    shifted = np.fft.irfft(np.fft.rfft(x, n_fft) * np.exp(-2j * np.pi * freqs * delay_samples), n_fft)
    return np.asarray(shifted[:length], dtype=np.float64)


def drift(x: FloatArray, ppm: float) -> FloatArray:
    """``x`` as seen by a capture clock running ``ppm`` fast: (1 + ppm·1e-6) samples per original sample."""
    ratio = (
        Fraction(1_000_000_000 + round(ppm * 1000), 1_000_000_000).limit_denominator(20_000)
        if ppm
        else Fraction(1)
    )
    if ratio == 1:
        return x.copy()
    return np.asarray(sps.resample_poly(x, ratio.numerator, ratio.denominator), dtype=np.float64)
