"""``phonekit launch`` full gate, wall time: checks + echo test call, as the user waits for it.

Runs ``phonekit launch --non-interactive --no-phone --json`` as a process (start-up
included) inside a virtual USB headset scene, N times per mode, and prints the
median and worst wall time against the target (≤ 10 s), plus what the parts took
from the report (the audio session, the verification call).

Modes: ``embedded`` (no profile: the embedded echo service on loopback) and
``pbx`` (a profile for 1001 at a test-bed Kamailio with its echo extension; it
needs 127.0.0.1:5060, so do not run it while the test suite runs).
Run: ``python -m bench.launch_gate [--runs 5] [--modes embedded,pbx]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.testbed.kamailio import Kamailio
from tests.testbed.pulse import start_scene

TARGET_S = 10.0


def _profile(folder: Path, kamailio: Kamailio) -> Path:
    secret = folder / "bench.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(kamailio.users["1001"] + "\n")
    path = folder / "bench.toml"
    path.write_text(f'[account]\nuser = "1001"\ndomain = "{kamailio.domain}"\n'
                    f'registrar = "{kamailio.host}:{kamailio.udp_port}"\npassword_file = "bench.secret"\n'
                    f'[checks]\necho_extension = "{kamailio.echo_extension}"\n')  # fmt: skip
    return path


def _run(env: dict[str, str], extra: Sequence[str]) -> tuple[float, dict[str, float], int]:
    argv = [sys.executable, "-m", "provision.cli", "launch", "--non-interactive", "--no-phone", "--json", *extra]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    report = json.loads(proc.stdout) if proc.stdout.strip() else {"checks": []}
    parts = {c["id"]: c["duration_ms"] / 1000.0 for c in report["checks"]}
    return wall, parts, proc.returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.launch_gate")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--modes", default="embedded,pbx")
    args = parser.parse_args(argv)
    modes = args.modes.split(",")
    missed = False
    with tempfile.TemporaryDirectory(prefix="phonekit-bench-") as tmp, start_scene("headset") as scene:
        folder = Path(tmp)
        for mode in modes:
            extra: list[str] = []
            kamailio = None
            if mode == "pbx":
                kamailio = Kamailio(folder / "kamailio")
                kamailio.start()
                extra = ["--profile", str(_profile(folder, kamailio))]
            try:
                walls, audio, verify, codes = [], [], [], []
                for _ in range(args.runs):
                    wall, parts, code = _run(dict(scene.env), extra)
                    walls.append(wall)
                    codes.append(code)
                    audio.append(sum(v for k, v in parts.items() if k.startswith("audio.")))
                    verify.append(parts.get("launch.verify", float("nan")))
            finally:
                if kamailio is not None:
                    kamailio.stop()
            worst = max(walls)
            ok = worst <= TARGET_S and all(c == 0 for c in codes)
            missed |= not ok
            verdict = "PASS" if ok else "MISS"
            print(f"{mode:9s} wall median {statistics.median(walls):5.2f} s, worst {worst:5.2f} s "
                  f"(audio checks {statistics.median(audio):.2f} s, echo call {statistics.median(verify):.2f} s), "
                  f"exit codes {sorted(set(codes))}; target <= {TARGET_S:.0f} s: {verdict}")  # fmt: skip
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
