"""The PulseAudio scenes deliver what their ground truth says (else every audio test lies).

Recording goes through sounddevice in this process (the way phonekit's probe
will), switching scenes with :func:`sounddevice_in`; the echo path is
measured with the scene's own independent ``sox -M`` method.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from tests.testbed.pulse import (
    SAMPLERATE,
    SCENES,
    MicSignal,
    PulseScene,
    SignalKind,
    run_in_scene,
    sounddevice_in,
)

# Scene fixtures come from tests.testbed.pulse via pytest_plugins in the root conftest.py.
uses_pulse = pytest.mark.testbed


def record(scene: PulseScene, seconds: float = 1.0, device: str = "pulse") -> np.ndarray:
    """Record the scene's default source (its mic) with sounddevice, as float32 mono."""
    with sounddevice_in(scene) as sd:
        frames = sd.rec(
            round(seconds * SAMPLERATE),
            samplerate=SAMPLERATE,
            channels=1,
            dtype="float32",
            device=device,
            blocking=True,
        )
    return np.asarray(frames[:, 0], dtype=np.float64)


def rms_dbfs(x: np.ndarray) -> float:
    return 20 * math.log10(float(np.sqrt(np.mean(x**2))))


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SAMPLERATE)[np.argmax(spectrum)])


@uses_pulse
@pytest.mark.timeout(20)
def test_headset_mic_carries_the_known_tone(headset_scene: PulseScene) -> None:
    truth = headset_scene.truth
    assert truth.signal is SignalKind.TONE_IN_NOISE and truth.tone_hz == 1000.0 and truth.level_dbfs is not None
    x = record(headset_scene)
    assert len(x) == SAMPLERATE
    assert abs(dominant_hz(x) - truth.tone_hz) <= 5
    assert abs(rms_dbfs(x) - truth.level_dbfs) <= 1.0


@uses_pulse
@pytest.mark.timeout(20)
def test_default_alsa_device_also_reaches_the_scene(headset_scene: PulseScene) -> None:
    with sounddevice_in(headset_scene) as sd:
        names = [d["name"] for d in sd.query_devices()]
    assert {"pulse", "default"} <= set(names), names
    x = record(headset_scene, 1.0, device="default")  # a whole loop: the tone sounds half of each second
    assert abs(dominant_hz(x) - 1000.0) <= 5


@uses_pulse
@pytest.mark.timeout(20)
def test_dead_mic_gives_exact_zeros(dead_mic_scene: PulseScene) -> None:
    x = record(dead_mic_scene, 0.5)
    assert len(x) == SAMPLERATE // 2
    assert not np.any(x), f"max |x| = {np.abs(x).max()}"


@uses_pulse
@pytest.mark.timeout(20)
def test_noisy_mic_level_is_nominal(noisy_scene: PulseScene) -> None:
    truth = noisy_scene.truth
    assert truth.noise_dbfs == -40.0 and truth.noise_band_hz == (300.0, 3400.0)
    x = record(noisy_scene, 0.5)
    assert abs(rms_dbfs(x) - truth.noise_dbfs) <= 1.5


@uses_pulse
@pytest.mark.timeout(20)
def test_clipping_mic_sits_at_full_scale(clipping_scene: PulseScene) -> None:
    fraction = clipping_scene.truth.clipped_fraction
    assert fraction is not None and abs(fraction - 0.2 * 0.5) < 0.01  # 20 % of a tone that sounds half the time
    x = record(clipping_scene, 1.0)  # one whole loop, whatever its phase
    assert np.abs(x).max() == 1.0
    assert abs(float(np.mean(np.abs(x) >= 1.0)) - fraction) < 0.02


@uses_pulse
@pytest.mark.timeout(20)
def test_no_input_scene_has_only_monitor_sources(no_input_scene: PulseScene) -> None:
    assert not no_input_scene.truth.has_input and no_input_scene.mic is None
    assert no_input_scene.capture_sources() == []
    assert no_input_scene.pactl_list("sources"), "a monitor source should still exist"
    assert no_input_scene.default_source() == f"{no_input_scene.speaker}.monitor"
    # As documented: capture still "works" but hears the idle speaker's monitor.
    assert not np.any(record(no_input_scene, 0.2))


@uses_pulse
@pytest.mark.timeout(30)
def test_laptop_echo_delay_is_plausible_and_reproducible(laptop_echo_scene: PulseScene) -> None:
    truth = laptop_echo_scene.truth
    assert truth.echo_delay_ms == 100.0 and truth.echo_attenuation_db == 10.0
    runs = [laptop_echo_scene.measure_echo() for _ in range(3)]
    delays = [m.delay_ms for m in runs]
    # Observed 91-103 ms: PulseAudio buffering and sox's 0-5 ms recorder offset.
    assert all(85 <= d <= 115 for d in delays), delays
    assert max(delays) - min(delays) <= 15, delays
    assert all(abs(m.attenuation_db - truth.echo_attenuation_db) <= 1.0 for m in runs), runs


@uses_pulse
@pytest.mark.timeout(20)
def test_separate_output_and_input_streams_hear_the_echo(laptop_echo_scene: PulseScene) -> None:
    """What the phone does: one OutputStream to the speaker, one InputStream from the mic."""
    n = SAMPLERATE  # 1 s
    tone = (0.1 * np.sin(2 * np.pi * 700 * np.arange(n) / SAMPLERATE)).astype(np.float32)
    captured: list[np.ndarray] = []
    with (
        sounddevice_in(laptop_echo_scene) as sd,
        sd.InputStream(
            samplerate=SAMPLERATE,
            channels=1,
            dtype="float32",
            device="pulse",
            callback=lambda data, *_: captured.append(data[:, 0].copy()),
        ),
        sd.OutputStream(samplerate=SAMPLERATE, channels=1, dtype="float32", device="pulse") as out,
    ):
        out.write(tone)
    x = np.concatenate(captured).astype(np.float64)
    assert abs(dominant_hz(x) - 700) <= 5
    # The loudest 0.5 s window: the echo, 10 dB under the -23 dBFS tone (noise is -60).
    window = SAMPLERATE // 2
    best = max(rms_dbfs(x[i : i + window]) for i in range(0, len(x) - window, window // 10))
    assert abs(best - (rms_dbfs(tone.astype(np.float64)) - 10)) <= 1.0


@uses_pulse
@pytest.mark.timeout(20)
def test_one_process_switches_between_scenes(headset_scene: PulseScene, dead_mic_scene: PulseScene) -> None:
    for scene in (headset_scene, dead_mic_scene, headset_scene):
        x = record(scene, 0.2)
        assert np.any(x) == (scene is headset_scene), scene


@uses_pulse
@pytest.mark.timeout(20)
@pytest.mark.parametrize("pulse_scene", list(SCENES), indirect=True)
def test_every_scene_presents_its_devices(pulse_scene: PulseScene) -> None:
    """The mic is the only capture source and the default; the speaker is the default sink."""
    expected = [pulse_scene.mic] if pulse_scene.mic else []
    assert pulse_scene.capture_sources() == expected
    assert pulse_scene.truth.has_input == bool(expected)
    info = json.loads(pulse_scene.pactl("-f", "json", "info"))
    assert info["default_sink_name"] == pulse_scene.speaker
    assert info["default_source_name"] == (pulse_scene.mic or f"{pulse_scene.speaker}.monitor")
    sinks = {s["name"]: s for s in pulse_scene.pactl_list("sinks")}
    assert sinks[pulse_scene.speaker]["properties"]["device.class"] == "sound"


@uses_pulse
@pytest.mark.timeout(20)
def test_run_in_scene_gives_the_child_the_scene() -> None:
    probe = (
        "import subprocess, sys; "
        "sys.exit(0 if 'monitor' in subprocess.check_output(['pactl', 'get-default-source'], text=True) else 1)"
    )
    assert run_in_scene("no-input", [sys.executable, "-c", probe]) == 0
    assert run_in_scene("headset", [sys.executable, "-c", probe]) == 1


def test_scene_table_names_functions() -> None:
    assert list(SCENES) == ["headset", "laptop-echo", "dead-mic", "noisy", "clipping", "no-input"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tone_hz": 1000.5, "tone_dbfs": -20.0}, "whole cycles"),
        ({"tone_hz": 1000.0}, "needs tone_hz and tone_dbfs"),
        ({"tone_hz": 440.0, "clip_fraction": 1.5}, "clip_fraction must lie between 0 and 1 (got 1.5)"),
        ({"noise_dbfs": -40.0, "noise_band_hz": (3400.0, 300.0)}, "noise_band_hz"),
    ],
)
def test_mic_signal_rejects_bad_recipes(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MicSignal(**kwargs)  # type: ignore[arg-type]


def test_band_noise_has_exact_level_and_no_energy_out_of_band() -> None:
    x = MicSignal(noise_dbfs=-40.0).render().astype(np.float64)
    assert abs(rms_dbfs(x) + 40.0) < 0.01
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SAMPLERATE)
    outside = spectrum[(freqs < 299) | (freqs > 3401)].sum() / spectrum.sum()
    assert outside < 1e-6


def test_clipped_tone_fraction_matches_request() -> None:
    x = MicSignal(tone_hz=440.0, clip_fraction=0.3).render()
    assert abs(float(np.mean(np.abs(x) >= 1.0)) - 0.3) < 0.01


def test_cli_reports_unknown_scene() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.testbed.pulse", "karaoke"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "invalid choice: 'karaoke'" in result.stderr
