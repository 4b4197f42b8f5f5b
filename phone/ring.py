"""Lock-free single-producer/single-consumer ring of float32 samples between an audio callback and a clock.

The sound device's callback thread and pjsua2's clock thread must never wait
for each other, so the ring takes no lock: the writer alone advances the
write counter, the reader alone the read counter, and each publishes its
counter only after the samples are copied. Both counters only grow (Python
ints do not wrap), so ``written - read`` is the fill without ambiguity.
All storage is allocated up front; ``write`` and ``read_into`` copy into
slices of it and never allocate sample buffers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["RingBuffer"]


class RingBuffer:
    """Fixed-capacity float32 FIFO for one writer thread and one reader thread."""

    def __init__(self, capacity_samples: int) -> None:
        if capacity_samples <= 0:
            raise ValueError(f"ring capacity must be a positive number of samples (got {capacity_samples})")
        self.capacity_samples = capacity_samples
        self._buf = np.zeros(capacity_samples, dtype=np.float32)
        self._written = 0
        """Samples ever written; only the writer changes it."""
        self._read = 0
        """Samples ever consumed (read or discarded); only the reader changes it."""
        self.overrun_samples = 0
        """Samples the writer dropped because the ring was full (writer's counter)."""
        self.underrun_samples = 0
        """Zeros the reader padded with because the ring ran dry (reader's counter)."""
        self.discarded_samples = 0
        """Samples the reader threw away on purpose with :meth:`discard` (reader's counter)."""

    @property
    def available(self) -> int:
        """Samples ready to read (a lower bound for the reader, an upper bound for the writer)."""
        return self._written - self._read

    @property
    def free(self) -> int:
        """Room for samples (a lower bound for the writer)."""
        return self.capacity_samples - (self._written - self._read)

    def write(self, x: npt.NDArray[np.floating[Any]]) -> int:
        """Append as much of ``x`` as fits; the rest is dropped and counted. Writer only."""
        n = len(x)
        written = self._written
        take = min(n, self.capacity_samples - (written - self._read))
        if take < n:
            self.overrun_samples += n - take
        if take <= 0:
            return 0
        start = written % self.capacity_samples
        first = min(take, self.capacity_samples - start)
        np.copyto(self._buf[start : start + first], x[:first], casting="same_kind")
        if first < take:
            np.copyto(self._buf[: take - first], x[first:take], casting="same_kind")
        self._written = written + take  # publish only after the samples are in place
        return take

    def read_into(self, out: npt.NDArray[np.floating[Any]]) -> int:
        """Fill ``out`` with the oldest samples, zero-padding (and counting) what is missing. Reader only.

        Returns the number of real samples copied.
        """
        n = len(out)
        consumed = self._read
        take = min(n, self._written - consumed)
        start = consumed % self.capacity_samples
        first = min(take, self.capacity_samples - start)
        if first > 0:
            np.copyto(out[:first], self._buf[start : start + first], casting="same_kind")
        if first < take:
            np.copyto(out[first:take], self._buf[: take - first], casting="same_kind")
        if take < n:
            out[take:] = 0
            self.underrun_samples += n - take
        self._read = consumed + take  # release the space only after copying out
        return take

    def discard(self, n: int) -> int:
        """Drop up to ``n`` of the oldest samples (latency control). Reader only; returns how many."""
        take = max(0, min(n, self._written - self._read))
        self._read += take
        self.discarded_samples += take
        return take

    def clear(self) -> int:
        """Drop everything buffered. Reader only (the writer may keep writing); returns how many."""
        return self.discard(self._written - self._read)
