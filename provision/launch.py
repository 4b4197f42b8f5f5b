"""``phonekit launch``: check everything, prove the audio path with a call, and only then start the phone.

The gate, in order:

1. **Checks.** The audio checks (on the devices the phone will use) run in
   one thread while the network and SIP checks run in another; ``network.media``
   is left out because step 2 measures the same path. Any ``fail`` (or ``error``:
   a check that could not measure proves nothing) stops here: the report is
   printed, the phone is not started, exit 1.
2. **Verification call** (``launch.verify``) to the profile's echo extension,
   placed as soon as the network and SIP checks passed (it uses no sound device,
   so it overlaps the audio checks; it is reported only if every check passed): a
   known speech-like signal (:func:`diagnostics.network.media.probe_signal`) is
   sent and must come back: detected by cross-correlation, with a plausible
   round trip and level, and RTP flowing both ways. Its figures go into the report.
3. **The phone** (``phonekit phone``) on the same devices, with the same profile.

Without ``--profile``, the gate runs against an embedded echo service
(``phonekit echo-server`` as a child process on 127.0.0.1, stopped by its PID
when launch ends): audio and network checks, then the verification call to it.
Checks that need an account say so (``skip``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diagnostics.checks import CheckContext, CheckSpec, all_checks, run_checks
from diagnostics.errors import MeasurementError, UsageError
from diagnostics.report import CheckResult, Report, Status

__all__ = ["VERIFY_ID", "EmbeddedEcho", "Verification", "assess_verification", "register", "run_gate", "verify_call"]

log = logging.getLogger(__name__)

VERIFY_ID = "launch.verify"
VERIFY_RATE_HZ = 16000
VERIFY_SECONDS = 2.0
"""Long enough for ~6 talk spurts and the echo's return, short enough for the 10 s gate."""
VERIFY_LEVEL_DBFS = -20.0
SKIPPED_BY_LAUNCH = frozenset({"network.media"})
"""Measured by the verification call instead (same path, same echo extension)."""
BLOCKING = (Status.FAIL, Status.ERROR)

# Limits of the verification call: (measurement, lowest, highest, what it means when outside, remedy).
VERIFY_LIMITS: tuple[tuple[str, float, float, str, str], ...] = (
    ("round_trip_ms", 0.0, 600.0, "the echo came back {value:.0f} ms later (more than 600 ms)",
     "a long round trip makes conversation hard: check the network path (VPN, Wi-Fi) with 'phonekit check network'"),
    ("level_change_db", -9.0, 3.0, "the echo came back {value:+.1f} dB off the level sent",
     "something on the path changes the audio level (a transcoding gateway or a misconfigured echo extension)"),
)  # fmt: skip


@dataclass(frozen=True)
class Verification:
    target: str
    answered: bool
    code: int
    reason: str
    setup_ms: float = 0.0
    detected: bool = False
    correlation: float = 0.0
    round_trip_ms: float | None = None
    level_change_db: float | None = None
    codec: str = ""
    rx_packets: int = 0
    tx_packets: int = 0
    rx_loss_percent: float | None = None
    mos: float | None = None


def _level_change_db(sent: np.ndarray, received: np.ndarray, lag: int) -> float | None:
    """Level of the echo relative to what was sent, over the part both cover (RMS ratio, dB)."""
    n = min(len(sent), len(received) - lag)
    if n <= VERIFY_RATE_HZ // 4:
        return None
    ref = sent[:n]
    back = received[lag : lag + n].astype(np.float64) / 32768.0
    ref_rms, back_rms = math.sqrt(float(np.mean(ref**2))), math.sqrt(float(np.mean(back**2)))
    if ref_rms == 0 or back_rms == 0:
        return None
    return 20.0 * math.log10(back_rms / ref_rms)


def verify_call(profile: Any, echo_uri: str | None) -> Verification:
    """Call the echo (the profile's extension, or ``echo_uri``), send the probe signal, measure what returns."""
    from diagnostics.network.media import measure_round_trip, probe_signal
    from phone.cli import build_phone
    from phone.engine import EngineConfig
    from phone.phone import engine_config_for, local_address_for
    from phone.quality import quality_of

    signal = probe_signal(VERIFY_RATE_HZ, VERIFY_SECONDS + 1.0, VERIFY_LEVEL_DBFS)
    if profile is None:
        assert echo_uri is not None
        target = echo_uri
        engine = EngineConfig(bound_address="127.0.0.1", vad=False)
    else:
        target = f"sip:{profile.echo_extension}@{profile.domain}"
        engine = engine_config_for(profile, bound_address=local_address_for(profile), vad=False)
    phone = build_phone(profile, play=signal, record_s=VERIFY_SECONDS + 0.5, engine=engine)
    with phone:
        if phone.registration is not None and not phone.registration.ok:
            reg = phone.registration
            return Verification(target, False, reg.code, f"registration failed: {reg.reason}")
        phone.dial(target)
        assert phone.active is not None
        call = phone.active.call
        if not phone.wait_answered(10.0):
            return Verification(target, False, call.last_code or 408, call.last_reason or "no answer")
        setup_ms = (call.confirmed_at - phone.active.placed_at) * 1000.0 if call.confirmed_at else 0.0
        phone.wait(lambda: call.disconnected, VERIFY_SECONDS)
        stats = call.sample_stats()
        received = phone.recorded()
        if not call.disconnected:
            phone.hangup()
            phone.wait(lambda: phone.active is None, 2.0)
    assert received is not None
    trip = measure_round_trip(signal[: len(received)], received, VERIFY_RATE_HZ)
    lag = round(trip.delay_ms * VERIFY_RATE_HZ / 1000.0) if trip.delay_ms is not None else 0
    quality = quality_of(stats) if stats is not None else None
    return Verification(
        target=target,
        answered=True,
        code=200,
        reason="OK",
        setup_ms=setup_ms,
        detected=trip.detected,
        correlation=trip.correlation,
        round_trip_ms=trip.delay_ms,
        level_change_db=_level_change_db(signal, received, lag) if trip.detected else None,
        codec=stats.codec if stats else "",
        rx_packets=stats.rx_packets if stats else 0,
        tx_packets=stats.tx_packets if stats else 0,
        rx_loss_percent=stats.rx_loss_percent if stats else None,
        mos=quality.mos if quality else None,
    )


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def assess_verification(v: Verification) -> CheckResult:
    """The verification call as a check result: pass only when the echo came back as sent."""
    measurements: dict[str, Any] = {
        "target": v.target,
        "answered": v.answered,
        "sip_code": v.code,
        "setup_ms": _round(v.setup_ms, 1),
        "echo_detected": v.detected,
        "correlation": _round(v.correlation, 3),
        "round_trip_ms": _round(v.round_trip_ms, 1),
        "level_change_db": _round(v.level_change_db),
        "codec": v.codec,
        "rx_packets": v.rx_packets,
        "tx_packets": v.tx_packets,
        "rx_loss_percent": _round(v.rx_loss_percent),
        "mos": _round(v.mos),
    }
    if not v.answered:
        return CheckResult(VERIFY_ID, Status.FAIL, f"the echo test call to {v.target} failed: {v.code} {v.reason}",
                           measurements, remedy="run 'phonekit check sip' and 'phonekit check network' with the "
                           "same profile; check that checks.echo_extension answers")  # fmt: skip
    if v.rx_packets == 0:
        return CheckResult(VERIFY_ID, Status.FAIL, "the echo call was answered but no audio (RTP) came back",
                           measurements, remedy="a firewall or NAT drops incoming RTP: run "
                           "'phonekit check network' for the NAT type and the RTP ports")  # fmt: skip
    if not v.detected:
        return CheckResult(VERIFY_ID, Status.FAIL, f"audio came back but not the signal sent (correlation "
                           f"{v.correlation:.2f}): the far end does not hear us", measurements,
                           remedy="outgoing RTP is lost or the echo extension does not return audio; check the "
                           "firewall for outgoing UDP and the profile's echo extension")  # fmt: skip
    for name, low, high, what, remedy in VERIFY_LIMITS:
        value = getattr(v, name)
        if value is not None and not low <= value <= high:
            return CheckResult(VERIFY_ID, Status.FAIL, what.format(value=value), measurements, remedy=remedy)
    level = f"{v.level_change_db:+.1f} dB" if v.level_change_db is not None else "level unknown"
    mos = f"{v.mos:.2f}" if v.mos is not None else "-"
    return CheckResult(VERIFY_ID, Status.PASS, f"echo test call: the signal came back after {v.round_trip_ms:.0f} ms "
                       f"({level}, {v.codec}, MOS {mos})", measurements)  # fmt: skip


# --------------------------------------------------------------------------- the embedded echo service


class EmbeddedEcho:
    """``phonekit echo-server`` on 127.0.0.1 (a free port) as a child process, stopped by its PID."""

    READY_TIMEOUT_S = 15.0

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.uri = ""
        self._lines: queue.Queue[str] = queue.Queue()

    def start(self) -> EmbeddedEcho:
        """Spawn the service; :meth:`wait_ready` gives its URI once it listens (start-up overlaps the checks)."""
        argv = [sys.executable, "-m", "provision.cli", "echo-server", "--address", "127.0.0.1", "--port", "0", "--json"]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        stdout = self.process.stdout
        assert stdout is not None
        threading.Thread(target=lambda: self._lines.put(stdout.readline()), daemon=True).start()
        return self

    def wait_ready(self) -> str:
        if self.uri:
            return self.uri
        try:
            self.uri = json.loads(self._lines.get(timeout=self.READY_TIMEOUT_S))["uri"]
        except (queue.Empty, ValueError, KeyError) as exc:
            self.stop()
            raise MeasurementError("the embedded echo service did not start",
                                   remedy="run 'phonekit echo-server --port 0 -v' to see why") from exc  # fmt: skip
        return self.uri

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5.0)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> EmbeddedEcho:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- the gate


def _in_thread(specs: Sequence[CheckSpec], ctx: CheckContext) -> tuple[threading.Thread, list[Report]]:
    out: list[Report] = []
    thread = threading.Thread(target=lambda: out.append(run_checks(specs, ctx)), name="audio-checks", daemon=True)
    thread.start()
    return thread, out


def run_gate(ctx: CheckContext, echo: EmbeddedEcho | None = None) -> Report:
    """Steps 1 and 2 (see the module docstring); the report holds every check and, if reached, ``launch.verify``.

    The echo call uses no sound device, so it runs while the audio checks still do, as soon as the
    network and SIP checks passed; when an audio check then fails, its result is not reported
    (the gate stopped at the checks). That keeps the whole gate under 10 s.
    """
    started = time.perf_counter()
    specs = [spec for spec in all_checks() if spec.id not in SKIPPED_BY_LAUNCH]
    audio = [spec for spec in specs if spec.group == "audio"]
    rest = [spec for spec in specs if spec.group != "audio"]
    audio_ctx = CheckContext(input_device=ctx.input_device, output_device=ctx.output_device, profile=ctx.profile,
                             interactive=ctx.interactive, save_wav=ctx.save_wav, say=ctx.say, ask=ctx.ask)  # fmt: skip
    thread, audio_report = _in_thread(audio, audio_ctx)
    rest_checks = run_checks(rest, ctx).checks
    verdict: CheckResult | None = None
    if not any(c.status in BLOCKING for c in rest_checks):
        verdict = _verification(ctx, echo)
    thread.join()
    if not audio_report:
        raise MeasurementError("the audio checks did not finish", remedy="run 'phonekit check audio -v'")
    checks = audio_report[0].checks + rest_checks
    log.info("launch: gate took %.1f s", time.perf_counter() - started)
    if verdict is None or any(c.status in BLOCKING for c in checks):
        return Report(checks=checks)
    return Report(checks=(*checks, verdict))


def _verification(ctx: CheckContext, echo: EmbeddedEcho | None) -> CheckResult:
    from diagnostics.profile import load_profile

    profile = load_profile(ctx.profile) if ctx.profile is not None else None
    if profile is not None and not profile.echo_extension:
        return CheckResult(VERIFY_ID, Status.SKIP, "no echo test call: the profile names no echo extension",
                           remedy="set checks.echo_extension so that launch can prove the audio path")  # fmt: skip
    t0 = time.perf_counter()
    result = assess_verification(verify_call(profile, echo.wait_ready() if echo is not None else None))
    return CheckResult(result.id, result.status, result.summary, result.measurements, result.remedy,
                       (time.perf_counter() - t0) * 1000.0)  # fmt: skip


def gate_passed(report: Report) -> bool:
    return not any(c.status in BLOCKING for c in report.checks)


# --------------------------------------------------------------------------- command line


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("launch", help="check everything, prove audio with an echo call, then start the phone")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="account profile; without it: against an embedded echo service on loopback")  # fmt: skip
    parser.add_argument("--input", metavar="DEV", help="capture device by index or name substring")
    parser.add_argument("--output", metavar="DEV", help="playback device by index or name substring")
    parser.add_argument("--non-interactive", action="store_true", help="never ask the person anything")
    parser.add_argument("--no-phone", action="store_true", help="run the gate only; do not start the phone")
    parser.add_argument("--history", metavar="FILE", help="call history file of the phone")
    parser.add_argument("--no-history", action="store_true", help="keep no call history")
    parser.add_argument("--html", type=Path, metavar="FILE", help="also write the report as one HTML file (0600)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    parser.set_defaults(handler=main)


@contextlib.contextmanager
def _echo_if_needed(profile: Path | None) -> Iterator[EmbeddedEcho | None]:
    if profile is not None:
        yield None
        return
    with EmbeddedEcho() as echo:
        yield echo


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from diagnostics.render import render_json, render_text
    from phone.cli import run_phone

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def ask(question: str) -> bool:
        print(f"{question} [y/n] ", end="", file=sys.stderr, flush=True)
        return sys.stdin.readline().strip().lower() in {"y", "yes", "j", "ja"}

    ctx = CheckContext(input_device=args.input, output_device=args.output, profile=args.profile,
                       interactive=not args.non_interactive and sys.stdin.isatty(), say=say, ask=ask)  # fmt: skip
    try:
        if args.profile is not None:
            from diagnostics.profile import load_profile

            load_profile(args.profile)  # a broken profile is a usage error before anything runs
        if args.html is not None:
            from provision.report_cli import check_destination

            check_destination(args.html)
        with _echo_if_needed(args.profile) as echo:
            report = run_gate(ctx, echo)
            if args.json:
                render_json(report, sys.stdout)
                sys.stdout.flush()
            else:
                render_text(report, Console())
            if args.html is not None:
                from provision.report_cli import save_html

                if not save_html(report, args.html):
                    return 2
            if not gate_passed(report):
                print("phonekit launch: not starting the phone: a check failed (see above)", file=sys.stderr)
                return 1
            if args.no_phone:
                return 0
            out = (lambda text: print(text, file=sys.stderr, flush=True)) if args.json else None
            return run_phone(args, echo_uri=echo.uri if echo is not None else None, out=out)
    except UsageError as exc:
        print(f"phonekit launch: error: {exc}", file=sys.stderr)
        return 2
    except MeasurementError as exc:
        print(f"phonekit launch: could not measure: {exc} ({exc.remedy})", file=sys.stderr)
        return 3
