"""Linux: sinks and sources from the PulseAudio (or PipeWire-Pulse) server via ``pactl``."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from typing import Any

from diagnostics.audio.system import SystemDevice
from diagnostics.errors import MeasurementError

log = logging.getLogger(__name__)

_TIMEOUT_S = 5.0

# Properties worth keeping for classification (bus, form factor, Bluetooth profile).
_KEPT_PROPERTIES = (
    "device.bus",
    "device.form_factor",
    "device.api",
    "device.class",
    "device.product.name",
    "device.profile.name",
    "api.bluez5.profile",
    "bluetooth.protocol",
    "alsa.card_name",
)


def _pactl(*args: str) -> str:
    pactl = shutil.which("pactl")
    if pactl is None:
        raise FileNotFoundError("pactl")
    done = subprocess.run([pactl, *args], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise MeasurementError(
            f"pactl {' '.join(args)} failed: {done.stderr.strip() or done.returncode}",
            remedy="make sure the PulseAudio or PipeWire sound server is running for this user",
        )
    return done.stdout


def _devices(kind: str, direction: str, default: str) -> list[SystemDevice]:
    entries: list[dict[str, Any]] = json.loads(_pactl("-f", "json", "list", kind) or "[]")
    devices = []
    for entry in entries:
        props = entry.get("properties") or {}
        devices.append(
            SystemDevice(
                name=str(entry["name"]),
                description=str(entry.get("description") or entry["name"]),
                direction=direction,
                is_monitor=direction == "input" and props.get("device.class") == "monitor",
                is_default=entry["name"] == default,
                properties={k: str(props[k]) for k in _KEPT_PROPERTIES if k in props},
                muted=bool(entry["mute"]) if isinstance(entry.get("mute"), bool) else None,
            )
        )
    return devices


def system_devices() -> tuple[SystemDevice, ...]:
    """PulseAudio sinks and sources; empty when no PulseAudio-compatible server is reachable."""
    try:
        default_sink = _pactl("get-default-sink").strip()
        default_source = _pactl("get-default-source").strip()
        return (
            *_devices("sinks", "output", default_sink),
            *_devices("sources", "input", default_source),
        )
    except FileNotFoundError:
        log.debug("pactl not installed: no PulseAudio view of the devices")
        return ()
    except MeasurementError as exc:
        log.debug("no PulseAudio server: %s", exc)
        return ()
