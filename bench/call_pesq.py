"""Speech quality through a real call, ITU-T P.862 PESQ, against the codec's own ceiling.

Speech: three English sentences from espeak-ng with pauses (~8 s), assembled at
espeak's rate, resampled by sox (``rate -h``, no dither) to 8, 16 and 48 kHz and
set to an active speech level of −26 dBov (ITU-T P.56, ``diagnostics.audio.p56``).
PESQ is P.862 narrowband (``nb``, 8 kHz) for G.711 and P.862.2 wideband (``wb``,
16 kHz) for G.722, from the PyPI ``pesq`` package. Per codec, three stages:

* **ceiling**: the codec alone, no call: G.711 µ-law through Python's ``audioop``
  (the ITU-T G.711 segment tables), G.722 64 kbit/s through spandsp's
  ``g722_encode``/``g722_decode`` (Debian ``libspandsp2``, the G.722 that
  baresip's g722 module uses) loaded with ctypes;
* **phonekit**: :class:`phone.engine.Engine` in a child process (bench/callbed.py)
  calls the baresip peer 1002 through Kamailio on loopback, codec forced
  (``only_listed_codecs``), :class:`BufferPort` playing the 16 kHz speech at the
  conference bridge's 16 kHz clock (for G.711 the bridge resamples to 8 kHz);
  default engine settings otherwise (VAD off, phonekit's default), and once more
  with VAD on (pjsua2's own default) to show what it costs;
* **baresip**: a baresip caller (1003) plays the 48 kHz speech with ``aufile``
  (its resampler takes it to the codec's rate) to the same peer, the same way.

The peer's ``sndfile`` recording of what it received is at the codec's rate,
between decoder and resampler: exactly what it decoded. Each degraded signal is
aligned to the reference by cross-correlation and cut to its length before PESQ.
With VAD on nothing is sent in pauses and that recorder writes only what
arrived, so for that row each sentence is put back in place instead (:func:`retimed`).

The ceilings are low in absolute terms (about 4.0 nb, 3.1 wb) because espeak's
pauses and word gaps are digital zero: P.862 then weighs every bit of codec noise
in and around them. A −60 dBov noise floor under the same speech lifted them to
about 4.4 and 4.1 in a trial; the differences to the ceiling are what this bench is for.
Prints PESQ per stage and run, the difference to the ceiling and the issue #6
target "within 0.1 of the codec's ceiling" for phonekit's median.
Run: ``python -m bench.call_pesq [--runs 2]``.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import logging
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pesq import pesq
from scipy import signal as sps

from bench.callbed import CallBed, call_bed
from diagnostics.audio.p56 import active_speech_level
from tests.testbed.baresip import read_wav

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # audioop leaves in 3.13; here it is the reference
    import audioop

Int16 = npt.NDArray[np.int16]

SENTENCES = (  # Harvard sentences (IEEE 1969), list 1
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
)
VOICE, SPEED_WPM = "en-us", 160
LEAD_S, PAUSE_S, TRAIL_S = 0.5, 0.7, 0.5
LEVEL_DBOV = -26.0
"""Active speech level of the test signal (P.56), the usual level for P.862 tests."""
TARGET_DELTA = 0.1


@dataclass(frozen=True)
class Codec:
    name: str
    """baresip's name (``PCMU``, ``G722``)."""
    pjsua2: str
    rate_hz: int
    mode: str
    """PESQ mode: ``nb`` (P.862) or ``wb`` (P.862.2)."""
    alone: Callable[[Int16], Int16]
    """Encode and decode with a reference implementation of the codec, no call."""


# ----------------------------------------------------------------------------- speech


@dataclass(frozen=True)
class Speech:
    clips: dict[int, Int16]
    """The test speech at 8, 16 and 48 kHz, int16, active level −26 dBov at each rate."""
    sentences_s: tuple[tuple[float, float], ...]
    """Start and end of each sentence (espeak's own silence included), in seconds."""


def speech(tmp: Path) -> Speech:
    parts: list[npt.NDArray[np.float64]] = []
    spans = []
    native, at = 0, 0
    for i, text in enumerate(SENTENCES):
        wav = tmp / f"sentence{i}.wav"
        subprocess.run(["espeak-ng", "-v", VOICE, "-s", str(SPEED_WPM), "-w", str(wav), text], check=True)
        samples, native = read_wav(wav)
        gap = np.zeros(round((LEAD_S if i == 0 else PAUSE_S) * native))
        parts += [gap, samples]
        at += len(gap)
        spans.append((at / native, (at + len(samples)) / native))
        at += len(samples)
    parts.append(np.zeros(round(TRAIL_S * native)))
    assembled = tmp / "speech.f32"
    (0.5 * np.concatenate(parts)).astype("<f4").tofile(assembled)  # headroom for the resampler; levelled below
    clips = {}
    for rate in (8000, 16000, 48000):
        resampled = tmp / f"speech{rate}.f32"
        subprocess.run(["sox", "-R", "-D", "-t", "raw", "-e", "floating-point", "-b", "32", "-L", "-r", str(native),
                        "-c", "1", str(assembled), "-t", "raw", "-e", "floating-point", "-b", "32", "-L",
                        str(resampled), "rate", "-h", str(rate)], check=True)  # fmt: skip
        x = np.fromfile(resampled, dtype="<f4").astype(np.float64)
        x *= 10.0 ** ((LEVEL_DBOV - active_speech_level(x, rate).level_dbfs) / 20.0)
        clips[rate] = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")
    return Speech(clips, tuple(spans))


def write_wav(path: Path, samples: Int16, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


# ----------------------------------------------------------------------------- codecs alone


def g711_ulaw(x: Int16) -> Int16:
    """G.711 µ-law encode and decode (audioop: the ITU-T G.711 segment tables, 14-bit input)."""
    return np.frombuffer(audioop.ulaw2lin(audioop.lin2ulaw(x.astype("<i2").tobytes(), 2), 2), dtype="<i2").copy()


def _spandsp() -> ctypes.CDLL:
    name = ctypes.util.find_library("spandsp")
    if name is None:
        raise RuntimeError("libspandsp not found: install Debian's libspandsp2 (baresip's g722 module needs it too)")
    lib = ctypes.CDLL(name)
    for role in ("encode", "decode"):
        init = getattr(lib, f"g722_{role}_init")
        init.restype, init.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        run = getattr(lib, f"g722_{role}")
        run.restype, run.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        getattr(lib, f"g722_{role}_free").argtypes = [ctypes.c_void_p]
    return lib


def g722(x: Int16) -> Int16:
    """G.722 at 64 kbit/s, encode and decode with spandsp (options 0: 16 kHz PCM, unpacked octets)."""
    lib = _spandsp()
    pcm = np.ascontiguousarray(x, dtype="<i2")
    octets = np.zeros(len(pcm) // 2 + 1, dtype=np.uint8)
    decoded = np.zeros(2 * len(octets), dtype="<i2")
    encoder = lib.g722_encode_init(None, 64000, 0)
    decoder = lib.g722_decode_init(None, 64000, 0)
    try:
        n = lib.g722_encode(encoder, octets.ctypes.data, pcm.ctypes.data, len(pcm))
        m = lib.g722_decode(decoder, decoded.ctypes.data, octets.ctypes.data, n)
    finally:
        lib.g722_encode_free(encoder)
        lib.g722_decode_free(decoder)
    return decoded[:m].copy()


CODECS = (
    Codec("PCMU", "PCMU/8000", 8000, "nb", g711_ulaw),
    Codec("G722", "G722/16000", 16000, "wb", g722),
)


# ----------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Score:
    pesq: float
    """MOS-LQO (P.862.1 mapping for ``nb``, P.862.2 for ``wb``)."""
    delay_ms: float
    """Where the reference starts in the degraded signal (cross-correlation peak; the first sentence's if re-timed)."""


def _lag(reference: npt.NDArray[np.float64], degraded: npt.NDArray[np.float64]) -> int:
    """Samples by which ``degraded`` lags ``reference`` (peak of their cross-correlation)."""
    correlation = sps.correlate(degraded, reference, mode="full", method="fft")
    return int(np.argmax(correlation)) - (len(reference) - 1)


def _shifted(signal: Int16, lag: int, length: int) -> Int16:
    """``signal[lag : lag + length]``, zero-padded where that runs outside it."""
    out = np.zeros(length, dtype="<i2")
    source = signal[max(0, lag) : max(0, lag) + length]
    start = max(0, -lag)
    out[start : start + len(source)] = source[: length - start]
    return out


def aligned(reference: Int16, degraded: Int16) -> tuple[Int16, int]:
    """``degraded`` moved to line up with ``reference`` as a whole, cut or padded to its length."""
    lag = _lag(reference.astype(np.float64), degraded.astype(np.float64))
    return _shifted(degraded, lag, len(reference)), lag


def retimed(reference: Int16, degraded: Int16, spans: Sequence[tuple[int, int]]) -> tuple[Int16, int]:
    """Each sentence of ``degraded`` moved to its place in ``reference``, digital silence between them.

    For a sender with VAD: it sends nothing in pauses, and baresip's recorder writes
    only what it decoded, so the recording is shorter than what was said and one
    shift cannot align it. A receiver plays silence (or comfort noise) in those gaps;
    this rebuilds that, sentence by sentence (each found by cross-correlation).
    """
    out = np.zeros(len(reference), dtype="<i2")
    first_lag = 0
    for index, (start, end) in enumerate(spans):
        lag = _lag(reference[start:end].astype(np.float64), degraded.astype(np.float64))
        out[start:end] = _shifted(degraded, lag, end - start)
        first_lag = lag - start if index == 0 else first_lag
    return out, first_lag


def score(reference: Int16, degraded: Int16, rate: int, mode: str,
          spans: Sequence[tuple[int, int]] | None = None) -> Score:  # fmt: skip
    """PESQ of ``degraded`` against ``reference`` after aligning it (as a whole, or per sentence with ``spans``)."""
    if len(degraded) < len(reference) // 2:
        raise RuntimeError(f"degraded signal too short: {len(degraded)} samples, reference {len(reference)}")
    lined_up, lag = aligned(reference, degraded) if spans is None else retimed(reference, degraded, spans)
    return Score(float(pesq(rate, reference, lined_up, mode)), 1000.0 * lag / rate)


# ----------------------------------------------------------------------------- calls


def phonekit_call(bed: CallBed, codec: Codec, clip: Path, seconds: float, vad: bool) -> Int16:
    """phonekit (child process) calls the peer playing ``clip`` (16 kHz .npy); returns what the peer decoded."""
    assert bed.callee is not None
    agent = bed.phonekit(name=f"phonekit-{codec.name}-vad-{'on' if vad else 'off'}", codecs=[codec.pjsua2],
                         only_listed_codecs=True, vad=vad)  # fmt: skip
    try:
        mark = bed.callee.mark()
        agent.send("call", uri=bed.uri(), seconds=seconds, npy=str(clip))
        media = agent.expect("media", 10.0)
        if media["codec"] != codec.pjsua2:
            raise agent.fail(f"call runs {media['codec']}, not {codec.pjsua2}")
        done = agent.expect("called", seconds + 15.0)
        if done["code"] != 200:
            raise agent.fail(f"call failed: {done}")
        bed.wait_callee_idle(mark)
    finally:
        bed.release(agent)
    return _peer_received(bed, codec)


def baresip_call(bed: CallBed, codec: Codec, clip48: Path, seconds: float) -> Int16:
    """A baresip caller plays ``clip48`` (48 kHz WAV, aufile) to the peer and hangs up at its end."""
    assert bed.callee is not None
    caller = bed.baresip_caller(codecs=[codec.name], name=f"baresip-{codec.name}", audio_source=f"aufile,{clip48}")
    try:
        mark, caller_mark = bed.callee.mark(), caller.mark()
        caller.dial(bed.uri())
        caller.wait_event("CALL_ESTABLISHED", 10.0, since=caller_mark)
        caller.wait_event("CALL_CLOSED", seconds + 15.0, since=caller_mark)  # aufile ends the call at the file's end
        bed.wait_callee_idle(mark)
    finally:
        bed.release(caller)
    return _peer_received(bed, codec)


def _peer_received(bed: CallBed, codec: Codec) -> Int16:
    assert bed.callee is not None
    samples, rate = read_wav(bed.callee.received_wav())
    if rate != codec.rate_hz:
        raise RuntimeError(f"the peer recorded at {rate} Hz, expected {codec.rate_hz} Hz for {codec.name}")
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")


@dataclass(frozen=True)
class Stage:
    key: str
    label: str
    retime: bool = False
    """Align sentence by sentence (see :func:`retimed`) rather than as a whole."""


STAGES = (
    Stage("ceiling", "codec alone, {}"),
    Stage("phonekit", "phonekit Engine, default (VAD off)"),
    Stage("phonekit-vad", "phonekit Engine, VAD on *", retime=True),
    Stage("baresip", "baresip (aufile)"),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="calls per caller and codec (default 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    scores: dict[tuple[str, str], list[Score]] = {}
    with tempfile.TemporaryDirectory(prefix="call-pesq-") as folder:
        tmp = Path(folder)
        test = speech(tmp)
        clips = test.clips
        np.save(tmp / "speech16k.npy", clips[16000])
        write_wav(tmp / "speech48k.wav", clips[48000], 48000)
        seconds = len(clips[16000]) / 16000 + 1.0
        for codec in CODECS:
            scores[(codec.name, "ceiling")] = [score(clips[codec.rate_hz], codec.alone(clips[codec.rate_hz]),
                                                     codec.rate_hz, codec.mode)]  # fmt: skip
        start = time.monotonic()
        with call_bed("call-pesq-bed-") as bed:
            for codec in CODECS:
                reference, rate = clips[codec.rate_hz], codec.rate_hz
                spans = [(round(a * rate), round(b * rate)) for a, b in test.sentences_s]
                for _ in range(args.runs):
                    heard = {
                        "phonekit": phonekit_call(bed, codec, tmp / "speech16k.npy", seconds, vad=False),
                        "phonekit-vad": phonekit_call(bed, codec, tmp / "speech16k.npy", seconds, vad=True),
                        "baresip": baresip_call(bed, codec, tmp / "speech48k.wav", seconds),
                    }
                    for stage in STAGES[1:]:
                        result = score(reference, heard[stage.key], rate, codec.mode, spans if stage.retime else None)
                        scores.setdefault((codec.name, stage.key), []).append(result)
        took = time.monotonic() - start

    print(f"speech: {len(SENTENCES)} Harvard sentences, espeak-ng {VOICE} {SPEED_WPM} wpm, {seconds - 1.0:.1f} s, "
          f"active level {LEVEL_DBOV:g} dBov; {args.runs} call(s) per caller and codec ({took:.0f} s of calls)")
    print("PESQ: P.862 + P.862.1 (nb) at 8 kHz for PCMU, P.862.2 (wb) at 16 kHz for G.722; the peer is baresip 1002 "
          "via Kamailio")
    print(f"{'codec':<9}{'stage':<38}{'PESQ':>6}{'Δ ceiling':>11}{'delay ms':>10}   runs")
    verdicts = []
    for codec in CODECS:
        ceiling = scores[(codec.name, "ceiling")][0].pesq
        implementation = "audioop G.711" if codec.name == "PCMU" else "spandsp G.722"
        for stage in STAGES:
            runs = scores[(codec.name, stage.key)]
            value = statistics.median(s.pesq for s in runs)
            delay = statistics.median(s.delay_ms for s in runs)
            print(f"{codec.name + ' ' + codec.mode:<9}{stage.label.format(implementation):<38}{value:6.2f}"
                  f"{value - ceiling:+11.2f}{delay:10.1f}   {', '.join(f'{s.pesq:.2f}' for s in runs)}")
        for key, what in (("phonekit", "default, VAD off"), ("phonekit-vad", "with VAD on")):
            delta = statistics.median(s.pesq for s in scores[(codec.name, key)]) - ceiling
            verdicts.append(f"{codec.name} {what} {delta:+.2f} {'PASS' if -delta <= TARGET_DELTA else 'MISS'}")
    print("* VAD on: nothing is sent in pauses and baresip's recorder writes only what it decoded, so each sentence "
          "is put back in place (silence between them) before PESQ.")
    print(f"target: phonekit's PESQ within {TARGET_DELTA} of the codec's ceiling: {'; '.join(verdicts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
