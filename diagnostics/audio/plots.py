"""Figures of the audio checks for the HTML report: pure functions of the session's arrays.

Each returns one plot in the schema of :mod:`diagnostics.report` (plain JSON, series decimated),
so the JSON report can draw the HTML again. None of them changes a measurement: they show what
the checks measured from, next to the thresholds the verdicts use (:mod:`diagnostics.audio.verdicts`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from diagnostics.audio.dsp import to_float
from diagnostics.audio.echo import echo_path_response
from diagnostics.audio.verdicts import RULES, TARGET_SPEECH_DBFS
from diagnostics.report import make_plot, plot_series

__all__ = ["LEVEL_WINDOW_S", "SPECTRUM_BANDS", "echo_impulse_plot", "level_plot", "spectrum_plot"]

LEVEL_WINDOW_S = 0.05
"""RMS window of the level figure: the noise floor's frame (``noise.FRAME_S``)."""
LEVEL_RANGE_DBFS = (-90.0, 5.0)
SPECTRUM_BANDS = 240
"""Log-spaced bands the Welch spectrum is averaged into: even detail on a log axis."""
SPECTRUM_LOW_HZ = 20.0
WELCH_SEGMENT_S = 0.085  # 4096 samples at 48 kHz: 11.7 Hz bins
ECHO_RANGE_DB = 100.0
ECHO_BIN_S = 0.001
# Floors, so that digital silence plots at the bottom instead of as −inf (which JSON cannot carry).
_FLOOR_DB = -150.0


def _db_power(mean_square: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.maximum(10.0 * np.log10(np.maximum(mean_square, 1e-30)), _FLOOR_DB)


def level_plot(samples: npt.ArrayLike, samplerate: int) -> dict[str, Any]:
    """Level over time: RMS and peak of 50 ms windows (dBFS), with the speech-level thresholds.

    Lines: each threshold of ``audio.mic_level`` labelled with the band above it, the RFC 7874
    target, and full scale (where the peak trace meets it, the capture clips).
    """
    x = to_float(samples)
    frame = max(1, round(LEVEL_WINDOW_S * samplerate))
    frames = x[: len(x) // frame * frame].reshape(-1, frame)
    t_s = (np.arange(len(frames)) + 0.5) * frame / samplerate
    rms = _db_power(np.mean(np.square(frames), axis=1))
    peak = _db_power(np.max(np.square(frames), axis=1)) if len(frames) else np.zeros(0)
    thresholds = [
        (rule.low, rule.band) for rule in RULES if rule.check_id == "audio.mic_level" and math.isfinite(rule.low)
    ]
    return make_plot(
        "line",
        "Microphone level over time",
        "time (s)",
        "level (dBFS)",
        [plot_series(f"RMS ({LEVEL_WINDOW_S * 1000:.0f} ms)", t_s, rms), plot_series("peak", t_s, peak)],
        hlines=[
            *thresholds,
            (TARGET_SPEECH_DBFS, f"target {TARGET_SPEECH_DBFS:.0f} dBFS (RFC 7874)"),
            (0.0, "full scale: clipping"),
        ],
        y_range=LEVEL_RANGE_DBFS,
    )


def spectrum_plot(
    samples: npt.ArrayLike, samplerate: int, band_hz: tuple[float, float] | None = None
) -> dict[str, Any]:
    """Power spectral density of a capture (Welch, Hann, 50 % overlap) in dBFS/Hz over log-spaced bands.

    ``band_hz`` marks the band a measurement looked at (the noise floor's 50–7000 Hz).
    """
    x = to_float(samples)
    nperseg = min(len(x), round(WELCH_SEGMENT_S * samplerate))
    if nperseg < 16:
        raise ValueError(f"need at least 16 samples for a spectrum (got {len(x)})")
    freqs, density = sps.welch(x, samplerate, window="hann", nperseg=nperseg, scaling="density")
    edges = np.geomspace(SPECTRUM_LOW_HZ, samplerate / 2.0, SPECTRUM_BANDS + 1)
    which = np.digitize(freqs, edges) - 1  # band of each bin; −1 and SPECTRUM_BANDS are outside
    centres, levels = [], []
    for band in range(SPECTRUM_BANDS):
        inside = which == band
        if inside.any():  # at low frequencies a band can be narrower than a bin
            centres.append(float(np.sqrt(edges[band] * edges[band + 1])))
            levels.append(float(np.mean(density[inside])))
    vlines = []
    if band_hz is not None:
        low, high = band_hz
        vlines = [(low, f"{low:.0f} Hz"), (high, f"{high:.0f} Hz")]
    return make_plot(
        "line",
        "Spectrum of the microphone capture",
        "frequency (Hz)",
        "power density (dBFS/Hz)",
        [plot_series("microphone", centres, _db_power(np.asarray(levels)))],
        x_log=True,
        vlines=vlines,
    )


def echo_impulse_plot(
    reference: npt.ArrayLike,
    capture: npt.ArrayLike,
    samplerate: int,
    max_delay_s: float,
    delay_ms: float | None,
    erl_db: float | None = None,
) -> dict[str, Any]:
    """Magnitude of the estimated echo path over delay (dB), with the measured delay when there was an echo
    and the measured echo return loss as a level (−ERL: the echo's power relative to what was played).

    Each millisecond shows its strongest lag (peak hold): the figure keeps the echo's height and place,
    not the envelope's meaningless nulls in the noise. The peak can sit a few dB under −ERL: clock
    drift and a speaker's colouring spread the echo over neighbouring lags, while ERL counts its power.
    """
    response = echo_path_response(reference, capture, samplerate, max_delay_s)
    per_bin = max(1, min(round(ECHO_BIN_S * samplerate), len(response.gain_db)))
    usable = len(response.gain_db) // per_bin * per_bin
    gains = response.gain_db[:usable].reshape(-1, per_bin)
    strongest = np.argmax(gains, axis=1)
    rows = np.arange(len(gains))
    lag_ms = response.lag_ms[:usable].reshape(-1, per_bin)[rows, strongest]
    gain_db = gains[rows, strongest]
    top = max(5.0, math.ceil(float(np.max(gain_db)) / 5.0) * 5.0 + 5.0)
    vlines = [(delay_ms, f"echo after {delay_ms:.1f} ms")] if delay_ms is not None else []
    hlines = [(-erl_db, f"echo return loss {erl_db:.1f} dB")] if erl_db is not None else []
    return make_plot(
        "impulse",
        "Echo path: how loud the speaker comes back into the microphone",
        "delay (ms)",
        "echo path gain (dB)",
        [plot_series("echo path (strongest per ms)", lag_ms, gain_db)],
        hlines=hlines,
        vlines=vlines,
        y_range=(top - ECHO_RANGE_DB, top),
    )
