"""Check ``audio.devices``: is there anything to talk into and listen with?

The verdict is a pure function of the device lists (:func:`assess`), so it is
tested on hand-made inventories; :func:`check_devices` only adds the probing.
"""

from __future__ import annotations

from collections.abc import Sequence

from diagnostics.audio.probe import AudioDevice, list_devices
from diagnostics.audio.system import SystemDevice, system_devices
from diagnostics.checks import CheckContext
from diagnostics.report import CheckResult, Status

__all__ = ["assess", "check_devices"]

CHECK_ID = "audio.devices"


def _default_name(devices: Sequence[SystemDevice], direction: str) -> str | None:
    return next((d.description for d in devices if d.direction == direction and d.is_default), None)


def assess(devices: Sequence[AudioDevice], system: Sequence[SystemDevice]) -> CheckResult:
    """Verdict from PortAudio's devices and, where the OS tells more, its sinks and sources."""
    if system:
        # A monitor source is an input in the API but hears only our own playback.
        mics = [d.description for d in system if d.direction == "input" and not d.is_monitor]
        outs = [d.description for d in system if d.direction == "output"]
        default_in, default_out = _default_name(system, "input"), _default_name(system, "output")
    else:
        mics = [d.name for d in devices if d.max_input_channels > 0]
        outs = [d.name for d in devices if d.max_output_channels > 0]
        default_in = next((d.name for d in devices if d.is_default_input), None)
        default_out = next((d.name for d in devices if d.is_default_output), None)
    measurements = {
        "input_count": len(mics),
        "output_count": len(outs),
        "default_input": default_in,
        "default_output": default_out,
        "devices": [d.to_dict() for d in devices],
        "system_devices": [d.to_dict() for d in system],
    }
    if not mics:
        return CheckResult(
            CHECK_ID,
            Status.FAIL,
            "no microphone found: nobody will hear you",
            measurements,
            remedy="connect an external microphone or a headset (USB headsets work without drivers)",
        )
    if not outs:
        return CheckResult(
            CHECK_ID,
            Status.FAIL,
            "no speaker or headphone output found: you will not hear the other side",
            measurements,
            remedy="connect a headset, or speakers or headphones to the line-out or monitor",
        )
    if system and default_in not in mics:
        return CheckResult(
            CHECK_ID,
            Status.WARN,
            f"{len(mics)} microphone(s) present but the default input ({default_in!r}) is not one of them",
            measurements,
            remedy=f"choose a microphone as the default input (e.g. {mics[0]!r}) in the sound settings",
        )
    return CheckResult(
        CHECK_ID,
        Status.PASS,
        f"{len(mics)} input(s), {len(outs)} output(s); default input {default_in!r}, default output {default_out!r}",
        measurements,
    )


def check_devices(ctx: CheckContext) -> CheckResult:
    return assess(list_devices(), system_devices())
