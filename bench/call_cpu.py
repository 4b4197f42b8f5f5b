"""CPU per active call: phonekit's process against a baresip process making the same call.

Starts the call test bed (bench/callbed.py: Kamailio on free ports, a baresip
registered as 1002 that auto-answers with a 1 kHz tone and records), then, per
setting and per caller, a fresh caller process limited to the setting's codec:

* G.711 µ-law and G.722 without sound devices:
  - phonekit: :class:`phone.phone.Phone` in a child process of its own
    (``python -m bench.callbed``, registered as 1001, the default engine
    configuration but for the codec), as ``phonekit phone call --play`` runs a
    call (statistics every 0.5 s), its audio through :class:`BufferPort` (plays
    440 Hz at −16 dBFS, records what it hears) at the bridge's 16 kHz clock;
  - baresip, registered as 1003: ``ausine`` 440 Hz (48 kHz stereo, resampled
    to the codec), player ``aubridge`` (nothing pulls it), no recorder;
* G.722 through sound devices, a PulseAudio ``headset`` scene
  (tests/testbed/pulse.py) whose mic plays a steady 440 Hz at −16 dBFS:
  - phonekit as the terminal phone runs: :class:`phone.phone.Phone` (statistics
    every 0.5 s) with ``phone.bridge.DeviceBridge`` (sounddevice → ALSA
    ``pulse``, 48 kHz mono, 5 ms blocks; its streams open for the call only);
  - baresip with its ``alsa`` module on ALSA ``default`` (the same PulseAudio),
    48 kHz mono (it opens the devices for the call only).

Both call ``sip:1002@127.0.0.1:<port>``. CPU time is the process's utime + stime
(every thread, ended ones included), read from its CPU-time clock (what
``/proc/<pid>/stat`` reports in 10 ms ticks, here in ns: bench/callbed.py
``cpu_seconds``) over a window that starts 1 s after the media is up and lasts
``--seconds``, minus the same process's idle rate (registered, no call) over
``--idle`` seconds just before.
The callee's CPU over the same window is a control: it does the same work in
both calls. Audio both ways is checked: the callee must hear the caller's 440 Hz,
and the caller must have received RTP.

Prints ms of CPU per second of call, the ratio phonekit / baresip and the issue
#6 target "CPU per active call ≤ baresip's" per setting. ``--breakdown`` instead
shows where phonekit's G.711 call spends its CPU: the same call again with
per-poll statistics and then also the copy of received frames switched off
(monkey-patched in the child process only, see ``bench.callbed._switch_off``).
Run: ``python -m bench.call_cpu [--seconds 20] [--runs 1] [--no-devices | --breakdown]`` (< 3 min).
"""

from __future__ import annotations

import argparse
import functools
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.callbed import CallBed, baresip_call, call_bed, cpu_seconds
from tests.testbed.baresip import analyse_wav
from tests.testbed.procs import TestbedError

if TYPE_CHECKING:
    from tests.testbed.pulse import PulseScene

CODECS = {"PCMU": "PCMU/8000", "G722": "G722/16000"}
"""baresip's codec name → pjsua2's."""
DEVICE_CODECS = ("G722",)
"""Codecs of the variant through sound devices (one, to keep the bench under three minutes)."""
CALLER_TONE_HZ = 440
WARMUP_S = 1.0


@dataclass(frozen=True)
class Sample:
    idle_ms_per_s: float
    call_ms_per_s: float
    callee_ms_per_s: float

    @property
    def net_ms_per_s(self) -> float:
        """CPU the call adds: rate during the call minus the idle rate."""
        return self.call_ms_per_s - self.idle_ms_per_s


def cpu_rate(pids: Sequence[int], seconds: float) -> list[float]:
    """ms of CPU per second of wall time of each process over the next ``seconds``."""
    before = [cpu_seconds(pid) for pid in pids]
    start = time.monotonic()
    time.sleep(seconds)
    after = [cpu_seconds(pid) for pid in pids]
    wall = time.monotonic() - start
    return [1000.0 * (b - a) / wall for a, b in zip(before, after, strict=True)]


def check_callee_heard(bed: CallBed, since: int) -> None:
    """The callee's recording of the call must carry the caller's tone (audio went caller → callee)."""
    assert bed.callee is not None
    bed.wait_callee_idle(since)
    heard = analyse_wav(bed.callee.received_wav())
    if abs(heard.frequency_hz - CALLER_TONE_HZ) > 5.0:
        raise bed.callee.fail(f"callee heard {heard.frequency_hz:.0f} Hz at {heard.rms_dbfs:.1f} dBFS, "
                              f"not the caller's {CALLER_TONE_HZ} Hz")  # fmt: skip


def measure_phonekit(bed: CallBed, codec: str, seconds: float, idle_s: float, scene: PulseScene | None,
                     without: str = "") -> Sample:  # fmt: skip
    assert bed.callee is not None and bed.callee.process is not None
    mode = "phone-buffer" if scene is None else "phone"
    agent = bed.phonekit(name=f"phonekit-{mode}-{codec}{without and '-without-' + without}",
                         env=scene.env if scene else None, mode=mode, without=without,
                         codecs=[CODECS[codec]], only_listed_codecs=True)  # fmt: skip
    try:
        agent.send("idle", seconds=idle_s + 1.0)
        agent.expect("idling", 5.0)
        time.sleep(0.5)
        (idle,) = cpu_rate([agent.pid], idle_s)
        agent.expect("idled", 5.0)
        mark = bed.callee.mark()
        agent.send("call", uri=bed.uri(), seconds=seconds + WARMUP_S + 0.5, tone_hz=CALLER_TONE_HZ, dbfs=-16.0)
        media = agent.expect("media", 10.0)
        if media["codec"] != CODECS[codec]:
            raise agent.fail(f"call runs {media['codec']}, not {CODECS[codec]}")
        time.sleep(WARMUP_S)
        call, callee = cpu_rate([agent.pid, bed.callee.process.pid], seconds)
        done = agent.expect("called", seconds + 15.0)
        received = done["stats"]["rx_packets"] if done["stats"] else 0
        if done["code"] != 200 or (received < 25 * seconds and not without):  # without stats: frozen figures
            raise agent.fail(f"call did not carry audio both ways: {done}")
        check_callee_heard(bed, mark)
    finally:
        bed.release(agent)
    return Sample(idle, call, callee)


def measure_baresip(bed: CallBed, codec: str, seconds: float, idle_s: float, scene: PulseScene | None) -> Sample:
    assert bed.callee is not None and bed.callee.process is not None
    caller = bed.baresip_caller(codecs=[codec], name=f"baresip-{'devices' if scene else 'ausine'}-{codec}",
                                devices_env=scene.env if scene else None)  # fmt: skip
    assert caller.process is not None
    try:
        time.sleep(0.5)
        (idle,) = cpu_rate([caller.process.pid], idle_s)
        mark, caller_mark = bed.callee.mark(), caller.mark()
        baresip_call(caller, bed.uri())
        caller.wait_event("CALL_RTPESTAB", 5.0, since=caller_mark)  # RTP arrived from the callee
        time.sleep(WARMUP_S)
        call, callee = cpu_rate([caller.process.pid, bed.callee.process.pid], seconds)
        caller.hangup()
        caller.wait_event("CALL_CLOSED", 10.0, since=caller_mark)
        check_callee_heard(bed, mark)
    finally:
        bed.release(caller)
    return Sample(idle, call, callee)


Measure = Callable[[CallBed, str, float, float, "PulseScene | None"], Sample]


@dataclass(frozen=True)
class Caller:
    tool: str
    """``phonekit`` or ``baresip``: the two sides of the ratio."""
    label: str
    measure: Measure


@dataclass(frozen=True)
class Setting:
    """One comparison: a codec, whether audio goes through sound devices (a PulseAudio scene), who calls."""

    codec: str
    devices: bool
    callers: tuple[Caller, ...]

    @property
    def label(self) -> str:
        return f"{self.codec}{', devices' if self.devices else ''}"


PHONEKIT = Caller("phonekit", "phonekit Phone, BufferPort", measure_phonekit)
BARESIP = Caller("baresip", "baresip, ausine", measure_baresip)
DEVICE_CALLERS = (Caller("phonekit", "phonekit Phone + DeviceBridge", measure_phonekit),
                  Caller("baresip", "baresip, alsa module", measure_baresip))  # fmt: skip
BREAKDOWN = (
    PHONEKIT,
    Caller("", "  stats read once, not per poll", functools.partial(measure_phonekit, without="stats")),
    Caller("", "  … and no copy of received frames", functools.partial(measure_phonekit, without="stats+copy")),
    BARESIP,
)
"""``--breakdown``: phonekit's G.711 call with its two largest Python costs switched off one after the other."""


def _device_scene(workdir: Path) -> tuple[PulseScene | None, str]:
    """A headset scene whose mic plays a steady 440 Hz at −16 dBFS, if phone.bridge and PulseAudio work here."""
    try:
        import phone.bridge  # noqa: F401 - only whether it exists
    except ImportError as exc:
        return None, f"phone.bridge cannot be imported ({exc})"
    from tests.testbed.pulse import start_scene

    try:
        scene = start_scene("headset", workdir, tone_hz=float(CALLER_TONE_HZ), level_dbfs=-16.0, on_s=None)
    except TestbedError as exc:
        return None, f"no PulseAudio scene: {str(exc).splitlines()[0]}"
    return scene, ""


def _table(settings: Sequence[Setting], results: dict[tuple[Setting, str], list[Sample]]) -> list[str]:
    """Print one row per caller and a ratio per setting; return the verdicts."""
    print(f"{'setting':<15}{'caller':<36}{'idle':>7}{'in call':>9}{'call − idle':>13}{'callee (control)':>18}")
    verdicts = []
    for setting in settings:
        net: dict[str, float] = {}
        for caller in setting.callers:
            samples = results[(setting, caller.label)]
            med = {key: statistics.median(getattr(s, key) for s in samples)
                   for key in ("idle_ms_per_s", "call_ms_per_s", "net_ms_per_s", "callee_ms_per_s")}  # fmt: skip
            net.setdefault(caller.tool, med["net_ms_per_s"])
            print(f"{setting.label:<15}{caller.label:<36}{med['idle_ms_per_s']:7.1f}"
                  f"{med['call_ms_per_s']:9.1f}{med['net_ms_per_s']:13.1f}{med['callee_ms_per_s']:18.1f}")
        ratio = net["phonekit"] / net["baresip"] if net["baresip"] > 0 else float("inf")
        verdicts.append(f"{setting.label} {ratio:.2f} {'PASS' if net['phonekit'] <= net['baresip'] else 'MISS'}")
        print(f"{'':<15}ratio phonekit / baresip (call − idle): {ratio:.2f}")
    return verdicts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="CPU window per call (default 20 s)")
    parser.add_argument("--idle", type=float, default=2.0, help="idle window before each call (default 2 s)")
    parser.add_argument("--runs", type=int, default=1, help="calls per caller and setting (default 1)")
    parser.add_argument("--no-devices", action="store_true", help="skip the variant through sound devices")
    parser.add_argument("--breakdown", action="store_true",
                        help="instead: where phonekit's G.711 CPU goes (two of its costs switched off in turn)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    if args.breakdown:
        settings = [Setting("PCMU", False, BREAKDOWN)]
    else:
        settings = [Setting(codec, False, (PHONEKIT, BARESIP)) for codec in CODECS]
    results: dict[tuple[Setting, str], list[Sample]] = {}
    skipped = "--no-devices" if args.no_devices else ""
    with call_bed("call-cpu-") as bed:
        scene: PulseScene | None = None
        if not (args.no_devices or args.breakdown):
            scene, skipped = _device_scene(bed.workdir / "scene")
            if scene is not None:
                settings += [Setting(codec, True, DEVICE_CALLERS) for codec in DEVICE_CODECS]
        try:
            for index, setting in enumerate(settings):
                for run in range(args.runs):
                    order = setting.callers if (index + run) % 2 == 0 else setting.callers[::-1]
                    for caller in order:
                        devices = scene if setting.devices else None
                        sample = caller.measure(bed, setting.codec, args.seconds, args.idle, devices)
                        results.setdefault((setting, caller.label), []).append(sample)
        finally:
            if scene is not None:
                scene.stop()

    print(f"CPU of the caller's process (utime + stime, all threads) in ms per second of wall time; "
          f"{args.runs} call(s) of {args.seconds:g} s per caller and setting; idle = the same process "
          f"registered, no call, {args.idle:g} s just before")  # fmt: skip
    verdicts = _table(settings, results)
    if skipped:
        print(f"device variant not measured: {skipped}")
    print(f"target: CPU per active call (call − idle) ≤ baresip's: {'; '.join(verdicts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
