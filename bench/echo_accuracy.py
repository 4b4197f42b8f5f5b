"""Echo delay and ERL accuracy on synthetic echo paths (issue #3 targets: ≤ 0.05 ms, ≤ 0.5 dB).

Grid: delays 5–500 ms with fractional samples, echo loss 0–40 dB, SNR 30/10/0 dB, a
linear path and a "small speaker" (300 Hz–7 kHz band limit, soft saturation, 100 ppm
clock drift), at 8, 16 and 48 kHz. Prints the worst errors and their ratio to the target.

    .venv/bin/python -m bench.echo_accuracy
"""

from __future__ import annotations

import itertools
import time

from diagnostics.audio.echo import estimate_echo
from tests.diagnostics.audio.echo_paths import echo_case

DELAY_TARGET_MS = 0.05
ERL_TARGET_DB = 0.5


def main() -> None:
    rows = []
    grid = itertools.product(
        (8000, 16000, 48000),
        (5.0133, 47.77, 123.4567, 250.0625, 499.99),
        (0.0, 20.0, 40.0),
        (30.0, 10.0, 0.0),
        ((0.0, False, False), (100.0, True, True)),
    )
    started = time.perf_counter()
    for rate, delay, loss, snr, (ppm, nonlinear, small) in grid:
        case = echo_case(rate, delay, loss, snr, ppm, nonlinear, small)
        t0 = time.perf_counter()
        est = estimate_echo(case.reference, case.capture, rate, case.noise)
        elapsed = time.perf_counter() - t0
        assert est.delay_ms is not None and est.erl_db is not None
        rows.append((rate, snr, "small+drift" if small else "linear", abs(est.delay_ms - case.delay_ms),
                     abs(est.erl_db - case.erl_db), elapsed))
    print(f"{len(rows)} echo paths in {time.perf_counter() - started:.1f} s")
    header = ("rate", "SNR dB", "path", "max delay err us", "max ERL err dB", "mean time ms")
    print("{:>6} {:>6} {:>12} {:>17} {:>15} {:>13}".format(*header))
    for key in sorted({(r[0], r[1], r[2]) for r in rows}):
        sel = [r for r in rows if (r[0], r[1], r[2]) == key]
        print(f"{key[0]:>6} {key[1]:>6.0f} {key[2]:>12} {max(r[3] for r in sel) * 1000:>17.2f} "
              f"{max(r[4] for r in sel):>15.3f} {sum(r[5] for r in sel) / len(sel) * 1000:>13.1f}")
    worst_delay, worst_erl = max(r[3] for r in rows), max(r[4] for r in rows)
    print(f"worst delay error {worst_delay * 1000:.2f} us = {worst_delay / DELAY_TARGET_MS:.3f} of the 0.05 ms target")
    print(f"worst ERL error   {worst_erl:.3f} dB = {worst_erl / ERL_TARGET_DB:.3f} of the 0.5 dB target")


if __name__ == "__main__":
    main()
