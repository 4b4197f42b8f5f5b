"""The audio checks: ``audio.mic_level``, ``audio.noise``, ``audio.clipping``, ``audio.speaker``, ``audio.echo``.

Each ``assess_*`` is a pure function of arrays (tested on synthetic signals);
each ``check_*`` takes them from the run's shared :mod:`diagnostics.audio.session`
and adds the figures of :mod:`diagnostics.audio.plots` (the verdict never depends on them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from diagnostics.audio.dsp import FloatArray
from diagnostics.audio.echo import EchoEstimate, estimate_echo
from diagnostics.audio.levels import measure_clipping, measure_levels
from diagnostics.audio.noise import measure_noise_floor
from diagnostics.audio.p56 import active_speech_level
from diagnostics.audio.plots import echo_impulse_plot, level_plot, spectrum_plot
from diagnostics.audio.session import TAIL_S, AudioSession, NoMicrophone, audio_session
from diagnostics.audio.tone import measure_tone
from diagnostics.audio.verdicts import judge
from diagnostics.checks import CheckContext, CheckFn
from diagnostics.report import CheckResult, Status

__all__ = [
    "assess_clipping",
    "assess_echo",
    "assess_mic_level",
    "assess_noise",
    "assess_speaker",
    "check_clipping",
    "check_echo",
    "check_mic_level",
    "check_noise",
    "check_speaker",
]

# Speech is "there" when P.56 finds this much activity this far above the noise floor.
MIN_ACTIVITY = 0.05
MIN_SPEECH_OVER_NOISE_DB = 15.0
DC_OFFSET_WARN = 0.01
# The test tone counts as heard when it stands this far above the same band in the quiet part.
TONE_HEARD_DB = 10.0
TONE_BAND_HZ = 50.0

# Longest echo delay looked for: the tail recorded after the excitation, less a margin.
ECHO_MAX_DELAY_S = TAIL_S - 0.05

_DIGITAL_SILENCE = "the microphone delivers digital silence (every sample is zero)"


def _r(value: float, digits: int = 2) -> float | None:
    """JSON-friendly rounding; None for the −inf of silence."""
    return round(float(value), digits) if np.isfinite(value) else None


def assess_mic_level(mic: FloatArray, samplerate: int, asked_to_speak: bool) -> CheckResult:
    levels = measure_levels(mic, samplerate)
    asl = active_speech_level(mic, samplerate)
    floor = measure_noise_floor(mic, samplerate)
    m: dict[str, Any] = {
        "rms_dbfs": _r(levels.rms_dbfs),
        "peak_dbfs": _r(levels.peak_dbfs),
        "active_level_dbfs": _r(asl.level_dbfs),
        "activity_percent": _r(100 * asl.activity, 1),
        "noise_dbfs": _r(floor.noise_dbfs),
        "snr_db": _r(asl.level_dbfs - floor.noise_dbfs, 1),
        "dc_offset_percent": _r(100 * levels.dc_offset, 3),
        "duration_s": _r(levels.duration_s, 3),
        "asked_to_speak": asked_to_speak,
    }
    if levels.digital_silence:
        return CheckResult(
            "audio.mic_level", Status.FAIL, f"{_DIGITAL_SILENCE}: it is muted, switched off or broken", m,
            "unmute the microphone (mute key or switch on the headset cable, sound settings), "
            "check its plug, or choose another input with --input",
        )
    speech = asl.activity >= MIN_ACTIVITY and asl.level_dbfs - floor.noise_dbfs >= MIN_SPEECH_OVER_NOISE_DB
    if not speech:
        if asked_to_speak:
            return CheckResult(
                "audio.mic_level", Status.FAIL,
                f"no speech heard: the microphone delivered only noise at {levels.rms_dbfs:.1f} dBFS", m,
                "check that this microphone is the one you speak into and is not muted; raise its input gain",
            )
        return CheckResult(
            "audio.mic_level", Status.SKIP,
            f"nobody spoke (non-interactive run): speech level not measured; input at {levels.rms_dbfs:.1f} dBFS", m,
            "run 'phonekit check audio' interactively and speak when asked",
        )
    result = judge("audio.mic_level", m)
    if result.status is Status.PASS and abs(levels.dc_offset) > DC_OFFSET_WARN:
        return CheckResult(
            "audio.mic_level", Status.WARN,
            f"{result.summary}, but with a DC offset of {100 * levels.dc_offset:.1f} % of full scale", m,
            "a DC offset wastes headroom and clicks on mute: try another USB port or microphone, or update its driver",
        )
    return result


def assess_noise(quiet: FloatArray, samplerate: int) -> CheckResult:
    levels = measure_levels(quiet, samplerate)
    floor = measure_noise_floor(quiet, samplerate)
    m = {
        "noise_dbfs": _r(floor.noise_dbfs),
        "quiet_percent": _r(100 * floor.quiet_fraction, 1),
        "band_low_hz": floor.band_low_hz,
        "band_high_hz": floor.band_high_hz,
    }
    if levels.digital_silence:
        return CheckResult("audio.noise", Status.SKIP, f"not measured: {_DIGITAL_SILENCE}", m,
                           "fix the microphone first (see audio.mic_level)")
    return judge("audio.noise", m)


def assess_clipping(mic: FloatArray, samplerate: int) -> CheckResult:
    levels = measure_levels(mic, samplerate)
    clip = measure_clipping(mic, samplerate)
    m = {
        "full_scale_percent": _r(100 * clip.full_scale_fraction, 3),
        "clipped_runs": clip.clipped_runs,
        "longest_run_ms": _r(clip.longest_run_ms, 3),
        "peak_dbfs": _r(levels.peak_dbfs),
    }
    if levels.digital_silence:
        return CheckResult("audio.clipping", Status.SKIP, f"not measured: {_DIGITAL_SILENCE}", m,
                           "fix the microphone first (see audio.mic_level)")
    return judge("audio.clipping", m)


def _echo_measurements(echo: EchoEstimate, session: AudioSession | None) -> dict[str, Any]:
    m: dict[str, Any] = {
        "detected": echo.detected,
        "delay_ms": _r(echo.delay_ms, 3) if echo.delay_ms is not None else None,
        "erl_db": _r(echo.erl_db) if echo.erl_db is not None else None,
        "erl_min_db": _r(echo.erl_min_db),
        "drift_ppm": _r(echo.drift_ppm, 1) if echo.drift_ppm is not None else None,
        "peak_to_noise_db": _r(echo.peak_to_noise_db, 1),
    }
    if session is not None:
        rec = session.record
        m["output_latency_ms"] = _r(rec.output_latency_ms)
        m["input_latency_ms"] = _r(rec.input_latency_ms)
        # The device chain's round trip: from handing a sample to the output to getting it back.
        if echo.delay_ms is not None:
            m["round_trip_ms"] = _r(echo.delay_ms + rec.output_latency_ms + rec.input_latency_ms)
        m["aligned_by_timestamps"] = rec.aligned_by_timestamps
    return m


def assess_echo(echo: EchoEstimate, session: AudioSession | None = None) -> CheckResult:
    m = _echo_measurements(echo, session)
    if not echo.detected:
        return CheckResult(
            "audio.echo", Status.PASS,
            f"no echo: the microphone does not hear the speaker (echo return loss above {echo.erl_min_db:.0f} dB)", m,
        )
    if echo.erl_db is None:
        return CheckResult(
            "audio.echo", Status.PASS,
            f"faint echo after {echo.delay_ms:.1f} ms, below the noise "
            f"(echo return loss above {echo.erl_min_db:.0f} dB)",
            m,
        )
    return judge("audio.echo", m)


def assess_speaker(
    tone_sent: FloatArray,
    tone_heard: FloatArray,
    quiet: FloatArray,
    samplerate: int,
    heard_by_person: bool | None,
) -> CheckResult:
    """Did the test tone come back through the microphone; else, did the person hear it?"""
    sent = measure_tone(tone_sent, samplerate)
    low, high = sent.frequency_hz - TONE_BAND_HZ, sent.frequency_hz + TONE_BAND_HZ
    heard = measure_tone(tone_heard, samplerate, low, high)
    background = measure_tone(quiet, samplerate, low, high)
    rise = heard.level_dbfs - background.level_dbfs
    m: dict[str, Any] = {
        "tone_hz": _r(sent.frequency_hz, 1),
        "played_dbfs": _r(sent.level_dbfs),
        "heard_hz": _r(heard.frequency_hz, 1),
        "heard_dbfs": _r(heard.level_dbfs),
        "heard_above_background_db": _r(rise, 1),
        "acoustic_loop": rise >= TONE_HEARD_DB,
        "confirmed_by_person": heard_by_person,
    }
    if rise >= TONE_HEARD_DB and abs(heard.frequency_hz - sent.frequency_hz) <= 0.01 * sent.frequency_hz:
        return CheckResult(
            "audio.speaker", Status.PASS,
            f"the speaker plays: the microphone heard the {sent.frequency_hz:.0f} Hz test tone at "
            f"{heard.level_dbfs:.1f} dBFS ({heard.frequency_hz:.1f} Hz)", m,
        )
    if heard_by_person is True:
        return CheckResult("audio.speaker", Status.PASS, "the speaker plays: you heard the test tone", m)
    if heard_by_person is False:
        return CheckResult(
            "audio.speaker", Status.FAIL, "you did not hear the test tone", m,
            "check the volume and mute key, that the headset or speakers are plugged in and switched on, "
            "and that the right output is chosen (--output, or the default output in the sound settings)",
        )
    return CheckResult(
        "audio.speaker", Status.SKIP,
        "not verified: the microphone cannot hear the speaker (as with a headset) and no one was asked", m,
        "run 'phonekit check audio' interactively and confirm the test tone by ear",
    )


def _skip(check_id: str, why: NoMicrophone) -> CheckResult:
    return CheckResult(check_id, Status.SKIP, f"not measured: {why}", remedy="connect a microphone (see audio.devices)")


def _echo(session: AudioSession, ctx: CheckContext) -> EchoEstimate:
    key = "audio.echo_estimate"
    if key not in ctx.cache:
        ctx.cache[key] = estimate_echo(
            session.excitation, session.echo_capture, session.samplerate, session.quiet, max_delay_s=ECHO_MAX_DELAY_S
        )
    estimate = ctx.cache[key]
    assert isinstance(estimate, EchoEstimate)
    return estimate


def _with_session(check_id: str, assess: Callable[[AudioSession, CheckContext], CheckResult]) -> CheckFn:
    """A check on the run's shared audio session; without a microphone it is skipped, naming why."""

    def check(ctx: CheckContext) -> CheckResult:
        try:
            session = audio_session(ctx)
        except NoMicrophone as exc:
            return _skip(check_id, exc)
        return assess(session, ctx)

    return check


def _speaker(s: AudioSession, ctx: CheckContext) -> CheckResult:
    echo = _echo(s, ctx)
    # Look for the tone where the echo path puts it.
    shift = round((echo.delay_ms or 0.0) * s.samplerate / 1000.0)
    start = s.tone_start + shift
    heard = s.record.captured[start : start + len(s.tone_sent)]
    result = assess_speaker(s.tone_sent, heard, s.quiet, s.samplerate, None)
    if result.status is Status.SKIP and ctx.interactive:
        answer = ctx.ask("Did you hear a short beep, then a hiss, from the speaker or headset?")
        result = assess_speaker(s.tone_sent, heard, s.quiet, s.samplerate, answer)
    return result


def _mic_level(s: AudioSession, ctx: CheckContext) -> CheckResult:
    result = assess_mic_level(s.mic, s.samplerate, s.interactive_speech)
    return replace(result, plots={"mic_level": level_plot(s.mic, s.samplerate)})


def _noise(s: AudioSession, ctx: CheckContext) -> CheckResult:
    result = assess_noise(s.quiet, s.samplerate)
    band = (float(result.measurements["band_low_hz"]), float(result.measurements["band_high_hz"]))
    return replace(result, plots={"spectrum": spectrum_plot(s.quiet, s.samplerate, band)})


def _echo_check(s: AudioSession, ctx: CheckContext) -> CheckResult:
    echo = _echo(s, ctx)
    figure = echo_impulse_plot(
        s.excitation, s.echo_capture, s.samplerate, ECHO_MAX_DELAY_S, echo.delay_ms, echo.erl_db
    )
    return replace(assess_echo(echo, s), plots={"echo_impulse_response": figure})


check_mic_level = _with_session("audio.mic_level", _mic_level)
check_noise = _with_session("audio.noise", _noise)
check_clipping = _with_session("audio.clipping", lambda s, ctx: assess_clipping(s.mic, s.samplerate))
check_speaker = _with_session("audio.speaker", _speaker)
check_echo = _with_session("audio.echo", _echo_check)
