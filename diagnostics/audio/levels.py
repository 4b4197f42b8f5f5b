"""Level, DC offset, digital silence and clipping of a recording (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from diagnostics.audio.dsp import db, power, to_float

__all__ = ["ClippingStats", "LevelStats", "measure_clipping", "measure_levels"]

# Within one 16-bit step of full scale counts as "at full scale".
_FULL_SCALE = 1.0 - 1.5 / 32768.0
# A clipped run is this many consecutive samples pinned at full scale; a lone sample
# touching full scale is a peak, not clipping (IEC 61606-style "consecutive samples" rule).
MIN_CLIPPED_RUN = 3


@dataclass(frozen=True)
class LevelStats:
    rms_dbfs: float
    peak_dbfs: float
    """Sample peak, dB relative to full scale (0 dBFS = the largest sample value)."""
    dc_offset: float
    """Mean as a fraction of full scale (−1…1)."""
    crest_factor_db: float
    digital_silence: bool
    """Every sample exactly zero: a dead, muted or disconnected microphone."""
    duration_s: float


@dataclass(frozen=True)
class ClippingStats:
    full_scale_fraction: float
    """Share of samples at (within one LSB of) full scale."""
    clipped_runs: int
    """Runs of at least MIN_CLIPPED_RUN consecutive samples at full scale."""
    longest_run_ms: float


def measure_levels(samples: npt.ArrayLike, samplerate: int) -> LevelStats:
    x = to_float(samples)
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    rms_power = power(x)
    return LevelStats(
        rms_dbfs=db(rms_power),
        peak_dbfs=db(peak * peak),
        dc_offset=float(np.mean(x)) if len(x) else 0.0,
        crest_factor_db=db(peak * peak) - db(rms_power) if rms_power > 0 else 0.0,
        digital_silence=bool(len(x) and not np.any(x)),
        duration_s=len(x) / samplerate,
    )


def _runs(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Lengths of the runs of True in ``mask``."""
    if not mask.any():
        return np.zeros(0, dtype=np.int64)
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return (ends - starts).astype(np.int64)


def measure_clipping(samples: npt.ArrayLike, samplerate: int) -> ClippingStats:
    x = to_float(samples)
    at_full_scale = np.abs(x) >= _FULL_SCALE
    # A run is pinned at one rail: a sign change inside it is two separate runs.
    positive, negative = _runs(at_full_scale & (x > 0)), _runs(at_full_scale & (x < 0))
    runs = np.concatenate((positive, negative))
    long_runs = runs[runs >= MIN_CLIPPED_RUN]
    return ClippingStats(
        full_scale_fraction=float(np.mean(at_full_scale)) if len(x) else 0.0,
        clipped_runs=len(long_runs),
        longest_run_ms=float(long_runs.max()) * 1000.0 / samplerate if len(long_runs) else 0.0,
    )
