"""Noise floor from the quiet part of a recording, and the speech-to-noise ratio."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from diagnostics.audio.dsp import bandpass, db, to_float

__all__ = ["NOISE_BAND_HZ", "NoiseFloor", "measure_noise_floor"]

NOISE_BAND_HZ = (50.0, 7000.0)
"""The band a wideband call carries (G.722): noise outside it never reaches the far end."""
FRAME_S = 0.05
# Frames within this much of the quietest decile are "quiet": stationary noise keeps nearly all
# of its frames (no low bias), while speech frames sit well above it.
QUIET_MARGIN_DB = 6.0


@dataclass(frozen=True)
class NoiseFloor:
    noise_dbfs: float
    """Mean in-band power of the quiet frames."""
    quiet_fraction: float
    """Share of the recording judged quiet."""
    band_low_hz: float
    band_high_hz: float


def measure_noise_floor(samples: npt.ArrayLike, samplerate: int) -> NoiseFloor:
    x = to_float(samples)
    low, high = NOISE_BAND_HZ[0], min(NOISE_BAND_HZ[1], 0.45 * samplerate)
    frame = int(FRAME_S * samplerate)
    if len(x) < 4 * frame:
        raise ValueError(
            f"need at least {4 * FRAME_S:.2f} s of audio for a noise floor (got {len(x) / samplerate:.3f} s)"
        )
    inband = bandpass(x, samplerate, low, high)
    frames = inband[: len(inband) // frame * frame].reshape(-1, frame)
    frame_power = np.mean(np.square(frames), axis=1)
    if not np.any(frame_power):
        return NoiseFloor(db(0.0), 1.0, low, high)
    floor_db = db(float(np.percentile(frame_power, 10)))
    quiet = 10.0 * np.log10(np.maximum(frame_power, 1e-20)) <= floor_db + QUIET_MARGIN_DB
    return NoiseFloor(
        noise_dbfs=db(float(np.mean(frame_power[quiet]))),
        quiet_fraction=float(np.mean(quiet)),
        band_low_hz=low,
        band_high_hz=high,
    )
