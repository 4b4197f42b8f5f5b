"""Thresholds, reasons and remedies of the audio checks: one table, read top to bottom.

Each rule says: for this check, when this measured value lies in [low, high),
the status is this, the summary says this, and the remedy is this. The first
matching row wins. Texts are ``str.format`` templates over the measurements
(plus ``gain_db``, the correction towards the target level).

Where the numbers come from:
* Target active speech level −22 dBFS: RFC 7874 §4 (−19 dBm0), which is where
  a softphone's AGC-free path should put normal speech.
* Noise floor and SNR: a quiet office through a decent headset reads −60 to
  −70 dBFS; hiss above −45 dBFS is plainly audible to the far end.
* Echo return loss: an echo canceller (G.168 §3.5) is designed for ERL ≥ 6 dB;
  without one, a talker echo needs ~45 dB loss to stay inaudible at VoIP
  delays (ITU-T G.131 Fig. 1, P.340 TCLw ≥ 46 dB for headsets).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from diagnostics.report import CheckResult, Status

__all__ = ["RULES", "TARGET_SPEECH_DBFS", "Rule", "judge"]

TARGET_SPEECH_DBFS = -22.0
INF = math.inf


@dataclass(frozen=True)
class Rule:
    check_id: str
    quantity: str
    """Measurement the rule looks at (a key of the measurements)."""
    low: float
    high: float
    status: Status
    summary: str
    remedy: str | None = None

    @property
    def band(self) -> str:
        """What the band is called: the summary up to its colon (figures label thresholds with it)."""
        return self.summary.split(":", 1)[0]


RULES: tuple[Rule, ...] = (
    # audio.mic_level: active speech level (P.56) while someone talks.
    Rule("audio.mic_level", "active_level_dbfs", -INF, -50.0, Status.FAIL,
         "speech is far too quiet: active level {active_level_dbfs:.1f} dBFS",
         "raise the microphone input gain by about {gain_db:.0f} dB, or move the microphone closer"),
    Rule("audio.mic_level", "active_level_dbfs", -50.0, -34.0, Status.WARN,
         "speech is quiet: active level {active_level_dbfs:.1f} dBFS",
         "raise the microphone input gain by about {gain_db:.0f} dB"),
    Rule("audio.mic_level", "active_level_dbfs", -34.0, -12.0, Status.PASS,
         "speech level is good: active level {active_level_dbfs:.1f} dBFS"),
    Rule("audio.mic_level", "active_level_dbfs", -12.0, INF, Status.WARN,
         "speech is too loud: active level {active_level_dbfs:.1f} dBFS",
         "lower the microphone input gain by about {gain_db_abs:.0f} dB"),
    # audio.noise: noise floor in the wideband speech band.
    Rule("audio.noise", "noise_dbfs", -45.0, INF, Status.FAIL,
         "loud background noise: noise floor {noise_dbfs:.1f} dBFS",
         "find the source (fan, hum from a ground loop, a noisy USB port), use a headset microphone, "
         "or lower the input gain if the noise comes from the preamp"),
    Rule("audio.noise", "noise_dbfs", -55.0, -45.0, Status.WARN,
         "audible background noise: noise floor {noise_dbfs:.1f} dBFS",
         "reduce background noise or use a headset microphone closer to the mouth"),
    Rule("audio.noise", "noise_dbfs", -INF, -55.0, Status.PASS,
         "quiet: noise floor {noise_dbfs:.1f} dBFS"),
    # audio.clipping: share of samples pinned at full scale.
    Rule("audio.clipping", "full_scale_percent", 0.1, INF, Status.FAIL,
         "the signal clips: {full_scale_percent:.2f} % of samples at full scale in {clipped_runs} runs",
         "lower the microphone input gain by about {gain_db_abs:.0f} dB (turn off any +20 dB mic boost)"),
    Rule("audio.clipping", "clipped_runs", 1.0, INF, Status.WARN,
         "occasional clipping: {clipped_runs} clipped runs",
         "lower the microphone input gain a little (3–6 dB)"),
    Rule("audio.clipping", "clipped_runs", -INF, 1.0, Status.PASS,
         "no clipping: peak {peak_dbfs:.1f} dBFS"),
    # audio.echo: echo return loss when an echo came back.
    Rule("audio.echo", "erl_db", -INF, 6.0, Status.FAIL,
         "strong echo: the microphone hears the speaker {delay_ms:.1f} ms later only {erl_db:.1f} dB down",
         "use a headset; if you must use speakers, turn them down and enable echo cancellation"),
    Rule("audio.echo", "erl_db", 6.0, 45.0, Status.WARN,
         "echo: the microphone hears the speaker {delay_ms:.1f} ms later, {erl_db:.1f} dB down",
         "the other side will hear themselves unless echo cancellation is on: use a headset, "
         "or enable echo cancellation and keep the speaker volume moderate"),
    Rule("audio.echo", "erl_db", 45.0, INF, Status.PASS,
         "weak echo: {erl_db:.1f} dB down after {delay_ms:.1f} ms, below what a listener notices"),
)


def judge(check_id: str, measurements: Mapping[str, Any], rules: Sequence[Rule] = RULES) -> CheckResult:
    """The first rule of ``check_id`` whose quantity lies in [low, high) decides."""
    values = dict(measurements)
    level = values.get("active_level_dbfs")
    if isinstance(level, (int, float)):
        values.setdefault("gain_db", TARGET_SPEECH_DBFS - level)
        values.setdefault("gain_db_abs", abs(TARGET_SPEECH_DBFS - level))
    values.setdefault("gain_db_abs", 6.0)
    for rule in rules:
        if rule.check_id != check_id:
            continue
        value = values.get(rule.quantity)
        if isinstance(value, (int, float)) and rule.low <= value < rule.high:
            return CheckResult(
                check_id,
                rule.status,
                rule.summary.format(**values),
                dict(measurements),
                rule.remedy.format(**values) if rule.remedy else None,
            )
    raise ValueError(f"no rule of {check_id} covers {measurements!r}")
