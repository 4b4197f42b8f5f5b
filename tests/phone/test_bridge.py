"""The device bridge against a real PulseAudio scene, clocked from a thread the way pjsua2's bridge clocks it.

The mic side is checked against the scene's ground truth (1 kHz bursts at a
known level); the speaker side against an independent recording of the
speaker sink's monitor by ``pacat``, a separate PulseAudio client.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from diagnostics.audio.probe import DeviceChoice, resolve_device
from diagnostics.audio.synth import tone
from diagnostics.audio.tone import ToneEstimate, measure_tone
from diagnostics.errors import MeasurementError
from phone.bridge import BridgeStats, DeviceBridge, _Capture, _Playback
from phone.resample import Resampler
from tests.testbed.pulse import SAMPLERATE, PulseScene, sounddevice_in

CLOCK_HZ = 16000
FRAME = 320  # 20 ms at the clock rate
FAR_END_HZ = 700.0  # not the mic's 1 kHz: a crossed wire would show
FAR_END_DBFS = -18.0

uses_pulse = pytest.mark.testbed


@dataclass
class ClockRun:
    """What the conference clock saw: every frame read, the meter after every tick, the stats at every tick."""

    captured: np.ndarray
    input_levels_dbfs: list[float] = field(default_factory=list)
    stats: list[BridgeStats] = field(default_factory=list)


def run_clock(bridge: DeviceBridge, seconds: float, play: np.ndarray | None = None) -> ClockRun:
    """Call read_frame/write_frame every 20 ms from a thread of its own, as pjsua2's clock thread does."""
    ticks = round(seconds * 1000 / bridge.frame_ms)
    run = ClockRun(np.zeros(ticks * FRAME, dtype=np.int16))
    silence = np.zeros(FRAME, dtype=np.int16)
    errors: list[BaseException] = []

    def clock() -> None:
        try:
            start = time.monotonic()
            for k in range(ticks):
                time.sleep(max(0.0, start + k * bridge.frame_ms / 1000 - time.monotonic()))
                bridge.read_frame(run.captured[k * FRAME : (k + 1) * FRAME])
                bridge.write_frame(play[k * FRAME : (k + 1) * FRAME] if play is not None else silence)
                run.input_levels_dbfs.append(bridge.input_level_dbfs)
                run.stats.append(bridge.stats())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=clock, name="conference-clock")
    thread.start()
    thread.join(seconds + 10)
    assert not thread.is_alive(), "the clock thread hung"
    if errors:
        raise errors[0]
    return run


@contextlib.contextmanager
def headset_bridge(scene: PulseScene, *, muted: bool = False) -> Iterator[DeviceBridge]:
    """The scene's headset, started; picked by name so that the PULSE_SOURCE/PULSE_SINK routing is used too."""
    with sounddevice_in(scene):
        mic = resolve_device("USB Headset Mono", "input")
        speaker = resolve_device("USB Headset Analog", "output")
        assert mic.env and speaker.env, (mic, speaker)
        bridge = DeviceBridge(mic, speaker, clock_rate_hz=CLOCK_HZ)
        bridge.muted = muted
        with bridge:
            yield bridge


@dataclass
class HeadsetRun:
    clock: ClockRun
    speaker_monitor: np.ndarray
    """What reached the speaker sink, recorded by pacat at the scene's 48 kHz."""


def record_monitor(scene: PulseScene, path: Path) -> subprocess.Popen[bytes]:
    """Start pacat recording the speaker's monitor; return once its stream exists."""
    argv = ["pacat", "--record", "--raw", "--format=float32le", f"--rate={SAMPLERATE}", "--channels=1",
            f"--device={scene.speaker}.monitor", str(path)]
    proc = subprocess.Popen(argv, env=scene.env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 5
    while not any(s.get("properties", {}).get("application.process.id") == str(proc.pid)
                  for s in scene.pactl_list("source-outputs")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"pacat could not record {scene.speaker}.monitor: {err.decode().strip()}")
        time.sleep(0.02)
    return proc


@pytest.fixture(scope="module")
def headset_run(headset_scene: PulseScene, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeadsetRun]:
    """One 1.5 s run of both directions: the mic's bursts come in, a far-end tone goes out."""
    far_end = tone(CLOCK_HZ, 1.5, FAR_END_HZ, FAR_END_DBFS)
    play = np.round(far_end * 32768).astype(np.int16)
    path = tmp_path_factory.mktemp("bridge") / "speaker_monitor.f32"
    recorder = record_monitor(headset_scene, path)
    try:
        with headset_bridge(headset_scene) as bridge:
            clock = run_clock(bridge, 1.5, play)
        time.sleep(0.1)  # the last frames' way through the device buffers
    finally:
        recorder.terminate()
        recorder.wait(5)
    yield HeadsetRun(clock, np.fromfile(path, dtype=np.float32).astype(np.float64))


def loudest(x: np.ndarray, rate: int, window_s: float) -> np.ndarray:
    """The ``window_s`` stretch with the most energy (inside a tone burst, clear of its ramps)."""
    n, step = round(window_s * rate), rate // 100
    energy = np.convolve(x**2, np.ones(n), mode="valid")[::step]
    start = int(np.argmax(energy)) * step
    return x[start : start + n]


def cleanest_tone(x: np.ndarray, rate: int, window_s: float) -> ToneEstimate:
    """The tone in the cleanest ``window_s`` stretch among those within 1 dB of the loudest.

    Inside a burst and clear of its ramps; on a starved machine, clear of a gap if there is such a stretch.
    """
    n, step = round(window_s * rate), rate // 100
    energy = np.convolve(x**2, np.ones(n), mode="valid")[::step]
    loud = np.flatnonzero(energy >= 10 ** (-0.1) * energy.max()) * step
    return max((measure_tone(x[start : start + n], rate) for start in loud), key=lambda t: t.tone_to_rest_db)


@uses_pulse
@pytest.mark.timeout(30)
def test_mic_frames_carry_the_scenes_tone_at_its_level(headset_scene: PulseScene, headset_run: HeadsetRun) -> None:
    truth = headset_scene.truth
    assert truth.tone_hz == 1000.0 and truth.tone_dbfs == -20.0
    x = headset_run.clock.captured.astype(np.float64) / 32768
    burst = cleanest_tone(x, CLOCK_HZ, 0.2)
    # Ground truth is exact; the path is PulseAudio's 48 -> 44.1 kHz resampler, ours, and int16.
    assert abs(burst.frequency_hz - truth.tone_hz) <= 1.0, burst
    assert abs(burst.level_dbfs - truth.tone_dbfs) <= 0.3, burst
    # The meter (RMS of a 20 ms frame) reads the same level inside a burst.
    assert abs(max(headset_run.clock.input_levels_dbfs) - truth.tone_dbfs) <= 0.3


@uses_pulse
@pytest.mark.timeout(30)
def test_far_end_tone_reaches_the_speaker(headset_run: HeadsetRun) -> None:
    y = headset_run.speaker_monitor
    assert len(y) > SAMPLERATE, f"pacat recorded only {len(y)} samples"
    heard = cleanest_tone(y, SAMPLERATE, 0.3)
    assert abs(heard.frequency_hz - FAR_END_HZ) <= 5.0, heard
    assert abs(heard.level_dbfs - FAR_END_DBFS) <= 1.0, heard


@uses_pulse
@pytest.mark.timeout(30)
def test_stats_account_for_the_run(headset_run: HeadsetRun) -> None:
    stats = headset_run.clock.stats
    last = stats[-1]
    assert last.capture is not None and last.playback is not None
    for direction in (last.capture, last.playback):
        assert direction.frames == len(stats)
        assert direction.overrun_samples == 0
        assert direction.device_latency_ms > 0
        assert direction.resampler_delay_ms == pytest.approx(Resampler(direction.device_rate_hz, CLOCK_HZ).delay_ms)
        assert direction.added_latency_ms == pytest.approx(direction.ring_fill_ms + direction.resampler_delay_ms)
    # Bounded whatever the machine's load: a backlog beyond 100 ms is cut at once (a frame per tick on the
    # speaker side). The control itself (cushion, drift, stalls) is tested exactly on simulated timelines
    # below, the 20 ms target on an idle machine by bench/bridge_latency.py.
    for name in ("capture", "playback"):
        added = [getattr(s, name).added_latency_ms for s in stats[40:]]
        assert float(np.median(added)) <= 100 + 20 + 2.2, (name, added)


@uses_pulse
@pytest.mark.timeout(30)
def test_muted_mic_sends_exact_zeros_while_the_meter_still_hears_it(headset_scene: PulseScene) -> None:
    with headset_bridge(headset_scene, muted=True) as bridge:
        run = run_clock(bridge, 0.8)  # longer than the bursts' 0.5 s pause: some tone is heard
    assert not run.captured.any(), f"muted frames carry up to {np.abs(run.captured).max()}"
    assert max(run.input_levels_dbfs) > -30.0


@uses_pulse
@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("choice", "message"),
    [
        (DeviceChoice(99, "Ghost Headset"), "could not open the microphone 'Ghost Headset' (PortAudio device 99): "),
        (DeviceChoice(0, "Unplugged Headset", (("PULSE_SOURCE", "alsa_input.usb-unplugged"),)),
         "could not open the microphone 'Unplugged Headset' (PortAudio device 0): "),
    ],
)
def test_a_missing_device_gives_a_clear_error(headset_scene: PulseScene, choice: DeviceChoice, message: str) -> None:
    with sounddevice_in(headset_scene), pytest.raises(MeasurementError) as failure:
        DeviceBridge(choice, None).start()
    assert str(failure.value).startswith(message), str(failure.value)
    assert "pick another one" in failure.value.remedy


SIM_RATE, SIM_BLOCK, SIM_FRAME = 44100, 220, 882  # 5 ms device blocks, 20 ms frames at 44.1 kHz


def simulate(direction: str, callbacks: np.ndarray, ticks: np.ndarray) -> tuple[_Capture | _Playback, list[float]]:
    """Drive one direction's callback and clock side on a simulated timeline (seconds), in time order.

    Returns the path and, for every tick after the first 2 s (priming, first trims), how far the ring's
    fill stood above its cushion (ms).
    """
    path = (_Capture if direction == "capture" else _Playback)("sim", SIM_RATE, CLOCK_HZ, FRAME, 220, SIM_BLOCK)
    events = sorted([(t, True) for t in callbacks] + [(t, False) for t in ticks])
    device_buffer = np.zeros((SIM_BLOCK, 1), dtype=np.float32)
    silence = np.zeros(FRAME)
    beyond_ms = []
    for t, is_callback in events:
        if is_callback:
            path.on_audio(device_buffer, SIM_BLOCK, None, 0)
            continue
        if isinstance(path, _Capture):
            path.read()
        else:
            path.write(silence)
        if t > 2.0:
            stats = path.stats()
            beyond_ms.append(stats.ring_fill_ms - stats.cushion_ms)
    return path, beyond_ms


@pytest.mark.parametrize("direction", ["capture", "playback"])
@pytest.mark.parametrize("ppm", [0, 1000, -1000])
def test_drift_is_absorbed_by_dropping_or_inserting_a_few_samples(direction: str, ppm: int) -> None:
    """30 s of a device clock ``ppm`` fast against the conference clock.

    The device delivers (or takes) 5 ms blocks at 44.1 kHz on its own clock; the conference clock
    ticks every 20 ms, each tick 0-3 ms late. Ground truth: the device makes ppm * 30 s * 44100 samples
    more (or fewer) than the clock uses, and that many must be dropped (or made up with silence), give
    or take what priming leaves in the ring; the fill must stay within a block of the cushion.
    """
    seconds = 30.0
    ticks = np.arange(1, round(seconds / 0.02)) * 0.02
    ticks += np.random.default_rng(abs(ppm)).uniform(0, 0.003, len(ticks))
    path, beyond_ms = simulate(direction, np.arange(0.0, seconds, SIM_BLOCK / (SIM_RATE * (1 + ppm * 1e-6))), ticks)
    final = path.stats()
    # At most one underrun (a block crossing a tick) teaches the cushion the delivery granularity.
    assert final.cushion_ms <= 5.0 + 5.0 + 2.0 + 0.1
    assert final.underrun_samples <= SIM_BLOCK + 2 * SIM_FRAME
    assert float(np.median(beyond_ms)) <= 5.0 + 0.1  # within one device block of the cushion
    surplus = ppm * 1e-6 * seconds * SIM_RATE  # device samples the clock has no use for (negative: missing)
    if direction == "playback":
        surplus = -surplus  # a fast speaker takes more than the clock gives
    removed = final.dropped_samples - final.padded_samples - final.underrun_samples
    assert abs(removed - surplus) <= SIM_FRAME + 2 * SIM_BLOCK, (removed, surplus)


@pytest.mark.parametrize("direction", ["capture", "playback"])
def test_a_stalled_device_costs_one_gap_and_a_block_of_cushion(direction: str) -> None:
    """The device's callbacks stop for 35 ms (a busy machine): one gap, then back to a low latency."""
    callbacks = np.arange(0.0, 10.0, SIM_BLOCK / SIM_RATE)
    stalled = (callbacks > 5.0) & (callbacks < 5.035)
    callbacks[stalled] = 5.035  # the held-back blocks all come at once
    path, beyond_ms = simulate(direction, callbacks, np.arange(1, 500) * 0.02)
    final = path.stats()
    assert final.cushion_ms <= 5.0 + 5.0 + 2.0 + 0.1
    assert final.underrun_samples <= round(0.035 * SIM_RATE) + 2 * SIM_FRAME
    assert max(beyond_ms[-100:]) <= 5.0 + 0.1  # the last 2 s: back within a block of the cushion


def test_without_devices_the_mic_is_silent_and_the_far_end_is_only_metered() -> None:
    with DeviceBridge(None, None) as bridge:
        out = np.full(FRAME, 7, dtype=np.int16)
        bridge.read_frame(out)
        far = np.round(tone(CLOCK_HZ, 0.02, 1000.0, -10.0, fade_s=0) * 32768).astype(np.int16)
        bridge.write_frame(far)
        assert not out.any()
        assert bridge.stats() == BridgeStats(capture=None, playback=None)
        assert abs(bridge.output_level_dbfs + 10.0) < 0.01
        assert abs(bridge.output_peak_dbfs - (-10.0 + 20 * math.log10(math.sqrt(2)))) < 0.01
        assert bridge.input_level_dbfs < -150


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clock_rate_hz": 16000, "frame_ms": 0}, r"whole number of samples \(got 0 ms at 16000 Hz\)"),
        ({"clock_rate_hz": 11025, "frame_ms": 10}, r"whole number of samples \(got 10 ms at 11025 Hz\)"),
        ({"device_rate_hz": -48000}, r"device_rate_hz must be positive \(got -48000\)"),
        ({"blocksize": 0}, r"blocksize must be a positive number of samples \(got 0\)"),
        ({"jitter_ms": -1.0}, r"jitter_ms must be >= 0 \(got -1.0\)"),
    ],
)
def test_rejects_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeviceBridge(None, None, **kwargs)  # type: ignore[arg-type]


def test_frames_must_be_one_clock_frame() -> None:
    bridge = DeviceBridge(None, None)
    with pytest.raises(ValueError, match=r"read_frame needs a 320-sample frame \(got 160\)"):
        bridge.read_frame(np.zeros(160, dtype=np.int16))
    with pytest.raises(ValueError, match=r"write_frame needs a 320-sample frame \(got 321\)"):
        bridge.write_frame(np.zeros(321, dtype=np.int16))
