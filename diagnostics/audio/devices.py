"""Check ``audio.devices``: is there anything to talk into and listen with?

The verdict is a pure function of the device lists (:func:`assess`), so it is
tested on hand-made inventories; :func:`check_devices` only adds the probing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from diagnostics.audio.classify import DeviceClass, classify
from diagnostics.audio.probe import AudioDevice, list_devices
from diagnostics.audio.system import SystemDevice, system_devices
from diagnostics.checks import CheckContext
from diagnostics.report import CheckResult, Status

__all__ = ["assess", "check_devices"]

CHECK_ID = "audio.devices"


def _default_name(devices: Sequence[SystemDevice], direction: str) -> str | None:
    return next((d.description for d in devices if d.direction == direction and d.is_default), None)


@dataclass(frozen=True)
class _Seen:
    """One input or output as the verdict sees it, whichever API told us about it."""

    name: str
    direction: str
    device_class: DeviceClass
    is_default: bool


def _seen(devices: Sequence[AudioDevice], system: Sequence[SystemDevice]) -> list[_Seen]:
    if system:
        return [
            _Seen(d.description, d.direction, classify(d.name, d.description, d.properties), d.is_default)
            for d in system
        ]
    seen = []
    for d in devices:
        cls = classify(d.name)
        if d.max_input_channels > 0:
            seen.append(_Seen(d.name, "input", cls, d.is_default_input))
        if d.max_output_channels > 0:
            seen.append(_Seen(d.name, "output", cls, d.is_default_output))
    return seen


def assess(devices: Sequence[AudioDevice], system: Sequence[SystemDevice]) -> CheckResult:
    """Verdict from PortAudio's devices and, where the OS tells more, its sinks and sources."""
    seen = _seen(devices, system)
    # A monitor is an input in the API but hears only our own playback: not a microphone.
    mics = [d for d in seen if d.direction == "input" and d.device_class is not DeviceClass.VIRTUAL]
    outs = [d for d in seen if d.direction == "output" and d.device_class is not DeviceClass.VIRTUAL]
    default_in = next((d for d in seen if d.direction == "input" and d.is_default), None)
    default_out = next((d for d in outs if d.is_default), None)
    measurements = {
        "input_count": len(mics),
        "output_count": len(outs),
        "default_input": default_in.name if default_in else None,
        "default_output": default_out.name if default_out else None,
        "classes": [{"name": d.name, "direction": d.direction, "class": d.device_class.value} for d in seen],
        "devices": [d.to_dict() for d in devices],
        "system_devices": [d.to_dict() for d in system],
    }
    a2dp = [d for d in outs if d.device_class is DeviceClass.BLUETOOTH_A2DP]
    if not mics:
        if a2dp:
            return CheckResult(
                CHECK_ID, Status.FAIL,
                f"no microphone: the Bluetooth headset {a2dp[0].name!r} is in music mode (A2DP), which has none",
                measurements,
                remedy="switch the headset to its headset profile (HFP/HSP) in the Bluetooth or sound settings",
            )
        return CheckResult(
            CHECK_ID, Status.FAIL, "no microphone found: nobody will hear you", measurements,
            remedy="connect an external microphone or a headset (USB headsets work without drivers)",
        )
    if not outs:
        return CheckResult(
            CHECK_ID, Status.FAIL, "no speaker or headphone output found: you will not hear the other side",
            measurements,
            remedy="connect a headset, or speakers or headphones to the line-out or monitor",
        )
    if default_in is not None and default_in.device_class is DeviceClass.VIRTUAL:
        return CheckResult(
            CHECK_ID, Status.WARN,
            f"{len(mics)} microphone(s) present but the default input {default_in.name!r} is not one of them",
            measurements,
            remedy=f"choose a microphone as the default input (e.g. {mics[0].name!r}) in the sound settings",
        )
    if a2dp:
        return CheckResult(
            CHECK_ID, Status.WARN,
            f"the Bluetooth headset {a2dp[0].name!r} is in music mode (A2DP): its microphone is off",
            measurements,
            remedy="switch it to the headset profile (HFP/HSP) to talk through it",
        )
    chosen_mic = default_in or mics[0]
    if chosen_mic.device_class is DeviceClass.BUILTIN and all(
        d.device_class in _ECHO_PRONE for d in outs if d.is_default or len(outs) == 1
    ):
        return CheckResult(
            CHECK_ID, Status.WARN,
            f"only built-in microphone and speakers ({chosen_mic.name!r}): the other side will likely hear an echo",
            measurements,
            remedy="a headset is recommended (USB or with a headset jack); else keep echo cancellation on",
        )
    kinds = ", ".join(f"{d.name} ({d.device_class.value})" for d in (default_in, default_out) if d is not None)
    return CheckResult(
        CHECK_ID, Status.PASS, f"{len(mics)} input(s), {len(outs)} output(s); using {kinds}", measurements
    )


_ECHO_PRONE = {DeviceClass.BUILTIN, DeviceClass.ONBOARD, DeviceClass.HDMI, DeviceClass.USB_AUDIO}


def check_devices(ctx: CheckContext) -> CheckResult:
    return assess(list_devices(), system_devices())
