"""``phonekit check audio --non-interactive`` on the PulseAudio scenes: wall time (target ≤ 6 s) and the echo
delay against an independent measurement of the same scene (sox -M of speaker monitor and mic, one process).

    .venv/bin/python -m bench.audio_scenes [RUNS]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from tests.testbed.pulse import start_scene

TARGET_S = 6.0


def run_check(env: dict[str, str]) -> tuple[float, dict[str, dict[str, object]]]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "provision.cli", "check", "audio", "--non-interactive", "--json"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    elapsed = time.perf_counter() - started
    return elapsed, {c["id"]: c for c in json.loads(done.stdout)["checks"]}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print(f"{'scene':<12} {'wall s (min/median/max)':>26} {'ratio to 6 s':>13}")
    for name in ("headset", "laptop-echo", "dead-mic", "noisy", "clipping", "no-input"):
        scene = start_scene(name)
        try:
            times = []
            diffs = []
            for _ in range(runs):
                elapsed, checks = run_check(scene.env)
                times.append(elapsed)
                if name == "laptop-echo":
                    ours = checks["audio.echo"]["measurements"]["delay_ms"]  # type: ignore[index]
                    independent = scene.measure_echo_delay_ms()
                    diffs.append((float(ours), independent))  # type: ignore[arg-type]
            print(f"{name:<12} {min(times):>8.2f} {statistics.median(times):>8.2f} {max(times):>8.2f} "
                  f"{max(times) / TARGET_S:>13.2f}")
            for ours, independent in diffs:
                print(f"    echo delay: phonekit {ours:7.2f} ms, independent {independent:7.2f} ms, "
                      f"difference {ours - independent:+6.2f} ms")
        finally:
            scene.stop()


if __name__ == "__main__":
    main()
