"""Device classes and the ``audio.devices`` verdict on hand-made inventories (every OS's naming)."""

import pytest

from diagnostics.audio.classify import DeviceClass, classify
from diagnostics.audio.devices import assess
from diagnostics.audio.probe import AudioDevice
from diagnostics.audio.system import SystemDevice
from diagnostics.report import Status


@pytest.mark.parametrize(
    ("name", "description", "properties", "expected"),
    [
        ("alsa_input.usb-Jabra_EVOLVE_20-00.mono-fallback", "Jabra EVOLVE 20 Mono", {"device.bus": "usb"},
         DeviceClass.USB_HEADSET),
        ("alsa_output.usb-C-Media_USB_Audio_Device-00.analog-stereo", "USB Audio Device",
         {"device.bus": "usb", "device.form_factor": "headset"}, DeviceClass.USB_HEADSET),
        ("alsa_output.usb-Focusrite_Scarlett-00.analog-stereo", "Scarlett 2i2", {"device.bus": "usb"},
         DeviceClass.USB_AUDIO),
        ("bluez_sink.AA_BB.a2dp_sink", "WH-1000XM4", {"api.bluez5.profile": "a2dp-sink"}, DeviceClass.BLUETOOTH_A2DP),
        ("bluez_source.AA_BB.handsfree_head_unit", "WH-1000XM4", {"bluetooth.protocol": "hfp_hf"},
         DeviceClass.BLUETOOTH_HEADSET),
        ("alsa_output.pci-0000_01_00.1.hdmi-stereo", "GA102 HDMI", {"device.profile.name": "hdmi-stereo"},
         DeviceClass.HDMI),
        ("alsa_input.pci-0000_00_1f.3.analog-stereo", "Built-in Audio Analog Stereo",
         {"device.bus": "pci", "device.form_factor": "internal"}, DeviceClass.BUILTIN),
        ("alsa_output.pci-0000_00_1f.3.analog-stereo", "Built-in Audio", {"device.bus": "pci"}, DeviceClass.ONBOARD),
        ("null.monitor", "Monitor of Null Output", {"device.class": "monitor"}, DeviceClass.VIRTUAL),
        # Windows (WASAPI/MME names) and macOS (Core Audio names) give only names.
        ("Headset Microphone (Jabra Link 380)", "", {}, DeviceClass.USB_HEADSET),
        ("Microphone Array (Intel® Smart Sound Technology)", "", {}, DeviceClass.BUILTIN),
        ("DELL U2720Q (NVIDIA High Definition Audio)", "", {}, DeviceClass.HDMI),
        ("Speakers (Realtek(R) Audio)", "", {}, DeviceClass.ONBOARD),
        ("MacBook Pro Microphone", "", {}, DeviceClass.BUILTIN),
        ("AirPods Pro", "", {}, DeviceClass.BLUETOOTH_HEADSET),
        ("CABLE Output (VB-Audio Virtual Cable)", "", {}, DeviceClass.VIRTUAL),
        ("Something", "", {}, DeviceClass.UNKNOWN),
    ],
)
def test_classify(name: str, description: str, properties: dict[str, str], expected: DeviceClass) -> None:
    assert classify(name, description, properties) is expected


def sink(description: str, props: dict[str, str], default: bool = True) -> SystemDevice:
    return SystemDevice(description.lower().replace(" ", "_"), description, "output", is_default=default,
                        properties=props)


def source(description: str, props: dict[str, str], default: bool = True, monitor: bool = False) -> SystemDevice:
    return SystemDevice(description.lower().replace(" ", "_"), description, "input", is_monitor=monitor,
                        is_default=default, properties=props)


MONITOR = source("Monitor of Desk", {"device.class": "monitor"}, default=False, monitor=True)
USB = {"device.bus": "usb", "device.form_factor": "headset"}
INTERNAL = {"device.bus": "pci", "device.form_factor": "internal"}


def test_desk_pc_with_monitor_speakers_and_no_microphone() -> None:
    hdmi = sink("DELL U2419H", {"device.profile.name": "hdmi-stereo"})
    result = assess([], [hdmi, MONITOR])
    assert (result.status, result.summary) == (Status.FAIL, "no microphone found: nobody will hear you")
    assert result.remedy is not None and "connect an external microphone or a headset" in result.remedy


def test_bluetooth_in_a2dp_has_no_microphone() -> None:
    bt = sink("WH-1000XM4", {"api.bluez5.profile": "a2dp-sink"})
    result = assess([], [bt, MONITOR])
    assert result.status is Status.FAIL
    assert "A2DP" in result.summary and result.remedy is not None and "HFP/HSP" in result.remedy


def test_only_built_ins_warn_of_echo() -> None:
    result = assess([], [sink("Built-in Audio", INTERNAL), source("Built-in Mic", INTERNAL)])
    assert result.status is Status.WARN
    assert "echo" in result.summary and result.remedy is not None and "headset is recommended" in result.remedy


def test_usb_headset_passes() -> None:
    result = assess([], [sink("USB Headset", USB), source("USB Headset Mic", USB), MONITOR])
    assert result.status is Status.PASS
    assert result.measurements["input_count"] == 1
    assert "usb-headset" in result.summary


def test_monitor_as_default_input_warns() -> None:
    monitor_default = source("Monitor of Desk", {"device.class": "monitor"}, default=True, monitor=True)
    result = assess([], [sink("USB Headset", USB), source("USB Headset Mic", USB, default=False), monitor_default])
    assert result.status is Status.WARN
    assert "default input 'Monitor of Desk' is not one of them" in result.summary


def test_portaudio_names_alone_are_enough_on_other_systems() -> None:
    devices = [
        AudioDevice(0, "Microphone Array (Intel® Smart Sound Technology)", "Windows WASAPI", 2, 0, 48000.0,
                    (16000, 48000), (), True, False),
        AudioDevice(1, "Headset Earphone (Jabra Link 380)", "Windows WASAPI", 0, 2, 48000.0, (), (48000,), False, True),
        AudioDevice(2, "Headset Microphone (Jabra Link 380)", "Windows WASAPI", 1, 0, 48000.0, (16000,), (), False,
                    False),
    ]
    result = assess(devices, [])
    assert result.measurements["input_count"] == 2
    # The default input is the laptop's array: echo risk only if the output is built-in too; it is a headset.
    assert result.status is Status.PASS
