"""The operating system's own view of sound devices, behind one small module per OS.

PortAudio shows what an application can open (on Linux often just ``pulse`` and
``default``); the OS knows what is really behind them (a USB headset, HDMI
speakers, a virtual sink). Each per-OS module provides ``system_devices()``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SystemDevice", "route_env", "system_devices"]


@dataclass(frozen=True)
class SystemDevice:
    """A sink (output) or source (input) as the OS sound server names it."""

    name: str
    description: str
    direction: str
    """``input`` or ``output``."""
    is_monitor: bool = False
    """A loopback of an output (PulseAudio ``.monitor``): it is an input, but not a microphone."""
    is_default: bool = False
    properties: dict[str, str] = field(default_factory=dict)
    muted: bool | None = None
    """The sound server's mute switch for this device; None when the OS does not say."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "direction": self.direction,
            "is_monitor": self.is_monitor,
            "is_default": self.is_default,
            "properties": dict(self.properties),
            "muted": self.muted,
        }


def system_devices() -> tuple[SystemDevice, ...]:
    if sys.platform.startswith("linux"):
        from diagnostics.audio import os_linux

        return os_linux.system_devices()
    # Windows and macOS: PortAudio's names are the OS's names; nothing more to add yet.
    return ()


def route_env(device: SystemDevice) -> tuple[tuple[str, str], ...]:
    """Environment that makes PortAudio's sound-server device open ``device``."""
    if sys.platform.startswith("linux"):
        return (("PULSE_SOURCE" if device.direction == "input" else "PULSE_SINK", device.name),)
    return ()
