"""The phone's audio bridge: sound devices <-> pjsua2's conference clock, through lock-free rings.

Two clocks meet here. The sound devices call back on PortAudio's threads at
the device rate in blocks of ``blocksize``; the conference bridge calls
:meth:`DeviceBridge.read_frame` and :meth:`DeviceBridge.write_frame` from its
clock thread every ``frame_ms`` at ``clock_rate_hz``. Between them sits one
:class:`~phone.ring.RingBuffer` per direction holding device-rate float32
samples. The device callbacks only copy between the device buffer and a ring
and bump counters: no allocation, logging, locking or pjsua2 (a late
callback is an audible click). Resampling and int16 conversion happen on the
clock thread.

Jitter and drift, per direction (:class:`_Cushion`):

* A ring starts to flow once it holds what the next tick takes plus a
  cushion (``jitter_ms`` to begin with); after running dry it waits for that
  again, so a late tick costs one gap, not a click per block.
* An underrun shows the device delivers more coarsely, relative to the
  clock's phase, than the cushion covers: the cushion grows by the shortfall
  (at most a device block, plus ``_GROW_MARGIN_MS``, up to ``_MAX_CUSHION_MS``).
  Without stalls this happens at most once, when a block boundary crosses a tick.
* The clocks drift (100 ppm is 4.4 samples/s at 44.1 kHz). The smallest fill
  at the ticks over ``_DRIFT_WINDOW_FRAMES`` shows it: more than a device
  block above the cushion is dropped (capture: the oldest samples; playback:
  the newest, as only the callback may advance the read side); half the
  cushion used up is made good with silence. Both are counted.

Separate input and output streams: one duplex stream on PulseAudio's ALSA
device returned silence (see ``diagnostics.audio.probe``).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from diagnostics.audio.dsp import db
from diagnostics.audio.probe import DeviceChoice, _routed, _sounddevice
from diagnostics.errors import MeasurementError
from phone.resample import Resampler
from phone.ring import RingBuffer

__all__ = ["BridgeStats", "DeviceBridge", "DirectionStats"]

log = logging.getLogger(__name__)

SOUND_SERVER_RATE_HZ = 48000
_SOUND_SERVER_PCMS = frozenset({"pulse", "default", "pipewire"})
"""PortAudio's names of ALSA's PCMs into the sound server (libasound2-plugins)."""
_RING_S = 0.5
"""Ring capacity: room for the clock thread to stall this long before the microphone loses samples."""
_STALE_MS = 100.0
"""A backlog beyond this (the clock stopped reading, the speaker's callback stalled) is cut at once."""
_MAX_CUSHION_MS = 40.0
"""The learned cushion never grows beyond this: a device that needs more is broken, not bursty."""
_GROW_MARGIN_MS = 2.0
"""An underrun grows the cushion by its shortfall and this much, so that jitter on top does not repeat it."""
_DRIFT_WINDOW_FRAMES = 25
"""Frames over which the smallest fill is taken (0.5 s at 20 ms): long enough to see every callback phase."""
_FIRST_WINDOW_FRAMES = 5
"""The first window after the ring (re)starts to flow is shorter, so priming's overshoot goes within 0.1 s."""
_INT16_SCALE = 32768.0
"""int16 <-> float as everywhere in phonekit (``diagnostics.audio.dsp.to_float``): full scale is 1.0."""


@dataclass(frozen=True)
class DirectionStats:
    """One direction of the bridge. Sample counts are at the device rate."""

    device: str
    device_rate_hz: int
    device_latency_ms: float
    """Buffering between the callback and the converter, as PortAudio reports it."""
    ring_fill_ms: float
    """At the last tick: capture, what stayed in the ring after the frame was read; playback, what was queued
    ahead of the frame just written. Either way how long that frame waits in the ring."""
    cushion_ms: float
    """The fill the ring keeps at the clock's ticks: ``jitter_ms``, grown by any underrun (see ``_Cushion``)."""
    resampler_delay_ms: float
    added_latency_ms: float
    """What the bridge adds beyond the device buffers: ``ring_fill_ms + resampler_delay_ms``."""
    frames: int
    """Frames exchanged with the conference clock."""
    underrun_samples: int
    """Silence inserted because the ring ran dry (after the first samples flowed)."""
    overrun_samples: int
    """Samples lost because the ring was full."""
    dropped_samples: int
    """Samples dropped on purpose to keep latency bounded (device clock fast, a stalled clock or callback)."""
    padded_samples: int
    """Silence inserted on purpose to keep the cushion (device clock slow)."""
    device_xruns: int
    """Callbacks in which PortAudio flagged an input overflow or output underflow."""


@dataclass(frozen=True)
class BridgeStats:
    """Both directions; None where the bridge has no device for it."""

    capture: DirectionStats | None
    """Microphone -> conference."""
    playback: DirectionStats | None
    """Conference -> speaker."""


class _Cushion:
    """How far a ring's fill may dip at the clock's ticks: a learned target, and how to hold the fill at it.

    The target starts at ``jitter_ms``. An underrun means the device delivers in
    coarser bursts (relative to the clock's phase) than the target covers, so
    the target grows by the shortfall (at most a device block: more was a stall)
    plus a margin, up to ``_MAX_CUSHION_MS``. It never shrinks. Clock drift
    moves the smallest fill of a window away from the target: more than one
    device block above it (the granularity the device delivers in; less would
    chase its phase) is dropped (device fast); once half the target is used
    up, the rest is made up with silence (device slow).
    """

    def __init__(self, target: int, slack: int, limit: int, margin: int) -> None:
        self.target = min(target, limit)
        self.margin = margin
        self.slack = slack
        self.limit = limit
        self.smallest = math.inf
        self.ticks = 0

    def restart(self) -> None:
        self.smallest, self.ticks = math.inf, _DRIFT_WINDOW_FRAMES - _FIRST_WINDOW_FRAMES

    def grow(self, shortfall: int) -> None:
        # Burstiness is at most about a block; a longer gap was a stall, which a cushion cannot cover.
        self.target = min(self.target + min(shortfall, self.slack) + self.margin, self.limit)

    def correction(self, fill: int) -> int:
        """Record this tick's fill; at a window's end, samples to drop (> 0) or to insert (< 0), else 0."""
        self.smallest = min(self.smallest, fill)
        self.ticks += 1
        if self.ticks < _DRIFT_WINDOW_FRAMES:
            return 0
        off = int(self.smallest) - self.target
        self.smallest, self.ticks = math.inf, 0
        return off if off > self.slack or 2 * off < -self.target else 0


def _direction_stats(d: _Capture | _Playback, fill_ms: float, underrun: int, dropped: int) -> DirectionStats:
    """One direction's figures; ``fill_ms``, underruns and drops are what the two directions count differently."""
    return DirectionStats(
        device=d.label,
        device_rate_hz=d.device_rate_hz,
        device_latency_ms=d.latency_ms,
        ring_fill_ms=fill_ms,
        cushion_ms=d.cushion.target / d.device_rate_hz * 1000,
        resampler_delay_ms=d.resampler.delay_ms,
        added_latency_ms=fill_ms + d.resampler.delay_ms,
        frames=d.frames,
        underrun_samples=underrun,
        overrun_samples=d.ring.overrun_samples,
        dropped_samples=dropped,
        padded_samples=d.padded_samples,
        device_xruns=d.xruns,
    )


class _Capture:
    """Microphone -> conference: the input callback writes the ring, ``read_frame`` reads it."""

    def __init__(self, label: str, device_rate_hz: int, clock_rate_hz: int, frame: int, jitter: int, block: int):
        self.label = label
        self.device_rate_hz = device_rate_hz
        self.ring = RingBuffer(max(round(_RING_S * device_rate_hz), 4 * block))
        self.resampler = Resampler(device_rate_hz, clock_rate_hz)
        self.frame = frame
        self.cushion = _Cushion(jitter, block, round(_MAX_CUSHION_MS / 1000 * device_rate_hz),
                                round(_GROW_MARGIN_MS / 1000 * device_rate_hz))
        self.stale = round(_STALE_MS / 1000 * device_rate_hz)
        # Most device samples one frame can take: inputs_needed() peaks with the resampler's phase.
        self.scratch = np.zeros(((frame * self.resampler.down - 1) // self.resampler.up) + 2, dtype=np.float32)
        self.pending = RingBuffer(2 * frame + self.resampler.up)  # clock-rate leftovers when upsampling
        self.clock_frame = np.zeros(frame, dtype=np.float32)
        self.flowing = False
        self.ever_flowed = False
        self.gap_samples = 0
        self.pad = 0
        """Silence still to insert ahead of the ring's samples (the device runs slow)."""
        self.padded_samples = 0
        self.fill_samples = 0
        self.frames = 0
        self.xruns = 0
        self.latency_ms = 0.0

    def on_audio(self, indata: Any, frames: int, time: Any, status: Any) -> None:
        """PortAudio's input callback: copy into the ring, nothing else."""
        if status:
            self.xruns += 1
        self.ring.write(indata[:, 0])

    def read(self) -> npt.NDArray[np.float32]:
        """The next frame at the clock rate (silence while the ring primes)."""
        self.frames += 1
        want = self.frame - self.pending.available
        if want > 0:
            need = self.resampler.inputs_needed(want)
            available = self.ring.available
            if not self.flowing:
                if available < need + self.cushion.target:
                    if self.ever_flowed:
                        self.gap_samples += need
                    self.clock_frame[:] = 0
                    return self.clock_frame
                self.flowing = self.ever_flowed = True
                self.cushion.restart()
            surplus = available - need
            if surplus > self.stale:  # nobody read for a while: what is buffered is too old to send
                surplus -= self.ring.discard(surplus - self.cushion.target)
            block = self.scratch[:need]
            pad = min(self.pad, need)  # silence owed to the cushion goes first
            if pad:
                block[:pad] = 0
                self.pad -= pad
                self.padded_samples += pad
                surplus += pad
            got = self.ring.read_into(block[pad:])  # zero-pads and counts a shortfall
            self.fill_samples = max(surplus, 0)
            if got < need - pad:  # ran dry: re-prime with a bigger cushion
                self.flowing = False
                self.cushion.grow(need - pad - got)
            elif (correction := self.cushion.correction(surplus)) > 0:
                self.ring.discard(correction)
            else:
                self.pad -= correction
            self.pending.write(self.resampler.process(block))
        self.pending.read_into(self.clock_frame)
        return self.clock_frame

    def stats(self) -> DirectionStats:
        fill_ms = self.fill_samples / self.device_rate_hz * 1000
        fill_ms += self.pending.available / self.resampler.out_rate_hz * 1000
        return _direction_stats(self, fill_ms, self.ring.underrun_samples + self.gap_samples,
                                self.ring.discarded_samples)  # fmt: skip


class _Playback:
    """Conference -> speaker: ``write_frame`` writes the ring, the output callback reads it."""

    def __init__(self, label: str, device_rate_hz: int, clock_rate_hz: int, frame: int, jitter: int, block: int):
        self.label = label
        self.device_rate_hz = device_rate_hz
        self.ring = RingBuffer(max(round(_RING_S * device_rate_hz), 4 * block))
        self.resampler = Resampler(clock_rate_hz, device_rate_hz)
        self.device_frame = self.resampler.output_count(frame)
        self.cushion = _Cushion(jitter, block, round(_MAX_CUSHION_MS / 1000 * device_rate_hz),
                                round(_GROW_MARGIN_MS / 1000 * device_rate_hz))
        self.prime = self.device_frame + self.cushion.target
        """Written by the clock thread, read by the callback: the fill at which playback (re)starts."""
        self.flowing = False
        """Owned by the callback: True from priming until the ring runs dry."""
        self.underruns_seen = 0
        self.stale = round(_STALE_MS / 1000 * device_rate_hz)
        self.silence = np.zeros(self.cushion.limit + block, dtype=np.float32)
        self.padded_samples = 0
        self.debt = 0
        """Samples still to cut from incoming frames to bring the latency back to the cushion."""
        self.fill_samples = 0
        self.frames = 0
        self.dropped_samples = 0
        self.xruns = 0
        self.latency_ms = 0.0

    def on_audio(self, outdata: Any, frames: int, time: Any, status: Any) -> None:
        """PortAudio's output callback: copy out of the ring (silence until a frame and the cushion are in)."""
        if status:
            self.xruns += 1
        if not self.flowing:
            if self.ring.available < self.prime:
                outdata.fill(0)
                return
            self.flowing = True
        if self.ring.read_into(outdata[:, 0]) < frames:
            self.flowing = False

    def write(self, frame: npt.NDArray[np.float64]) -> None:
        self.frames += 1
        samples = self.resampler.process(frame)
        underruns = self.ring.underrun_samples
        if underruns > self.underruns_seen:  # the callback ran dry: keep more in the ring from now on
            self.cushion.grow(underruns - self.underruns_seen)
            self.underruns_seen = underruns
            self.prime = self.device_frame + self.cushion.target
        queued = self.ring.available
        self.fill_samples = queued
        if queued > self.stale:  # the callback stalled (or started late): what is queued is too late to play
            self.debt = max(self.debt, queued - self.cushion.target)
        if not self.flowing or self.debt:  # priming, or still cutting: nothing to judge spare by yet
            self.cushion.restart()
        elif (correction := self.cushion.correction(queued)) > 0:
            self.debt = correction
        elif correction < 0:
            self.padded_samples += self.ring.write(self.silence[:-correction])
        if self.debt:
            # Only the callback may drop the oldest samples; dropping as many of the newest is the same cut,
            # at most a frame per tick.
            skip = min(self.debt, len(samples))
            self.debt -= skip
            self.dropped_samples += skip
            samples = samples[skip:]
        self.ring.write(samples)

    def stats(self) -> DirectionStats:
        fill_ms = self.fill_samples / self.device_rate_hz * 1000
        return _direction_stats(self, fill_ms, self.ring.underrun_samples, self.dropped_samples)


class DeviceBridge:
    """Microphone and speaker as pjsua2's conference clock sees them: 20 ms int16 frames at ``clock_rate_hz``.

    ``input``/``output`` come from :func:`diagnostics.audio.probe.resolve_device`;
    None means no such stream (``read_frame`` gives silence, ``write_frame``
    only meters). ``device_rate_hz`` None opens each device at its default
    rate (on Linux, the sound server's ALSA PCMs open at its 48 kHz, see
    :data:`SOUND_SERVER_RATE_HZ`); ``blocksize`` None means 10 ms at the device
    rate: every block is a Python callback per stream, and 5 ms blocks (10 ms
    of device latency instead of 20) doubled the bridge's CPU (bench/call_cpu.py).
    ``jitter_ms``
    is the cushion each ring starts with beyond what a tick takes. ``latency``
    goes to PortAudio as is ("low", "high" or seconds).
    """

    def __init__(
        self,
        input: DeviceChoice | None,
        output: DeviceChoice | None,
        clock_rate_hz: int = 16000,
        frame_ms: int = 20,
        device_rate_hz: int | None = None,
        blocksize: int | None = None,
        *,
        jitter_ms: float = 5.0,
        latency: str | float = "low",
    ) -> None:
        frame = clock_rate_hz * frame_ms / 1000
        if clock_rate_hz <= 0 or frame_ms <= 0 or not frame.is_integer():
            raise ValueError(
                f"frame_ms at clock_rate_hz must be a whole number of samples (got {frame_ms} ms at {clock_rate_hz} Hz)"
            )
        if device_rate_hz is not None and device_rate_hz <= 0:
            raise ValueError(f"device_rate_hz must be positive (got {device_rate_hz})")
        if blocksize is not None and blocksize <= 0:
            raise ValueError(f"blocksize must be a positive number of samples (got {blocksize})")
        if jitter_ms < 0:
            raise ValueError(f"jitter_ms must be >= 0 (got {jitter_ms})")
        self.input = input
        self.output = output
        self.clock_rate_hz = clock_rate_hz
        self.frame_ms = frame_ms
        self.frame_samples = int(frame)
        self.device_rate_hz = device_rate_hz
        self.blocksize = blocksize
        self.jitter_ms = jitter_ms
        self.latency = latency
        self.muted = False
        """While True the microphone sends exact zeros; the input meter still shows what it hears."""
        self._capture: _Capture | None = None
        self._playback: _Playback | None = None
        self._streams: list[Any] = []
        self._in_level = self._in_peak = self._out_level = self._out_peak = 0.0
        self._convert = np.zeros(self.frame_samples)
        self._incoming = np.zeros(self.frame_samples)

    # -- life cycle -------------------------------------------------------------

    def start(self) -> None:
        """Open and start the streams; errors become :class:`MeasurementError` with a remedy."""
        if self._streams:
            return
        sd = _sounddevice()
        try:
            if self.input is not None:
                with _opening(sd, self.input, "microphone"):
                    rate, block, jitter = self._geometry(sd, self.input, capture=True)
                    capture = _Capture(self.input.label, rate, self.clock_rate_hz, self.frame_samples, jitter, block)
                    capture.latency_ms = self._open_stream(sd, self.input, capture.on_audio, rate, block, True)
                self._capture = capture
            if self.output is not None:
                with _opening(sd, self.output, "speaker"):
                    rate, block, jitter = self._geometry(sd, self.output, capture=False)
                    playback = _Playback(self.output.label, rate, self.clock_rate_hz, self.frame_samples, jitter,
                                         block)
                    playback.latency_ms = self._open_stream(sd, self.output, playback.on_audio, rate, block, False)
                self._playback = playback
        except BaseException:
            self._close_streams()
            raise

    def stop(self) -> None:
        """Stop and close both streams; ``read_frame``/``write_frame`` then give and take silence."""
        self._close_streams()

    @property
    def running(self) -> bool:
        """Whether the device streams are open (between :meth:`start` and :meth:`stop`)."""
        return bool(self._streams)

    def __enter__(self) -> DeviceBridge:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _geometry(self, sd: ModuleType, choice: DeviceChoice, *, capture: bool) -> tuple[int, int, int]:
        """Device rate, block and jitter cushion (samples) for one stream."""
        kind = "input" if capture else "output"
        info = sd.query_devices(choice.index, kind) if choice.index is not None else sd.query_devices(kind=kind)
        if self.device_rate_hz is not None:
            rate = self.device_rate_hz
        elif sys.platform.startswith("linux") and str(info.get("name", "")) in _SOUND_SERVER_PCMS:
            # ALSA's plugin into PulseAudio/PipeWire says 44.1 kHz, but the server runs at 48 kHz: opening
            # at 48 kHz spares a resampling stage and its uneven delivery (added latency 7 ms, was 12-14).
            rate = SOUND_SERVER_RATE_HZ
        else:
            rate = round(float(info["default_samplerate"]))
        block = self.blocksize or max(1, rate // 100)
        return rate, block, round(self.jitter_ms / 1000 * rate)

    def _open_stream(
        self, sd: ModuleType, choice: DeviceChoice, callback: Any, rate: int, block: int, capture: bool
    ) -> float:
        """Open (with the device's routing environment set) and start one stream; returns its latency in ms."""
        stream_type = sd.InputStream if capture else sd.OutputStream
        with _routed(choice.env):
            stream = stream_type(samplerate=rate, device=choice.index, channels=1, dtype="float32",
                                 blocksize=block, latency=self.latency, callback=callback)
        self._streams.append(stream)
        stream.start()
        latency_ms = float(stream.latency) * 1000
        log.info("%s %r open at %d Hz, block %d, device latency %.1f ms",
                 "microphone" if capture else "speaker", choice.label, rate, block, latency_ms)
        return latency_ms

    def _close_streams(self) -> None:
        streams, self._streams = self._streams, []
        errors = []
        for stream in streams:
            try:
                stream.close()  # close() stops the stream first
            except _sounddevice().PortAudioError as exc:  # keep closing the others, then report
                errors.append(str(exc))
        if errors:
            raise MeasurementError(f"could not close the audio streams: {'; '.join(errors)}")

    # -- the conference clock's side -------------------------------------------------

    def read_frame(self, out: npt.NDArray[np.int16]) -> None:
        """Fill ``out`` (one frame at the clock rate) with microphone audio; zeros when muted or mic-less."""
        if len(out) != self.frame_samples:
            raise ValueError(f"read_frame needs a {self.frame_samples}-sample frame (got {len(out)})")
        capture = self._capture
        if capture is None or not self._streams:
            out[:] = 0
            self._in_level = self._in_peak = 0.0
            return
        frame = capture.read()
        self._in_level, self._in_peak = _rms_peak(frame)
        if self.muted:
            out[:] = 0
            return
        convert = self._convert
        np.multiply(frame, _INT16_SCALE, out=convert)
        np.rint(convert, out=convert)
        np.clip(convert, -32768, 32767, out=convert)
        np.copyto(out, convert, casting="unsafe")

    def write_frame(self, frame: npt.NDArray[np.int16]) -> None:
        """Queue one frame (at the clock rate) of far-end audio for the speaker."""
        if len(frame) != self.frame_samples:
            raise ValueError(f"write_frame needs a {self.frame_samples}-sample frame (got {len(frame)})")
        incoming = self._incoming
        np.multiply(frame, 1 / _INT16_SCALE, out=incoming)
        self._out_level, self._out_peak = _rms_peak(incoming)
        playback = self._playback
        if playback is not None and self._streams:
            playback.write(incoming)

    # -- for a UI ------------------------------------------------------------------

    @property
    def input_level_dbfs(self) -> float:
        """RMS of the last microphone frame (before muting)."""
        return _dbfs(self._in_level)

    @property
    def input_peak_dbfs(self) -> float:
        return _dbfs(self._in_peak)

    @property
    def output_level_dbfs(self) -> float:
        """RMS of the last far-end frame."""
        return _dbfs(self._out_level)

    @property
    def output_peak_dbfs(self) -> float:
        return _dbfs(self._out_peak)

    def stats(self) -> BridgeStats:
        """Counters and latencies; safe to call from any thread (figures may be one tick apart)."""
        return BridgeStats(
            capture=self._capture.stats() if self._capture is not None else None,
            playback=self._playback.stats() if self._playback is not None else None,
        )


@contextmanager
def _opening(sd: ModuleType, choice: DeviceChoice, kind: str) -> Iterator[None]:
    """Turn PortAudio's complaint about one device into a MeasurementError that names it."""
    try:
        yield
    except (sd.PortAudioError, ValueError) as exc:
        where = "the default device" if choice.index is None else f"PortAudio device {choice.index}"
        raise MeasurementError(
            f"could not open the {kind} {choice.label!r} ({where}): {exc}",
            remedy="check that the device is connected and not held exclusively by another program, "
            "or pick another one (see 'phonekit devices')",
        ) from exc


def _rms_peak(x: npt.NDArray[np.floating[Any]]) -> tuple[float, float]:
    if not len(x):
        return 0.0, 0.0
    return math.sqrt(float(np.dot(x, x)) / len(x)), float(np.max(np.abs(x)))


def _dbfs(amplitude: float) -> float:
    """Amplitude to dBFS, floored (silence reads about -200 dBFS, not -inf) for meters."""
    return db(amplitude * amplitude)
