"""Active speech level, ITU-T P.56 (12/2011) method B, and the speech activity factor.

The level of speech is its power while someone is talking, not averaged over
the pauses. Method B (§B.1–B.3; the algorithm of ITU-T G.191's ``sv56``):

1. Envelope: |x| smoothed twice by a first-order filter with time constant
   T = 0.03 s (eq. B-1, B-2: p = g·p + (1−g)|x|, q = g·q + (1−g)·p).
2. For each threshold c_j = 2^j LSB (16-bit scale) count the samples where
   q ≥ c_j, plus a hangover of H = 0.2 s after each such sample (B.2).
3. A_j = 10·log10(Σx² / a_j) is the level if the activity were a_j; the
   active level is where A_j − C_j = M, the margin M = 15.9 dB, interpolated
   linearly in dB between the thresholds around the crossing (B.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from diagnostics.audio.dsp import db, to_float

__all__ = ["MARGIN_DB", "ActiveSpeechLevel", "active_speech_level"]

TIME_CONSTANT_S = 0.03
HANGOVER_S = 0.2
MARGIN_DB = 15.9
_LSB = 1.0 / 32768.0
_THRESHOLDS = _LSB * 2.0 ** np.arange(16)


@dataclass(frozen=True)
class ActiveSpeechLevel:
    level_dbfs: float
    """Active speech level (P.56 "dBov" with 0 dB = full-scale square wave)."""
    activity: float
    """Speech activity factor, 0…1."""
    long_term_dbfs: float
    """Plain RMS level over the whole recording, pauses included."""


def _active_counts(envelope: npt.NDArray[np.float64], samplerate: int) -> npt.NDArray[np.int64]:
    """a_j of §B.2: samples at or above each threshold, plus the hangover after them."""
    hangover = int(np.ceil(HANGOVER_S * samplerate))
    index = np.arange(len(envelope))
    counts = np.zeros(len(_THRESHOLDS), dtype=np.int64)
    for j, threshold in enumerate(_THRESHOLDS):
        above = envelope >= threshold
        if not above.any():
            continue
        # Index of the most recent sample at or above threshold (−big before the first one).
        last = np.maximum.accumulate(np.where(above, index, -(hangover + 1)))
        # sv56 counts a below-threshold sample while its hang counter is below the hangover.
        counts[j] = int(np.count_nonzero(above | (index - last <= hangover)))
    return counts


def active_speech_level(samples: npt.ArrayLike, samplerate: int) -> ActiveSpeechLevel:
    x = to_float(samples)
    n = len(x)
    energy = float(np.sum(np.square(x)))
    long_term = db(energy / n) if n else db(0.0)
    if energy == 0.0:
        return ActiveSpeechLevel(level_dbfs=db(0.0), activity=0.0, long_term_dbfs=long_term)
    g = np.exp(-1.0 / (samplerate * TIME_CONSTANT_S))
    # Eq. B-1 and B-2: two cascaded one-pole smoothers of the rectified signal.
    p = sps.lfilter([1.0 - g], [1.0, -g], np.abs(x))
    q = sps.lfilter([1.0 - g], [1.0, -g], p)
    counts = _active_counts(q, samplerate)

    with np.errstate(divide="ignore"):
        a_db = np.where(counts > 0, 10.0 * np.log10(energy / np.maximum(counts, 1)), np.inf)
    c_db = 20.0 * np.log10(_THRESHOLDS)
    delta = a_db - c_db
    # Walk up the thresholds to the first whose margin has fallen to M or below (§B.3).
    below = np.flatnonzero(delta <= MARGIN_DB)
    if len(below) == 0:
        level = float(a_db[counts > 0][-1])
    elif below[0] == 0:
        level = float(a_db[0])
    else:
        j = int(below[0])
        hi, lo = delta[j - 1], delta[j]
        t = (hi - MARGIN_DB) / (hi - lo) if np.isfinite(hi) else 1.0
        level = float(a_db[j - 1] + t * (a_db[j] - a_db[j - 1])) if np.isfinite(a_db[j - 1]) else float(a_db[j])
    activity = min(1.0, energy / (n * 10.0 ** (level / 10.0)))
    return ActiveSpeechLevel(level_dbfs=level, activity=activity, long_term_dbfs=long_term)
