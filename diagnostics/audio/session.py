"""One audio measurement session per run, shared by the microphone, speaker and echo checks.

Timeline (the capture is aligned to the playback, see ``probe.play_and_record``)::

    | quiet: mic only (MIC_S) | test tone (TONE_S) | excitation (EXCITATION_S) | tail (TAIL_S) |

The quiet part gives the microphone's level, noise floor and clipping, and the
noise reference for the echo return loss. In interactive mode the person is
first asked to speak (a separate recording), then to stay quiet.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from diagnostics.audio.dsp import FloatArray
from diagnostics.audio.echo import make_excitation
from diagnostics.audio.probe import PlayRecord, play_and_record, resolve_device
from diagnostics.audio.synth import tone
from diagnostics.audio.system import system_devices
from diagnostics.checks import CheckContext
from diagnostics.errors import MeasurementError

__all__ = ["AudioSession", "NoMicrophone", "audio_session"]

log = logging.getLogger(__name__)

SAMPLERATE = 48000
MIC_S = 2.0
SPEAK_S = 4.0
TONE_HZ = 1000.0
TONE_DBFS = -12.0
TONE_S = 0.5
EXCITATION_S = 1.5
EXCITATION_DBFS = -15.0
TAIL_S = 0.6
"""Longest echo delay looked for (and then some)."""

_CACHE_KEY = "audio.session"


class NoMicrophone(Exception):
    """There is no capture device to measure with: the audio checks that need one are skipped."""


@dataclass(frozen=True)
class AudioSession:
    samplerate: int
    mic: FloatArray
    """What the microphone delivered: speech in interactive mode, else the quiet part."""
    interactive_speech: bool
    """``mic`` holds a person's speech, asked for."""
    quiet: FloatArray
    """Capture while nothing played and nobody was asked to speak: the noise reference."""
    tone_sent: FloatArray
    tone_start: int
    """Index of the test tone's first sample in ``record.played`` (and the aligned capture)."""
    excitation: FloatArray
    excitation_start: int
    record: PlayRecord

    @property
    def echo_capture(self) -> FloatArray:
        """Capture from the start of the excitation to the end of the tail."""
        return self.record.captured[self.excitation_start :]


def _save_wavs(folder: Path, session: AudioSession) -> None:
    """Raw recordings for a ticket; each file written atomically (temp file, fsync, rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (
        ("mic.wav", session.mic),
        ("played.wav", session.record.played),
        ("captured.wav", session.record.captured),
    ):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                wavfile.write(fh, session.samplerate, np.asarray(data, dtype=np.float32))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, folder / name)
        except BaseException:
            os.unlink(tmp)
            raise


def _check_there_is_a_microphone() -> None:
    system = system_devices()
    if system and not any(d.direction == "input" and not d.is_monitor for d in system):
        raise NoMicrophone("the sound server has no microphone, only monitors of its outputs")


def _measure(ctx: CheckContext, say: Callable[[str], None]) -> AudioSession:
    _check_there_is_a_microphone()
    rate = SAMPLERATE
    mic_in = resolve_device(ctx.input_device, "input")
    speaker = resolve_device(ctx.output_device, "output")
    speech: FloatArray | None = None
    if ctx.interactive:
        say(f"Microphone: please speak normally for {SPEAK_S:.0f} seconds, starting now …")
        speech = play_and_record(np.zeros(0), rate, mic_in, None, SPEAK_S).captured
        say("Thank you. Now please stay quiet: phonekit plays a tone and a hiss on the speaker …")
    quiet_s = 1.0 if ctx.interactive else MIC_S
    test_tone = tone(rate, TONE_S, TONE_HZ, TONE_DBFS)
    excitation = make_excitation(rate, EXCITATION_S, EXCITATION_DBFS)
    lead = int(quiet_s * rate)
    play = np.concatenate([np.zeros(lead), test_tone, excitation])
    rec = play_and_record(play, rate, mic_in, speaker, TAIL_S)
    tone_start, exc_start = lead, lead + len(test_tone)
    session = AudioSession(
        samplerate=rate,
        mic=speech if speech is not None else rec.captured[:lead],
        interactive_speech=speech is not None,
        quiet=rec.captured[:lead],
        tone_sent=test_tone,
        tone_start=tone_start,
        excitation=excitation,
        excitation_start=exc_start,
        record=rec,
    )
    if ctx.save_wav is not None:
        _save_wavs(ctx.save_wav, session)
    log.debug(
        "audio session: aligned by %s, output latency %.1f ms, input latency %.1f ms",
        "timestamps" if rec.aligned_by_timestamps else "stream start",
        rec.output_latency_ms,
        rec.input_latency_ms,
    )
    return session


def audio_session(ctx: CheckContext) -> AudioSession:
    """The run's session, measured on first use; a missing microphone is remembered too."""
    cached = ctx.cache.get(_CACHE_KEY)
    if cached is None:
        try:
            cached = _measure(ctx, ctx.say)
        except (NoMicrophone, MeasurementError) as exc:
            cached = exc  # one failed attempt per run, not one per check
        ctx.cache[_CACHE_KEY] = cached
    if isinstance(cached, (NoMicrophone, MeasurementError)):
        raise cached
    assert isinstance(cached, AudioSession)
    return cached
