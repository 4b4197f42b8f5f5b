"""Streaming rational resampler: sound-device rate <-> the conference clock, block by block.

Sound devices run at what the hardware likes (44.1 or 48 kHz); pjsua2's
conference bridge runs at 16 kHz. The ratio is ``up/down`` in lowest terms
(48000 -> 16000 is 1/3, 44100 -> 16000 is 160/441). Conceptually the input is
zero-stuffed by ``up``, low-pass filtered at the prototype rate
``in_rate * up`` and kept every ``down``-th sample; the polyphase form
computes only the kept outputs, each as a dot product of ``taps_per_phase``
input samples with one phase of the filter.

The filter is a linear-phase windowed sinc (Kaiser window, ``scipy.signal.kaiserord``
and ``firwin``) designed once at construction: flat to ``passband_fraction`` of
the lower Nyquist frequency and at least ``stopband_db`` down from the lower
Nyquist frequency on, so nothing aliases into or images out of the telephone
band. Its group delay is the constant ``delay_ms``.

Output count is a function of the total input count only: after N input
samples exactly ``ceil(N * up / down)`` outputs have been produced, however
the input was split into blocks (output m is emitted as soon as prototype
sample ``m * down`` is known), so there is no drift between the two clocks'
sample counts.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal as sps

__all__ = ["Resampler"]


class Resampler:
    """Stateful polyphase resampler from ``in_rate_hz`` to ``out_rate_hz`` (identity when they match)."""

    def __init__(
        self, in_rate_hz: int, out_rate_hz: int, *, passband_fraction: float = 0.875, stopband_db: float = 70.0
    ) -> None:
        if in_rate_hz <= 0 or out_rate_hz <= 0:
            raise ValueError(f"sample rates must be positive (got {in_rate_hz} -> {out_rate_hz} Hz)")
        if not 0 < passband_fraction < 1:
            raise ValueError(f"passband_fraction must lie between 0 and 1 (got {passband_fraction})")
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        g = math.gcd(in_rate_hz, out_rate_hz)
        self.up = out_rate_hz // g
        self.down = in_rate_hz // g
        self._phase_pos = 0
        """Prototype-rate index of the next output, counted from the first sample of the next block."""
        if self.up == self.down:
            self.taps = 1
            self._phases = np.ones((1, 1))
            self._history = np.zeros(0)
            return
        proto_rate_hz = in_rate_hz * self.up
        nyquist_hz = min(in_rate_hz, out_rate_hz) / 2
        pass_hz = passband_fraction * nyquist_hz
        # The transition band ends exactly at the lower Nyquist frequency: stopband_db holds from there on.
        numtaps, beta = sps.kaiserord(stopband_db, (nyquist_hz - pass_hz) / (proto_rate_hz / 2))
        numtaps += 1 - numtaps % 2  # odd: the delay is a whole number of prototype samples
        h = sps.firwin(numtaps, (pass_hz + nyquist_hz) / 2, window=("kaiser", beta), fs=proto_rate_hz)
        self.taps = int(numtaps)
        per_phase = -(-numtaps // self.up)
        padded = np.zeros(per_phase * self.up)
        padded[:numtaps] = h * self.up  # zero-stuffing by `up` divides the gain by `up`
        # Row p is phase p, reversed so that it lines up with a window of ascending input samples.
        self._phases = np.ascontiguousarray(padded.reshape(per_phase, self.up).T[:, ::-1])
        self._history = np.zeros(per_phase - 1)

    @property
    def identity(self) -> bool:
        return self.up == self.down

    @property
    def taps_per_phase(self) -> int:
        return int(self._phases.shape[1])

    @property
    def delay_samples(self) -> float:
        """Group delay in output samples (constant: the filter is linear-phase)."""
        return (self.taps - 1) / 2 / self.down

    @property
    def delay_ms(self) -> float:
        return (self.taps - 1) / 2 / (self.in_rate_hz * self.up) * 1000.0

    def output_count(self, n_in: int) -> int:
        """Outputs that feeding ``n_in`` more input samples will produce."""
        return max(0, -(-(n_in * self.up - self._phase_pos) // self.down))

    def inputs_needed(self, n_out: int) -> int:
        """Fewest further input samples that produce at least ``n_out`` outputs."""
        if n_out <= 0:
            return 0
        return ((n_out - 1) * self.down + self._phase_pos) // self.up + 1

    def process(self, block: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Resample the next ``block`` of the stream; returns ``output_count(len(block))`` samples."""
        x = np.asarray(block, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"expected a mono block (1-D array), got shape {x.shape}")
        if self.identity or not len(x):
            return x.copy()
        n = len(x)
        count = self.output_count(n)
        ext = np.concatenate((self._history, x))
        positions = self._phase_pos + self.down * np.arange(count)
        windows = sliding_window_view(ext, self.taps_per_phase)
        out: npt.NDArray[np.float64] = np.einsum(
            "ij,ij->i", windows[positions // self.up], self._phases[positions % self.up]
        )
        self._phase_pos += count * self.down - n * self.up
        self._history = ext[len(ext) - len(self._history) :].copy()
        return out

    def reset(self) -> None:
        """Forget the stream: the next block starts from silence, as after construction."""
        self._history[:] = 0
        self._phase_pos = 0

    def __repr__(self) -> str:
        return f"Resampler({self.in_rate_hz} -> {self.out_rate_hz} Hz, {self.up}/{self.down}, {self.taps} taps)"

