"""Audio device I/O through sounddevice (PortAudio). The only diagnostics module that imports it.

PortAudio enumerates devices when it is initialised, so environment that
steers it (``PULSE_SERVER``, ``PULSE_SINK``/``PULSE_SOURCE``) must be set before
the first call here; :func:`rescan` re-enumerates after such a change.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from diagnostics.errors import MeasurementError

__all__ = [
    "PROBE_RATES_HZ",
    "AudioDevice",
    "DeviceChoice",
    "PlayRecord",
    "list_devices",
    "play_and_record",
    "rescan",
    "resolve_device",
]

log = logging.getLogger(__name__)

# Telephony narrowband, wideband, and the rate most hardware runs at natively.
PROBE_RATES_HZ = (8000, 16000, 48000)


@dataclass(frozen=True)
class AudioDevice:
    """One PortAudio device as the softphone would open it."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate_hz: float
    input_rates_hz: tuple[int, ...]
    output_rates_hz: tuple[int, ...]
    is_default_input: bool
    is_default_output: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "hostapi": self.hostapi,
            "max_input_channels": self.max_input_channels,
            "max_output_channels": self.max_output_channels,
            "default_samplerate_hz": self.default_samplerate_hz,
            "input_rates_hz": list(self.input_rates_hz),
            "output_rates_hz": list(self.output_rates_hz),
            "is_default_input": self.is_default_input,
            "is_default_output": self.is_default_output,
        }


def _sounddevice() -> ModuleType:
    try:
        import sounddevice
    except OSError as exc:  # raised at import when libportaudio is missing
        raise MeasurementError(
            f"PortAudio is not available ({exc})",
            remedy="install PortAudio (Debian: apt-get install libportaudio2)",
        ) from exc
    module: ModuleType = sounddevice
    return module


def rescan() -> None:
    """Re-initialise PortAudio so that it sees devices and environment changed since import."""
    sd = _sounddevice()
    sd._terminate()
    sd._initialize()


def _supported(sd: ModuleType, index: int, rate: int, *, capture: bool) -> bool:
    check = sd.check_input_settings if capture else sd.check_output_settings
    try:
        check(device=index, samplerate=rate, channels=1, dtype="int16")
    except (sd.PortAudioError, ValueError) as exc:
        log.debug("device %d does not take %d Hz %s: %s", index, rate, "capture" if capture else "playback", exc)
        return False
    return True


def list_devices() -> tuple[AudioDevice, ...]:
    """Every PortAudio device with the telephony sample rates it accepts."""
    sd = _sounddevice()
    try:
        raw = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in, default_out = sd.default.device
    except sd.PortAudioError as exc:
        raise MeasurementError(f"PortAudio could not list devices: {exc}") from exc
    devices = []
    for info in raw:
        index = int(info["index"])
        ins, outs = int(info["max_input_channels"]), int(info["max_output_channels"])
        devices.append(
            AudioDevice(
                index=index,
                name=str(info["name"]),
                hostapi=str(hostapis[info["hostapi"]]["name"]),
                max_input_channels=ins,
                max_output_channels=outs,
                default_samplerate_hz=float(info["default_samplerate"]),
                input_rates_hz=tuple(r for r in PROBE_RATES_HZ if ins and _supported(sd, index, r, capture=True)),
                output_rates_hz=tuple(r for r in PROBE_RATES_HZ if outs and _supported(sd, index, r, capture=False)),
                is_default_input=index == default_in,
                is_default_output=index == default_out,
            )
        )
    return tuple(devices)


@dataclass(frozen=True)
class DeviceChoice:
    """A device as PortAudio opens it, plus what the OS must be told to route it (PULSE_SOURCE …)."""

    index: int | None
    """PortAudio index; None means PortAudio's default."""
    label: str
    env: tuple[tuple[str, str], ...] = ()


def resolve_device(spec: str | None, kind: str) -> DeviceChoice:
    """Pick an ``input`` or ``output`` device by index or by a unique name substring.

    Names are matched against PortAudio's devices and, on Linux, against the sound
    server's sinks and sources (routed through PortAudio's ``pulse`` device).
    An ambiguous name lists every match; an unknown one lists what there is.
    """
    from diagnostics.audio.system import route_env, system_devices
    from diagnostics.errors import UsageError

    capture = kind == "input"
    devices = list_devices()
    usable = [d for d in devices if (d.max_input_channels if capture else d.max_output_channels) > 0]
    if spec is None:
        default = next((d for d in usable if (d.is_default_input if capture else d.is_default_output)), None)
        return DeviceChoice(None, default.name if default else "default")
    if spec.isdigit():
        match = next((d for d in usable if d.index == int(spec)), None)
        if match is None:
            raise UsageError(f"--{kind} {spec}: no {kind} device has index {spec} (see 'phonekit devices')")
        return DeviceChoice(match.index, match.name)
    needle = spec.casefold()
    exact = [d for d in usable if d.name.casefold() == needle]
    by_name = exact or [d for d in usable if needle in d.name.casefold()]
    if len(by_name) == 1:
        return DeviceChoice(by_name[0].index, by_name[0].name)
    direction = "input" if capture else "output"
    server = [s for s in system_devices() if s.direction == direction and not (capture and s.is_monitor)]
    server_matches = [s for s in server if needle in s.name.casefold() or needle in s.description.casefold()]
    if not by_name and len(server_matches) == 1:
        pulse = next((d for d in usable if d.name == "pulse"), None)
        chosen = server_matches[0]
        return DeviceChoice(pulse.index if pulse else None, chosen.description, route_env(chosen))
    names = [d.name for d in by_name] + [s.description for s in server_matches]
    if names:
        raise UsageError(f"--{kind} {spec!r} is ambiguous: it matches {', '.join(repr(n) for n in names)}")
    known = [d.name for d in usable] + [s.description for s in server]
    raise UsageError(f"--{kind} {spec!r} matches no {kind} device (there are: {', '.join(map(repr, known)) or 'none'})")


@dataclass(frozen=True)
class PlayRecord:
    """One simultaneous playback and capture, with the capture aligned to the playback timeline."""

    played: npt.NDArray[np.float64]
    captured: npt.NDArray[np.float64]
    """Sample i was captured at the instant sample i of ``played`` left the speaker (DAC time)."""
    samplerate: int
    aligned_by_timestamps: bool
    """False when the host API gave no DAC/ADC times and the streams' start times were used."""
    output_latency_ms: float
    input_latency_ms: float
    """Buffering between the application and the converters, as the devices report it."""
    input_device: str
    output_device: str


@contextmanager
def _routed(env: tuple[tuple[str, str], ...]) -> Iterator[None]:
    """Temporarily set routing variables (PULSE_SOURCE/PULSE_SINK) read when a stream opens."""
    saved = {key: os.environ.get(key) for key, _ in env}
    os.environ.update(dict(env))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def play_and_record(
    play: npt.NDArray[np.float64],
    samplerate: int,
    input_device: DeviceChoice,
    output_device: DeviceChoice | None,
    tail_s: float,
    blocksize: int = 480,
) -> PlayRecord:
    """Play ``play`` (or nothing when ``output_device`` is None) while recording, plus ``tail_s``.

    Separate input and output streams (one duplex stream on PulseAudio's ALSA
    device returned silence); the callbacks only copy into preallocated arrays.
    """
    sd = _sounddevice()
    n_play = len(play)
    n_capture = n_play + int(tail_s * samplerate)
    source = np.zeros(n_play + blocksize, dtype=np.float32)
    source[:n_play] = play
    # Room for the capture to start before playback and for callback overrun.
    capture = np.zeros(n_capture + 2 * samplerate, dtype=np.float32)
    pos = np.zeros(2, dtype=np.int64)  # [captured samples, played samples]
    stamps = np.full(4, np.nan)  # [adc time of first captured sample, its currentTime, dac, currentTime]
    errors: list[str] = []

    def on_input(indata: Any, frames: int, t: Any, status: Any) -> None:
        if status:
            errors.append(str(status))
        start = int(pos[0])
        if start == 0:
            stamps[0], stamps[1] = t.inputBufferAdcTime, t.currentTime
        take = min(frames, len(capture) - start)
        capture[start : start + take] = indata[:take, 0]
        pos[0] = start + take

    def on_output(outdata: Any, frames: int, t: Any, status: Any) -> None:
        if status:
            errors.append(str(status))
        start = int(pos[1])
        if start == 0:
            stamps[2], stamps[3] = t.outputBufferDacTime, t.currentTime
        take = max(0, min(frames, len(source) - start))
        outdata[:take, 0] = source[start : start + take]
        outdata[take:] = 0
        pos[1] = start + frames

    env = input_device.env + (output_device.env if output_device else ())
    try:
        with _routed(env):
            instream = sd.InputStream(samplerate=samplerate, device=input_device.index, channels=1,
                                      dtype="float32", blocksize=blocksize, callback=on_input)
            outstream = (
                sd.OutputStream(samplerate=samplerate, device=output_device.index, channels=1,
                                dtype="float32", blocksize=blocksize, callback=on_output)
                if output_device is not None else None
            )
        with instream:
            if outstream is None:
                _wait_for(lambda: pos[0] >= n_capture, n_capture / samplerate + 5.0)
            else:
                with outstream:
                    _wait_for(lambda: pos[1] >= n_play, n_play / samplerate + 5.0)
                    started_out = pos[0]
                    _wait_for(lambda: pos[0] >= started_out + int(tail_s * samplerate), tail_s + 5.0)
                output_latency = float(outstream.latency)
            input_latency = float(instream.latency)
    except sd.PortAudioError as exc:
        raise MeasurementError(
            f"could not open or run the audio devices ({input_device.label} / "
            f"{output_device.label if output_device else '-'}): {exc}",
            remedy="close other programs that hold the device exclusively, or pick another with --input/--output",
        ) from exc
    if errors:
        log.debug("audio status flags during capture: %s", sorted(set(errors)))
    if outstream is None:
        captured = capture[:n_capture].astype(np.float64)
        return PlayRecord(np.zeros(0), captured, samplerate, True, 0.0, input_latency * 1e3, input_device.label, "-")
    adc, in_now, dac, out_now = stamps
    by_stamps = bool(np.isfinite(adc) and np.isfinite(dac) and adc > 0 and dac > 0)
    # Capture sample j happened at adc + j/fs, playback sample k at dac + k/fs.
    offset_s = (dac - adc) if by_stamps else (out_now - in_now) + output_latency + input_latency
    shift = round(float(offset_s) * samplerate)
    aligned = np.zeros(n_capture, dtype=np.float64)
    lo, hi = max(0, -shift), min(n_capture, int(pos[0]) - shift)
    aligned[lo:hi] = capture[lo + shift : hi + shift]
    assert output_device is not None
    return PlayRecord(
        played=np.asarray(play, dtype=np.float64),
        captured=aligned,
        samplerate=samplerate,
        aligned_by_timestamps=by_stamps,
        output_latency_ms=output_latency * 1e3,
        input_latency_ms=input_latency * 1e3,
        input_device=input_device.label,
        output_device=output_device.label,
    )


def _wait_for(done: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise MeasurementError(
                "the audio device stopped delivering samples",
                remedy="check that the device is still connected and not used exclusively by another program",
            )
        time.sleep(0.01)
