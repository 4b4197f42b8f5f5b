"""Signal helpers shared by the audio measurements. Pure numpy/scipy: no device I/O.

Level convention: dBFS is RMS power relative to a full-scale square wave, so a
full-scale sine reads −3.01 dBFS (the convention of ITU-T G.191's sv56 "dBov",
and the one RFC 7874's −19 dBm0 ≈ −22 dBFS target is stated in).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

__all__ = [
    "FloatArray",
    "band_power",
    "bandpass",
    "db",
    "power",
    "to_float",
]

FloatArray = npt.NDArray[np.float64]

# Below this a power is "nothing at all": 16-bit quantisation noise sits near −101 dBFS.
_POWER_FLOOR = 1e-20


def to_float(samples: npt.ArrayLike) -> FloatArray:
    """Mono float64 in [−1, 1): int16 is divided by 32768, floats are taken as they are."""
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise ValueError(f"expected a mono signal (1-D array), got shape {arr.shape}")
    if arr.dtype == np.int16:
        return arr.astype(np.float64) / 32768.0
    if arr.dtype == np.int32:
        return arr.astype(np.float64) / 2147483648.0
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float64, copy=False)
    raise ValueError(f"unsupported sample type {arr.dtype} (use int16, int32 or float)")


def power(x: FloatArray) -> float:
    """Mean square."""
    return float(np.mean(np.square(x))) if len(x) else 0.0


def db(power_value: float) -> float:
    """Power ratio to decibels, floored so that silence is a very small number, not −inf."""
    return float(10.0 * np.log10(max(power_value, _POWER_FLOOR)))


def bandpass(x: FloatArray, samplerate: int, low_hz: float, high_hz: float, order: int = 8) -> FloatArray:
    """Zero-phase Butterworth band-pass (high edge clamped below Nyquist)."""
    nyquist = samplerate / 2.0
    high = min(high_hz, 0.95 * nyquist)
    if not 0 < low_hz < high:
        raise ValueError(f"band {low_hz}–{high_hz} Hz does not fit a {samplerate} Hz signal")
    sos = sps.butter(order, [low_hz, high], btype="bandpass", fs=samplerate, output="sos")
    return np.asarray(sps.sosfiltfilt(sos, x), dtype=np.float64)


def band_power(x: FloatArray, samplerate: int, low_hz: float, high_hz: float) -> float:
    """Mean power within [low, high] Hz from the periodogram (sharp edges, no filter transient)."""
    if not len(x):
        return 0.0
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1.0 / samplerate)
    inband = (freqs >= low_hz) & (freqs <= high_hz)
    # Parseval: sum |X|^2 over both halves / N^2 is the mean square.
    weight = np.where((freqs == 0) | (freqs == samplerate / 2.0), 1.0, 2.0)
    return float(np.sum(weight[inband] * np.abs(spectrum[inband]) ** 2) / len(x) ** 2)
