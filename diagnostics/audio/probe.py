"""Audio device I/O through sounddevice (PortAudio). The only diagnostics module that imports it.

PortAudio enumerates devices when it is initialised, so environment that
steers it (``PULSE_SERVER``, ``PULSE_SINK``/``PULSE_SOURCE``) must be set before
the first call here; :func:`rescan` re-enumerates after such a change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from diagnostics.errors import MeasurementError

__all__ = ["PROBE_RATES_HZ", "AudioDevice", "list_devices", "rescan"]

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
