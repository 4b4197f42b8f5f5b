"""Acoustic echo: echo path delay, clock drift and echo return loss (ERL). Pure functions.

Method. The excitation is band-limited pseudo-random noise (flat spectrum, so
the cross-correlation peak is sharp and every band is exercised). The capture
must be aligned to the reference: sample ``i`` of both belongs to the same
instant (the probe does that with the devices' timestamps).

* Delay: cross-correlation restricted to the excitation band finds the
  integer lag of the strongest echo; then, block by block (0.25 s), the
  correlation is interpolated band-limited (16× zero-padded IFFT, then a
  parabola through the three top points) to a fraction of a microsecond.
  A straight line through the block delays gives the delay at the start of
  the excitation and the clock drift between playback and capture (ppm): a
  correlation over the whole excitation would smear under drift.
* ERL (ITU-T G.168 §3.5 definition: attenuation of the echo path, playback
  power over echo power) is measured as in-band power, not from the
  correlation peak, whose height drift and nonlinearity bias: captured power
  during the echo minus the noise power measured with nothing playing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import signal as sps

from diagnostics.audio.dsp import FloatArray, band_power, bandpass, db, to_float

__all__ = [
    "ERL_BAND_HZ",
    "EXCITATION_BAND_HZ",
    "EchoEstimate",
    "EchoPathResponse",
    "echo_path_response",
    "estimate_echo",
    "make_excitation",
]

EXCITATION_BAND_HZ = (200.0, 7500.0)
ERL_BAND_HZ = (300.0, 3400.0)
"""G.168 measures echo return loss in the telephone band."""
BLOCK_S = 0.25
INTERPOLATION = 16
# Correlation peak over the typical off-peak value: below this, nothing came back.
DETECTION_THRESHOLD_DB = 20.0


@dataclass(frozen=True)
class EchoEstimate:
    detected: bool
    """Whether the excitation came back at all (correlation peak clearly above its noise)."""
    delay_ms: float | None
    """Echo path delay at the start of the excitation."""
    drift_ppm: float | None
    """How much faster the capture clock runs than the playback clock (the delay grows by this)."""
    erl_db: float | None
    """Echo return loss in ERL_BAND_HZ, noise subtracted. None when not detected."""
    erl_min_db: float
    """The ERL is at least this: the echo is no stronger than the noise (useful when not detected)."""
    peak_to_noise_db: float
    echo_to_noise_db: float | None


def make_excitation(samplerate: int, duration_s: float, level_dbfs: float = -15.0, seed: int = 1) -> FloatArray:
    """Band-limited white noise at ``level_dbfs`` RMS with 10 ms raised-cosine fades."""
    rng = np.random.default_rng(seed)
    n = round(duration_s * samplerate)
    x = bandpass(rng.standard_normal(n), samplerate, *EXCITATION_BAND_HZ)
    x *= 10.0 ** (level_dbfs / 20.0) / np.sqrt(np.mean(np.square(x)))
    fade = int(0.01 * samplerate)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    x[:fade] *= ramp
    x[-fade:] *= ramp[::-1]
    return x


def _band_mask(n_fft: int, samplerate: int) -> npt.NDArray[np.float64]:
    freqs = np.fft.rfftfreq(n_fft, 1.0 / samplerate)
    low, high = EXCITATION_BAND_HZ[0], min(EXCITATION_BAND_HZ[1], 0.45 * samplerate)
    return ((freqs >= low) & (freqs <= high)).astype(np.float64)


def _correlate(ref: FloatArray, cap: FloatArray, samplerate: int, max_lag: int, upsample: int = 1) -> FloatArray:
    """In-band cross-correlation r[k] = Σ ref[i]·cap[i+k] for k = 0 … max_lag (step 1/upsample)."""
    n_fft = int(2 ** np.ceil(np.log2(len(ref) + len(cap))))
    spec = np.conj(np.fft.rfft(ref, n_fft)) * np.fft.rfft(cap, n_fft) * _band_mask(n_fft, samplerate)
    r = np.fft.irfft(spec, n_fft * upsample) * upsample
    return np.asarray(r[: max_lag * upsample + 1], dtype=np.float64)


def _parabolic_peak(r: FloatArray, k: int) -> float:
    if 0 < k < len(r) - 1:
        a, b, c = float(r[k - 1]), float(r[k]), float(r[k + 1])
        denom = a - 2.0 * b + c
        if denom < 0:
            return k + 0.5 * (a - c) / denom
    return float(k)


def _block_delays(ref: FloatArray, cap: FloatArray, samplerate: int, lag: int) -> tuple[FloatArray, FloatArray]:
    """Fine delay (samples) of each block of the reference, and the block centres (s)."""
    block = int(BLOCK_S * samplerate)
    margin = max(8, int(0.002 * samplerate))
    centres, delays = [], []
    for start in range(0, len(ref) - block + 1, block):
        seg_start = start + lag - margin
        if seg_start < 0 or seg_start + block + 2 * margin > len(cap):
            continue
        r = _correlate(
            ref[start : start + block],
            cap[seg_start : seg_start + block + 2 * margin],
            samplerate,
            2 * margin,
            INTERPOLATION,
        )
        k = int(np.argmax(r))
        delays.append(seg_start - start + _parabolic_peak(r, k) / INTERPOLATION)
        centres.append((start + block / 2.0) / samplerate)
    return np.asarray(centres), np.asarray(delays)


def estimate_echo(
    reference: npt.ArrayLike,
    capture: npt.ArrayLike,
    samplerate: int,
    noise: npt.ArrayLike,
    max_delay_s: float = 0.6,
) -> EchoEstimate:
    """Echo of ``reference`` in ``capture`` (aligned, same rate); ``noise`` is capture with nothing played.

    ``capture`` should extend ``max_delay_s`` past the end of the reference so the whole echo is in it.
    """
    ref, cap, quiet = to_float(reference), to_float(capture), to_float(noise)
    if len(quiet) < samplerate // 2:
        raise ValueError(f"need at least 0.5 s of noise-only capture (got {len(quiet) / samplerate:.3f} s)")
    max_lag = min(int(max_delay_s * samplerate), len(cap) - len(ref))
    if max_lag <= 0:
        raise ValueError("the capture must be longer than the reference by the largest delay to look for")

    r = np.abs(_correlate(ref, cap, samplerate, max_lag))
    lag = int(np.argmax(r))
    off_peak = np.delete(r, np.arange(max(lag - 50, 0), min(lag + 51, len(r))))
    peak_to_noise = db(float(r[lag]) ** 2) - db(float(np.median(off_peak)) ** 2 * 2.0) if len(off_peak) else 0.0

    low, high = ERL_BAND_HZ
    ref_power = band_power(ref, samplerate, low, high)
    noise_power = band_power(quiet, samplerate, low, high)
    erl_min = db(ref_power) - db(noise_power)
    if peak_to_noise < DETECTION_THRESHOLD_DB:
        return EchoEstimate(False, None, None, None, erl_min, peak_to_noise, None)

    centres, delays = _block_delays(ref, cap, samplerate, lag)
    if len(delays) >= 2:
        slope, intercept = np.polyfit(centres, delays, 1)
    else:
        slope, intercept = 0.0, float(delays[0]) if len(delays) else float(lag)
    echo_segment = cap[lag : lag + len(ref)]
    echo_power = band_power(echo_segment, samplerate, low, high) - noise_power
    if echo_power <= 0:
        erl, echo_to_noise = None, None
    else:
        erl, echo_to_noise = db(ref_power) - db(echo_power), db(echo_power) - db(noise_power)
    return EchoEstimate(
        detected=True,
        delay_ms=float(intercept) * 1000.0 / samplerate,
        drift_ppm=float(slope) / samplerate * 1e6,
        erl_db=erl,
        erl_min_db=erl_min,
        peak_to_noise_db=peak_to_noise,
        echo_to_noise_db=echo_to_noise,
    )


@dataclass(frozen=True)
class EchoPathResponse:
    """How strongly the capture hears the reference at each delay: the echo path, for a figure."""

    lag_ms: FloatArray
    gain_db: FloatArray
    """Envelope of the in-band cross-correlation divided by the reference's energy. The excitation
    is white in its band, so this is the magnitude of the echo path's impulse response: a pure
    delay with 10 dB of loss peaks at −10 dB."""


def echo_path_response(
    reference: npt.ArrayLike, capture: npt.ArrayLike, samplerate: int, max_delay_s: float = 0.6
) -> EchoPathResponse:
    """The echo path's magnitude over delays 0 … ``max_delay_s`` (same inputs as :func:`estimate_echo`).

    The same in-band correlation the delay estimate starts from, with its envelope (magnitude of
    the analytic signal) so that the band-pass ringing does not hide the shape.
    """
    ref, cap = to_float(reference), to_float(capture)
    max_lag = min(int(max_delay_s * samplerate), len(cap) - len(ref))
    if max_lag <= 0:
        raise ValueError("the capture must be longer than the reference by the largest delay to look for")
    energy = float(np.sum(np.square(ref)))
    r = _correlate(ref, cap, samplerate, max_lag) / max(energy, 1e-20)
    envelope = np.abs(sps.hilbert(r))
    return EchoPathResponse(
        lag_ms=np.arange(len(r), dtype=np.float64) * 1000.0 / samplerate,
        gain_db=20.0 * np.log10(np.maximum(envelope, 1e-10)),
    )
