"""``phonekit phone``: the terminal phone and its scriptable one-shots.

``phonekit phone [--profile FILE]`` is an interactive phone on the terminal
(commands below, ``help`` lists them); ``phonekit phone call NUMBER`` and
``phonekit phone answer`` do one call and exit, for scripts and tests.

Audio: the sound devices (``--input``/``--output``, else the profile's
``[audio]``, else the system default) through ``phone.bridge``; the one-shots
use files instead when given ``--play``/``--record`` (WAV, any rate, mixed to
mono and resampled to the 16 kHz bridge clock).

Exit codes of the one-shots: 0 the call was answered, 1 it was refused by the
dial plan, not answered, or registration failed, 2 usage or input error,
3 environment error (devices, ports).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from diagnostics.errors import MeasurementError, UsageError
from diagnostics.profile import AccountProfile, load_profile
from phone import history
from phone.engine import EngineConfig, FrameIO
from phone.phone import Phone, PhoneError, account_for, dialplan_for, engine_config_for, local_address_for
from provision.dialplan import Dial, Refused

__all__ = ["COMMANDS", "build_phone", "main", "read_wav", "register", "run_phone", "write_wav"]

log = logging.getLogger(__name__)

RATE_HZ = 16000
"""The engine's conference clock, the rate of --play/--record audio inside phonekit."""
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3


# --------------------------------------------------------------------------- WAV files


def read_wav(path: Path, rate_hz: int = RATE_HZ) -> npt.NDArray[np.float64]:
    """A WAV file as mono float in [-1, 1] at ``rate_hz``; UsageError naming the file when it is not one."""
    from math import gcd

    from scipy.io import wavfile
    from scipy.signal import resample_poly

    try:
        rate, data = wavfile.read(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not a WAV file phonekit can read ({exc})") from None
    samples = np.asarray(data)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.dtype == np.uint8:  # 8-bit WAV is unsigned, centred on 128
        samples = (samples.astype(np.float64) - 128.0) / 128.0
    elif np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float64) / -float(np.iinfo(data.dtype).min)
    samples = samples.astype(np.float64)
    if rate != rate_hz:
        g = gcd(int(rate), rate_hz)
        samples = resample_poly(samples, rate_hz // g, int(rate) // g)
    return np.asarray(np.clip(samples, -1.0, 1.0), dtype=np.float64)


def write_wav(path: Path, samples: npt.NDArray[Any], rate_hz: int = RATE_HZ) -> None:
    """16-bit mono WAV, written atomically (temporary file in the same folder, fsync, rename)."""
    from scipy.io import wavfile

    data = samples if samples.dtype == np.int16 else np.clip(np.round(samples * 32767), -32768, 32767).astype(np.int16)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            wavfile.write(handle, rate_hz, data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- building a phone


def _profile(args: argparse.Namespace) -> AccountProfile | None:
    return load_profile(args.profile) if args.profile else None


@contextlib.contextmanager
def _devices(args: argparse.Namespace, profile: AccountProfile | None, started: bool = True) -> Iterator[Any]:
    """The sound-device bridge (started, unless the phone opens it per call); ``--input``/``--output`` win
    over the profile's ``[audio]``. Devices are resolved here, so a wrong name is an error before any call."""
    from diagnostics.audio.probe import resolve_device
    from phone.bridge import DeviceBridge

    input_spec = args.input or (profile.input_device if profile else "") or None
    output_spec = args.output or (profile.output_device if profile else "") or None
    bridge = DeviceBridge(resolve_device(input_spec, "input"), resolve_device(output_spec, "output"),
                          clock_rate_hz=RATE_HZ)  # fmt: skip
    if started:
        bridge.start()
    try:
        yield bridge
    finally:
        bridge.stop()


def _history_path(args: argparse.Namespace) -> Path | None:
    if getattr(args, "no_history", False):
        return None
    return Path(args.history) if getattr(args, "history", None) else history.default_path()


def build_phone(
    profile: AccountProfile | None,
    *,
    audio: FrameIO | None = None,
    play: npt.NDArray[Any] | None = None,
    record_s: float = 0.0,
    history_path: Path | None = None,
    notify: Callable[[str], None] | None = None,
    bound_address: str = "",
    engine: EngineConfig | None = None,
    audio_per_call: bool = False,
) -> Phone:
    """A phone for ``profile`` (or, without one, a phone reachable at its own loopback address)."""
    if profile is None:
        config = engine or EngineConfig(bound_address=bound_address or "127.0.0.1")
        return Phone(config, account=None, domain="", history_path=history_path, audio=audio,
                     play=play, record_s=record_s, notify=notify, audio_per_call=audio_per_call)  # fmt: skip
    config = engine or engine_config_for(profile, bound_address=bound_address or local_address_for(profile))
    return Phone(config, account=account_for(profile), domain=profile.domain, dialplan=dialplan_for(profile),
                 history_path=history_path, audio=audio, play=play, record_s=record_s, notify=notify,
                 audio_per_call=audio_per_call)  # fmt: skip


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- one-shots


def _received_summary(samples: npt.NDArray[Any] | None) -> dict[str, Any]:
    if samples is None or len(samples) == 0:
        return {"seconds": 0.0, "level_dbfs": None}
    x = samples.astype(np.float64) / 32768.0
    rms = float(np.sqrt(np.mean(x**2)))
    return {"seconds": round(len(x) / RATE_HZ, 3), "level_dbfs": round(20 * np.log10(rms), 2) if rms > 0 else None}


def _one_shot_audio(args: argparse.Namespace) -> tuple[npt.NDArray[Any] | None, bool]:
    """(what to play, whether files replace the devices)."""
    play = read_wav(args.play) if args.play else None
    if args.record and not args.record.parent.exists():
        raise UsageError(f"--record {args.record}: folder {args.record.parent} does not exist")
    return play, bool(args.play or args.record)


def _finish_one_shot(args: argparse.Namespace, phone: Phone, result: dict[str, Any]) -> None:
    recorded = phone.recorded()
    if args.record and recorded is not None:
        write_wav(args.record, recorded)
    result["received"] = _received_summary(recorded)
    quality = phone.last_quality
    result["quality"] = quality.to_dict() if quality else None
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(f"{result['outcome']}: {result.get('code', '')} {result.get('reason', '')}".rstrip())
        if quality:
            print(quality.summary())


def _registration_failed(args: argparse.Namespace, phone: Phone, result: dict[str, Any]) -> bool:
    """Report a failed registration as the one-shot's outcome (then True)."""
    reg = phone.registration
    if reg is None or reg.ok:
        return False
    result.update(outcome="registration failed", code=reg.code, reason=reg.reason)
    _finish_one_shot(args, phone, result)
    return True


def _talk(phone: Phone, duration_s: float) -> None:
    """Keep the active call up for ``duration_s`` or until the far end hangs up, then hang up."""
    assert phone.active is not None
    call = phone.active.call
    phone.wait(lambda: call.disconnected, duration_s)
    if not call.disconnected:
        phone.quality()  # a last sample for the report
        phone.hangup()
        phone.wait(lambda: call.disconnected, 3.0)
    phone.wait(lambda: phone.active is None, 1.0)


def _cmd_call(args: argparse.Namespace) -> int:
    profile = _profile(args)
    play, files = _one_shot_audio(args)
    duration = args.duration if args.duration is not None else (len(play) / RATE_HZ if play is not None else 10.0)
    with contextlib.ExitStack() as stack:
        audio = None if files else stack.enter_context(_devices(args, profile))
        phone = build_phone(profile, audio=audio, play=play, record_s=duration + 1.0, history_path=_history_path(args),
                            notify=_stderr if not args.json else log.info)  # fmt: skip
        stack.callback(phone.close)
        phone.start()
        result: dict[str, Any] = {"number": args.number}
        if _registration_failed(args, phone, result):
            return EXIT_FAILED
        decision = phone.decide(args.number)
        result["decision"] = {"kind": "refused" if isinstance(decision, Refused) else "dial", **vars(decision)}
        if isinstance(decision, Refused):
            phone.dial(args.number)  # records the refusal in the history; nothing is sent
            result.update(outcome="refused", code=0, reason=decision.reason)
            _finish_one_shot(args, phone, result)
            return EXIT_FAILED
        phone.dial(args.number)
        assert phone.active is not None
        call = phone.active.call
        if not phone.wait_answered(args.timeout):
            entry = phone.finished[-1] if phone.finished else None
            result.update(outcome="not answered", code=call.last_code or 408, reason=call.last_reason or "no answer",
                          history=entry.to_dict() if entry else None)  # fmt: skip
            _finish_one_shot(args, phone, result)
            return EXIT_FAILED
        _talk(phone, duration)
        entry = phone.finished[-1]
        result.update(outcome="answered", code=200, reason="OK", setup_ms=entry.setup_ms,
                      duration_s=entry.duration_s, history=entry.to_dict())  # fmt: skip
        _finish_one_shot(args, phone, result)
    return EXIT_OK


def _cmd_answer(args: argparse.Namespace) -> int:
    profile = _profile(args)
    play, files = _one_shot_audio(args)
    duration = args.duration if args.duration is not None else 3600.0
    with contextlib.ExitStack() as stack:
        audio = None if files else stack.enter_context(_devices(args, profile))
        record_s = min(duration, 600.0) + 1.0
        phone = build_phone(profile, audio=audio, play=play, record_s=record_s, history_path=_history_path(args),
                            notify=_stderr if not args.json else log.info)  # fmt: skip
        stack.callback(phone.close)
        phone.start()
        result: dict[str, Any] = {"address": phone.address}
        if _registration_failed(args, phone, result):
            return EXIT_FAILED
        if not args.json:
            _stderr(f"waiting up to {args.timeout:g} s for a call to {phone.address}")
        else:
            print(json.dumps({"ready": phone.address}), flush=True)
        if not phone.wait(lambda: phone.ringing is not None, args.timeout):
            result.update(outcome="no call", code=0, reason=f"nobody called within {args.timeout:g} s")
            _finish_one_shot(args, phone, result)
            return EXIT_FAILED
        call = phone.answer()
        result["caller"] = call.remote_uri
        phone.wait(lambda: call.confirmed or call.disconnected, 5.0)
        _talk(phone, duration)
        entry = phone.finished[-1]
        result.update(outcome="answered", code=200, reason="OK", duration_s=entry.duration_s, history=entry.to_dict())
        _finish_one_shot(args, phone, result)
    return EXIT_OK


# --------------------------------------------------------------------------- the terminal phone

COMMANDS: dict[str, str] = {
    "dial NUMBER": "call a number (dial rules and barring first) or a sip: URI",
    "answer": "answer the ringing call",
    "reject": "reject the ringing call (486 Busy Here)",
    "hangup": "end the call",
    "hold / resume": "put the call on hold and take it back",
    "mute / unmute": "stop and restart sending your microphone",
    "dtmf DIGITS": "send touch tones (RFC 4733): 0-9 * # A-D",
    "transfer NUMBER": "blind transfer of the call (REFER)",
    "stats": "call quality now: jitter, loss, round trip, MOS",
    "level": "microphone and speaker level",
    "status": "registration and call state",
    "register / unregister": "bind or unbind this phone at the registrar",
    "history [N]": "the last N calls (10)",
    "check NUMBER": "what dialing NUMBER would do, without dialing",
    "wait SECONDS": "do nothing for a while (scripts fed on standard input)",
    "help": "this list",
    "quit": "hang up, unregister and leave",
}


def _stdin_lines(lines: queue.Queue[str | None]) -> None:
    """Read stdin in a thread (works on every OS, unlike select() on a console); None marks its end."""
    for line in sys.stdin:
        lines.put(line)
    lines.put(None)


def _decision_text(decision: Dial | Refused) -> str:
    if isinstance(decision, Refused):
        return f"refused: {decision.reason}"
    bypass = ""
    if decision.bypassed:
        bypass = f" (barring rule '{decision.bypassed}' lifted by allow entry {decision.allowed_by})"
    return f"dialing {decision.uri} (rule '{decision.rule}'){bypass}"


class Repl:
    """Commands typed on the terminal, executed between polls of the phone (one thread drives pjsua2)."""

    def __init__(self, phone: Phone, bridge: Any, out: Callable[[str], None]) -> None:
        self.phone = phone
        self.bridge = bridge
        self.out = out
        self.running = True

    def run(self, lines: queue.Queue[str | None]) -> None:
        while self.running:
            self.phone.poll(20)
            try:
                line = lines.get_nowait()
            except queue.Empty:
                continue
            if line is None:
                break
            self.execute(line)

    def execute(self, line: str) -> None:
        words = line.split()
        if not words:
            return
        command, rest = words[0].lower(), " ".join(words[1:])
        handler = getattr(self, f"do_{command.replace('-', '_')}", None)
        if handler is None:
            self.out(f"unknown command {command!r}: 'help' lists them")
            return
        try:
            handler(rest)
        except (PhoneError, ValueError) as exc:
            self.out(f"cannot {command}: {exc}")
        except MeasurementError as exc:  # the sound devices would not open for the call
            self.out(f"cannot {command}: {exc} ({exc.remedy})")

    def _needs(self, rest: str, what: str) -> str:
        if not rest:
            raise PhoneError(f"give {what}")
        return rest

    def do_help(self, rest: str) -> None:
        width = max(map(len, COMMANDS))
        for usage, what in COMMANDS.items():
            self.out(f"  {usage:<{width}}  {what}")

    def do_dial(self, rest: str) -> None:
        self.out(_decision_text(self.phone.dial(self._needs(rest, "a number"))))

    do_call = do_dial

    def do_check(self, rest: str) -> None:
        self.out(_decision_text(self.phone.decide(self._needs(rest, "a number"))).replace("dialing", "would dial", 1))

    def do_answer(self, rest: str) -> None:
        call = self.phone.answer()
        self.out(f"answered {call.remote_uri}")

    def do_reject(self, rest: str) -> None:
        self.phone.reject()
        self.out("rejected")

    def do_hangup(self, rest: str) -> None:
        self.phone.hangup()

    def do_hold(self, rest: str) -> None:
        self.phone.hold()
        self.out("on hold")

    def do_resume(self, rest: str) -> None:
        self.phone.resume()
        self.out("resumed")

    def do_mute(self, rest: str) -> None:
        self.phone.mute(True)
        self.out("muted: the far end hears nothing from you")

    def do_unmute(self, rest: str) -> None:
        self.phone.mute(False)
        self.out("unmuted")

    def do_dtmf(self, rest: str) -> None:
        digits = self._needs(rest.replace(" ", ""), "digits")
        self.phone.dtmf(digits)
        self.out(f"sent DTMF {digits}")

    def do_transfer(self, rest: str) -> None:
        decision = self.phone.transfer(self._needs(rest, "a number"))
        self.out(_decision_text(decision).replace("dialing", "transferring to", 1))

    def do_stats(self, rest: str) -> None:
        quality = self.phone.quality()
        self.out(quality.summary() if quality else "no call quality yet (no call, or no audio so far)")

    def do_level(self, rest: str) -> None:
        if self.bridge is None:
            self.out("no sound devices in use")
            return
        if self.phone.active is None:
            self.out("levels are measured during a call ('phonekit check audio' measures the devices now)")
            return
        mic, speaker = self.bridge.input_level_dbfs, self.bridge.output_level_dbfs
        self.out(f"microphone {mic:.1f} dBFS, speaker {speaker:.1f} dBFS")

    def do_status(self, rest: str) -> None:
        phone = self.phone
        if phone.sip_account is None:
            self.out(f"reachable at {phone.address} (no registrar)")
        elif phone.registration is not None:
            reg = phone.registration
            state = "registered" if phone.registered else "not registered"
            self.out(f"{phone.address}: {state} (last answer {reg.code} {reg.reason})")
        if phone.ringing is not None:
            self.out(f"ringing: {phone.ringing.remote_uri}")
        if phone.active is not None:
            call = phone.active.call
            flags = [f for f, on in (("muted", call.muted),) if on]
            self.out(f"call with {call.remote_uri}: {call.state_name}{' (' + ', '.join(flags) + ')' if flags else ''}")
        elif phone.ringing is None:
            self.out("no call")

    def do_register(self, rest: str) -> None:
        reg = self.phone.register()
        self.out(f"register: {reg.code} {reg.reason}")

    def do_unregister(self, rest: str) -> None:
        reg = self.phone.unregister()
        self.out(f"unregister: {reg.code} {reg.reason}")

    def do_history(self, rest: str) -> None:
        count = int(rest) if rest.isdigit() else 10
        path = self.phone.history_path
        entries = history.read(path) if path else self.phone.finished
        for e in entries[-count:]:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.started_unix_s))
            extra = f" {e.duration_s:.0f} s" if e.outcome == "answered" else f" {e.code} {e.reason}".rstrip()
            self.out(f"  {when} {e.direction:<8} {e.number:<24} {e.outcome}{extra}")
        if not entries:
            self.out("no calls yet")

    def do_wait(self, rest: str) -> None:
        try:
            seconds = float(rest)
        except ValueError:
            raise PhoneError(f"give seconds (got {rest!r})") from None
        if not 0 <= seconds <= 3600:
            raise PhoneError(f"wait 0 to 3600 seconds (got {seconds:g})")
        self.phone.wait(lambda: False, seconds)

    def do_quit(self, rest: str) -> None:
        self.running = False

    do_exit = do_quit


def run_terminal_phone(phone: Phone, bridge: Any, out: Callable[[str], None] = print) -> None:
    """Read commands until ``quit`` or the end of input; the caller owns ``phone`` (and closes it)."""
    if phone.registration is not None:
        reg = phone.registration
        out(f"phonekit phone: {phone.address} {'registered' if reg.ok else 'NOT registered'} ({reg.code} {reg.reason})")
    else:
        out(f"phonekit phone: reachable at {phone.address}")
    out("type 'help' for the commands")
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_stdin_lines, args=(lines,), name="stdin", daemon=True).start()
    Repl(phone, bridge, out).run(lines)


def run_phone(args: argparse.Namespace, echo_uri: str | None = None, out: Callable[[str], None] | None = None) -> int:
    """The terminal phone on the devices and profile of ``args`` (also what ``phonekit launch`` starts)."""
    say = out or (lambda text: print(text, flush=True))
    profile = _profile(args)
    with _devices(args, profile, started=False) as bridge:
        phone = build_phone(profile, audio=bridge, history_path=_history_path(args),
                            notify=lambda text: say(f"* {text}"), audio_per_call=True)  # fmt: skip
        try:
            phone.start()
            if echo_uri:
                say(f"echo service: 'dial {echo_uri}' to hear yourself")
            run_terminal_phone(phone, bridge, say)
        finally:
            phone.close()
    return EXIT_OK


def _cmd_terminal(args: argparse.Namespace) -> int:
    return run_phone(args)


# --------------------------------------------------------------------------- argparse


def _audio_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", type=Path, metavar="FILE", help="account profile (TOML); without it the "
                        "phone registers nowhere and dials sip: URIs")  # fmt: skip
    parser.add_argument("--input", metavar="DEV", help="capture device by index or name substring")
    parser.add_argument("--output", metavar="DEV", help="playback device by index or name substring")
    parser.add_argument("--history", metavar="FILE", help=f"call history file (default {history.default_path()})")
    parser.add_argument("--no-history", action="store_true", help="keep no call history")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")


def _file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, metavar="S", help="seconds to stay in the call once answered")
    parser.add_argument("--play", type=Path, metavar="FILE", help="send this WAV instead of the microphone")
    parser.add_argument("--record", type=Path, metavar="FILE", help="record the far end to this WAV (16 kHz)")
    parser.add_argument("--json", action="store_true", help="print only JSON on stdout")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("phone", help="the softphone: interactive, or one call with 'call'/'answer'")
    _audio_options(parser)
    parser.set_defaults(handler=main, phone_command="terminal", json=False)
    one_shots = parser.add_subparsers(dest="phone_command", metavar="ONE-SHOT")
    call = one_shots.add_parser("call", help="call NUMBER, talk for --duration seconds, hang up")
    call.add_argument("number")
    call.add_argument("--timeout", type=float, default=30.0, metavar="S", help="give up unanswered after S (30)")
    _audio_options(call)
    _file_options(call)
    answer = one_shots.add_parser("answer", help="wait for one call and answer it")
    answer.add_argument("--timeout", type=float, default=60.0, metavar="S", help="wait at most S for a call (60)")
    _audio_options(answer)
    _file_options(answer)


def main(args: argparse.Namespace) -> int:
    handlers = {"terminal": _cmd_terminal, "call": _cmd_call, "answer": _cmd_answer}
    try:
        return handlers[args.phone_command or "terminal"](args)
    except UsageError as exc:
        print(f"phonekit phone: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MeasurementError as exc:
        print(f"phonekit phone: {exc} ({exc.remedy})", file=sys.stderr)
        return EXIT_ENVIRONMENT
