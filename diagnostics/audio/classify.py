"""What kind of device is this? A table of rules over what the OS tells (properties and names).

The class decides the advice: built-in speakers and microphones echo, a
Bluetooth headset in A2DP has no microphone, HDMI monitor speakers are
output only. Rules are tried top to bottom; the first whose property matches
wins. Property rules (PulseAudio/PipeWire's ``device.*``, ``api.bluez5.*``)
come first because they are facts; name rules catch the rest, and the names
Windows and macOS give (``Headset Microphone (Jabra …)``, ``MacBook Pro
Speakers``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["RULES", "DeviceClass", "classify"]


class DeviceClass(StrEnum):
    USB_HEADSET = "usb-headset"
    BLUETOOTH_HEADSET = "bluetooth-headset"
    """Bluetooth in a headset profile (HFP/HSP): microphone and earpiece, narrow- or wideband."""
    BLUETOOTH_A2DP = "bluetooth-a2dp"
    """Bluetooth in the music profile: good sound, but no microphone."""
    HEADSET_JACK = "headset-jack"
    """A headset on the onboard codec's analog jack."""
    BUILTIN = "builtin"
    """Laptop built-in microphone or speakers: acoustic echo is likely."""
    ONBOARD = "onboard"
    """Motherboard chipset codec (line out to desk speakers, line/mic in)."""
    HDMI = "hdmi"
    """HDMI/DisplayPort: speakers in a monitor or TV, output only."""
    USB_AUDIO = "usb-audio"
    """USB sound card, speakerphone or microphone that is not a headset."""
    VIRTUAL = "virtual"
    """Null sinks, monitors, loopbacks and other software devices."""
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Rule:
    field: str
    """A property name, or ``name`` for the device's name and description together."""
    pattern: str
    """Regular expression, matched case-insensitively anywhere in the value."""
    device_class: DeviceClass


# Headset makers' names and words: a USB device that carries one is a headset.
_HEADSET_NAMES = r"headset|headphone|handset|jabra|plantronics|\bpoly\b|sennheiser|\bepos\b|yealink|logitech.*\bh\d"

RULES: tuple[Rule, ...] = (
    Rule("device.class", r"^(monitor|abstract)$", DeviceClass.VIRTUAL),  # abstract: a null sink, heard by no one
    Rule("api.bluez5.profile", r"a2dp", DeviceClass.BLUETOOTH_A2DP),
    Rule("api.bluez5.profile", r"h[fs]p|headset", DeviceClass.BLUETOOTH_HEADSET),
    Rule("bluetooth.protocol", r"a2dp", DeviceClass.BLUETOOTH_A2DP),
    Rule("bluetooth.protocol", r"h[fs]p|headset", DeviceClass.BLUETOOTH_HEADSET),
    Rule("device.profile.name", r"a2dp", DeviceClass.BLUETOOTH_A2DP),
    Rule("device.profile.name", r"headset[-_]head[-_]unit|handsfree|hsp|hfp", DeviceClass.BLUETOOTH_HEADSET),
    Rule("device.profile.name", r"hdmi|iec958-.*hdmi|displayport", DeviceClass.HDMI),
    Rule("device.bus", r"^usb$", DeviceClass.USB_AUDIO),  # refined to a headset below
    Rule("device.form_factor", r"^(headset|headphone|handset)$", DeviceClass.HEADSET_JACK),
    Rule("device.form_factor", r"^(internal|speaker|microphone)$", DeviceClass.BUILTIN),
    Rule("device.bus", r"^pci$", DeviceClass.ONBOARD),
    Rule("name", r"\bnull\b|virtual|loopback|monitor of|dummy|vb-audio|blackhole|soundflower|cable (in|out)",
         DeviceClass.VIRTUAL),
    Rule("name", r"airpods|bluetooth|hands-?free|\bbt\b", DeviceClass.BLUETOOTH_HEADSET),
    Rule("name", r"hdmi|displayport|\bdp\b|nvidia high definition|monitor speakers", DeviceClass.HDMI),
    Rule("name", r"usb.*headset|headset.*usb|jabra|plantronics|\bpoly\b|logitech.*\bh\d|sennheiser|\bepos\b|yealink",
         DeviceClass.USB_HEADSET),
    Rule("name", r"headset|headphone", DeviceClass.HEADSET_JACK),
    Rule("name", r"built-?in|internal|macbook|microphone array|laptop", DeviceClass.BUILTIN),
    Rule("name", r"realtek|high definition audio|hda intel|conexant|analog (stereo|mono)", DeviceClass.ONBOARD),
    Rule("name", r"usb", DeviceClass.USB_AUDIO),
)

_HEADSET_WORDS = re.compile(_HEADSET_NAMES, re.IGNORECASE)


def classify(name: str, description: str = "", properties: Mapping[str, str] | None = None) -> DeviceClass:
    props = dict(properties or {})
    text = f"{name} {description}"
    for rule in RULES:
        value = text if rule.field == "name" else props.get(rule.field)
        if value is not None and re.search(rule.pattern, value, re.IGNORECASE):
            if rule.device_class is DeviceClass.USB_AUDIO and (
                _HEADSET_WORDS.search(text) or props.get("device.form_factor") in {"headset", "headphone", "handset"}
            ):
                return DeviceClass.USB_HEADSET
            return rule.device_class
    return DeviceClass.UNKNOWN
