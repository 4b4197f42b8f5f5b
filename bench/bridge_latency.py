"""What the device bridge adds to the audio path beyond the device buffers, per direction (target ≤ 20 ms).

A private PulseAudio scene (``headset``: the mic carries tone bursts) is opened through the same
``resolve_device`` path the phone uses; a thread calls ``read_frame``/``write_frame`` every 20 ms
(pjsua2's clock) for SECONDS and reads ``stats()`` at every tick. Added latency = ring fill at the tick
(capture: what stays behind the frame just read; playback: what is queued ahead of the frame just
written) + the resampler's group delay. The first second (priming, first trims) is left out.
Both the device's default rate (PortAudio's ALSA ``pulse`` device says 44.1 kHz) and 48 kHz (the
server's own rate, so PulseAudio does not resample) are measured.

Cross-check of that accounting: on the ``laptop-echo`` scene a noise burst goes out through
``write_frame`` and comes back through ``read_frame``; its round trip (cross-correlation) should equal
the echo path measured independently (sox -M, +-5 ms) + both device latencies + both directions' added
latency + one 20 ms frame (the clock hands over whole frames: a frame's last sample is read 20 ms after
its first was captured).

    .venv/bin/python -m bench.bridge_latency [SECONDS]
"""

from __future__ import annotations

import statistics
import sys
import threading
import time

import numpy as np

from diagnostics.audio.probe import resolve_device
from diagnostics.audio.synth import band_noise, tone
from phone.bridge import BridgeStats, DeviceBridge
from tests.testbed.pulse import PulseScene, sounddevice_in, start_scene

TARGET_MS = 20.0
CLOCK_HZ = 16000
FRAME = 320
SETTLE_S = 1.0


def open_bridge(scene: PulseScene, device_rate_hz: int | None, *, by_name: bool) -> DeviceBridge:
    with sounddevice_in(scene):
        mic = resolve_device("USB Headset Mono" if by_name else None, "input")
        speaker = resolve_device("USB Headset Analog" if by_name else None, "output")
        bridge = DeviceBridge(mic, speaker, clock_rate_hz=CLOCK_HZ, device_rate_hz=device_rate_hz)
        bridge.start()
    return bridge


def clock(bridge: DeviceBridge, play: np.ndarray) -> tuple[np.ndarray, list[BridgeStats], list[float]]:
    """Tick every 20 ms in a thread of its own: the frames read, the stats at every tick, how late each was."""
    ticks = len(play) // FRAME
    captured = np.zeros(ticks * FRAME, dtype=np.int16)
    stats: list[BridgeStats] = []
    late_ms: list[float] = []

    def run() -> None:
        start = time.monotonic()
        for k in range(ticks):
            due = start + k * 0.02
            time.sleep(max(0.0, due - time.monotonic()))
            late_ms.append((time.monotonic() - due) * 1000)
            bridge.read_frame(captured[k * FRAME : (k + 1) * FRAME])
            bridge.write_frame(play[k * FRAME : (k + 1) * FRAME])
            stats.append(bridge.stats())

    thread = threading.Thread(target=run, name="conference-clock")
    thread.start()
    thread.join()
    return captured, stats, late_ms


def round_trip(device_rate_hz: int | None) -> None:
    scene = start_scene("laptop-echo")
    try:
        echo_ms = statistics.median(scene.measure_echo().delay_ms for _ in range(3))
        burst = band_noise(CLOCK_HZ, 0.5, -16.0, seed=3)
        play = np.zeros(3 * CLOCK_HZ)
        play[CLOCK_HZ : CLOCK_HZ + len(burst)] = burst  # after a second of priming and trims
        played = np.round(play * 32768).astype(np.int16)
        bridge = open_bridge(scene, device_rate_hz, by_name=False)
        try:
            captured, stats, _ = clock(bridge, played)
        finally:
            bridge.stop()
    finally:
        scene.stop()
    n = 1 << (2 * len(played)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(captured, n) * np.conj(np.fft.rfft(played, n)), n)[: CLOCK_HZ // 2]
    measured_ms = int(np.argmax(corr)) / CLOCK_HZ * 1000
    pairs = [(s.capture, s.playback) for s in stats[round(SETTLE_S / 0.02) :]]
    added_ms = statistics.median(c.added_latency_ms + p.added_latency_ms for c, p in pairs if c and p)
    last = stats[-1]
    assert last.capture is not None and last.playback is not None
    device_ms = last.capture.device_latency_ms + last.playback.device_latency_ms
    accounted = echo_ms + device_ms + added_ms + 20.0
    print(f"{last.capture.device_rate_hz:>11} round trip {measured_ms:6.1f} ms; accounted {accounted:6.1f} ms = echo "
          f"{echo_ms:.1f} + devices {device_ms:.1f} + bridge {added_ms:.1f} + frame 20; "
          f"difference {measured_ms - accounted:+.1f} ms")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    scene = start_scene("headset")
    medians, maxima = [], []
    try:
        print(f"{'device rate':>11} {'direction':>9} {'device ms':>9} {'added ms median':>15} {'ratio':>6} "
              f"{'max':>6} {'ratio':>6} {'cushion ms':>10} {'underrun':>8} {'dropped':>7} {'padded':>6}")
        for rate in (None, 48000):
            far_end = np.round(tone(CLOCK_HZ, seconds, 700.0, -18.0) * 32768).astype(np.int16)
            bridge = open_bridge(scene, rate, by_name=True)
            try:
                _, stats, late_ms = clock(bridge, far_end)
            finally:
                bridge.stop()
            settled = stats[round(SETTLE_S / 0.02) :]
            for name in ("capture", "playback"):
                series = [getattr(s, name) for s in settled]
                added = [d.added_latency_ms for d in series]
                last = series[-1]
                medians.append(statistics.median(added))
                maxima.append(max(added))
                print(f"{last.device_rate_hz:>11} {name:>9} {last.device_latency_ms:>9.1f} "
                      f"{medians[-1]:>15.2f} {medians[-1] / TARGET_MS:>6.2f} {maxima[-1]:>6.2f} "
                      f"{maxima[-1] / TARGET_MS:>6.2f} {last.cushion_ms:>10.2f} {last.underrun_samples:>8} "
                      f"{last.dropped_samples:>7} {last.padded_samples:>6}")
            print(f"{'':>11} clock ticks late: median {statistics.median(late_ms):.2f} ms, max {max(late_ms):.2f} ms "
                  f"over {len(late_ms)} ticks")
    finally:
        scene.stop()
    print(f"target: ≤ {TARGET_MS:g} ms beyond the device buffers (ticks after the first {SETTLE_S:g} s)")
    print(f"  median: worst {max(medians):.2f} ms = {max(medians) / TARGET_MS:.2f} of target "
          f"{'PASS' if max(medians) <= TARGET_MS else 'MISS'}")
    print(f"  max:    worst {max(maxima):.2f} ms = {max(maxima) / TARGET_MS:.2f} of target "
          f"{'PASS' if max(maxima) <= TARGET_MS else 'MISS'}")
    print("cross-check on laptop-echo (the accounting above against a measured round trip):")
    for rate in (None, 48000):
        round_trip(rate)


if __name__ == "__main__":
    main()
