"""Frequency and level of the strongest tone in a recording (speaker check, test-bed checks)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from diagnostics.audio.dsp import db, to_float

__all__ = ["ToneEstimate", "measure_tone"]

# A Blackman-Harris window keeps leakage of other components below −92 dB.
_WINDOW = "blackmanharris"
# Bins on either side of the peak that hold the tone's energy under that window.
_MAIN_LOBE_BINS = 4


@dataclass(frozen=True)
class ToneEstimate:
    frequency_hz: float
    level_dbfs: float
    """RMS level of the tone alone (a full-scale sine reads −3.01 dBFS)."""
    tone_to_rest_db: float
    """Tone power over everything else: how clean the tone arrived."""


def measure_tone(
    samples: npt.ArrayLike, samplerate: int, low_hz: float = 20.0, high_hz: float | None = None
) -> ToneEstimate:
    """The strongest spectral peak between ``low_hz`` and ``high_hz``.

    Frequency by Gaussian (log-parabolic) interpolation of the window's main lobe,
    level by summing the main lobe's power with the window's energy correction.
    """
    x = to_float(samples)
    if len(x) < 64:
        raise ValueError(f"need at least 64 samples to find a tone (got {len(x)})")
    window = sps.get_window(_WINDOW, len(x))
    spectrum = np.fft.rfft(x * window)
    mag2 = np.abs(spectrum) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / samplerate)
    band = (freqs >= low_hz) & (freqs <= (high_hz if high_hz is not None else samplerate / 2.0))
    if not band.any():
        raise ValueError(f"no frequency bins between {low_hz} and {high_hz} Hz")
    candidates = np.flatnonzero(band)
    k = int(candidates[np.argmax(mag2[candidates])])
    if 0 < k < len(mag2) - 1 and min(mag2[k - 1], mag2[k], mag2[k + 1]) > 0:
        a, b, c = np.log(mag2[k - 1]), np.log(mag2[k]), np.log(mag2[k + 1])
        offset = 0.5 * (a - c) / (a - 2.0 * b + c)
    else:
        offset = 0.0
    lo, hi = max(k - _MAIN_LOBE_BINS, 0), min(k + _MAIN_LOBE_BINS + 1, len(mag2))
    # Parseval with the window: one-sided bins count twice; divide by N·Σw² for the mean square.
    scale = 2.0 / (len(x) * float(np.sum(window**2)))
    tone_power = scale * float(np.sum(mag2[lo:hi]))
    # The rest from the same windowed spectrum, so fades and leakage count the same on both sides.
    rest = scale * float(np.sum(mag2[1:lo]) + np.sum(mag2[hi:]))
    return ToneEstimate(
        frequency_hz=float((k + offset) * samplerate / len(x)),
        level_dbfs=db(tone_power),
        tone_to_rest_db=db(tone_power) - db(rest),
    )
