"""phonekit's P.56 active speech level against the ITU-T reference (sv56demo) on speech with pauses.

Target (issue #3): within 0.5 dB. Also the level meters on tones and noise of known level (target 0.1 dB).

    .venv/bin/python -m bench.p56_accuracy
"""

from __future__ import annotations

from bench.p56_clips import build, load_reference, sha256
from diagnostics.audio.levels import measure_levels
from diagnostics.audio.p56 import active_speech_level
from diagnostics.audio.synth import band_noise, tone


def main() -> None:
    ref = load_reference()
    print(f"reference: {ref['reference_tool']['name']} at {ref['reference_tool']['commit'][:12]}")
    header = ("clip", "fs", "same audio", "sv56 dBov", "ours", "diff dB", "act sv56", "ours")
    print("{:<34} {:>6} {:>10} {:>10} {:>8} {:>8} {:>9} {:>6}".format(*header))
    worst = 0.0
    for clip in ref["clips"]:
        samples = build(clip["recipe"])
        rate = clip["sample_rate_hz"]
        ours = active_speech_level(samples, rate)
        expected = clip["sv56demo"]["active_level_dbov"]
        diff = ours.level_dbfs - expected
        worst = max(worst, abs(diff))
        same = "yes" if sha256(samples) == clip["raw_sha256"] else "NO"
        print(f"{clip['name']:<34} {rate:>6} {same:>10} {expected:>10.3f} {ours.level_dbfs:>8.3f} {diff:>8.3f} "
              f"{clip['sv56demo']['activity_factor_pct']:>8.1f}% {100 * ours.activity:>5.1f}%")
    print(f"worst P.56 difference {worst:.3f} dB = {worst / 0.5:.3f} of the 0.5 dB target")

    worst_level = 0.0
    for rate in (8000, 16000, 48000):
        for level in (-3.0103, -20.0, -40.0, -60.0):
            for signal in (tone(rate, 1.0, 997.0, level, 0.0), band_noise(rate, 2.0, level)):
                worst_level = max(worst_level, abs(measure_levels(signal, rate).rms_dbfs - level))
    print(f"worst RMS level error on tones and band noise {worst_level:.4f} dB "
          f"= {worst_level / 0.1:.3f} of the 0.1 dB target")


if __name__ == "__main__":
    main()
