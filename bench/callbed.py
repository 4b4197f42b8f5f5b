"""The call test bed shared by ``bench.call_setup``, ``bench.call_cpu`` and ``bench.call_pesq``.

One Kamailio on free loopback ports (never 5060/5061), a baresip peer registered
as 1002 that auto-answers, plays a 1 kHz tone and records what it hears (at the
codec's rate, between decoder and resampler: exactly what it decoded), and the
two callers compared on the same path:

* phonekit: :class:`phone.engine.Engine` in a child process of its own
  (``python -m bench.callbed``, driven by JSON lines on its stdin/stdout), so
  that its CPU time is its own and it shares no interpreter lock with the bench;
  it calls by ``Engine.call`` with a ``BufferPort`` or, for the device variant,
  as the terminal phone does (``phone.phone.Phone`` + ``phone.bridge.DeviceBridge``);
* baresip: a second baresip registered as 1003 (:class:`BaresipCaller`), which
  dials through its ``ctrl_tcp`` like a user would.

Calls are addressed ``sip:1002@127.0.0.1:<port>``: on a port other than 5060
Kamailio's ``uri == myself`` needs the port in the request URI.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.testbed.baresip import BaresipPeer, Registrar
from tests.testbed.kamailio import Kamailio
from tests.testbed.procs import TestbedError, free_port

ROOT = Path(__file__).resolve().parents[1]
CALLEE = "1002"
BARESIP_CALLER = "1003"
PHONEKIT_CALLER = "1001"
CALLEE_TONE_HZ = 1000
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_CPUCLOCK_SCHED = 2


def cpu_seconds(pid: int) -> float:
    """CPU time of a whole process so far: every thread, dead ones included, in ns resolution.

    The process's CPU-time clock (``clock_getcpuclockid(pid)``, i.e. clock id
    ``(~pid << 3) | CPUCLOCK_SCHED``: the kernel's summed ``sum_exec_runtime``),
    the precise source of ``/proc/<pid>/stat``'s utime + stime, which count in
    10 ms ticks (too coarse for a 2 s idle window). Falls back to those ticks.
    """
    try:
        return time.clock_gettime_ns(((~pid) << 3) | _CPUCLOCK_SCHED) / 1e9
    except OSError:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class BaresipCaller(BaresipPeer):
    """A baresip that calls rather than answers: the test bed's peer config without ``sndfile``.

    A baresip used as a phone records nothing; leaving the recorder in would
    charge baresip for WAV writing that phonekit's caller does not do. With
    ``devices_env`` (a PulseAudio scene's environment) it talks through its
    ``alsa`` module to ALSA's ``default`` PCM, i.e. that PulseAudio's default
    source and sink, 48 kHz mono, like phonekit's device bridge. ``audio_source``
    replaces the ``ausine`` tone (e.g. ``aufile,<48 kHz mono WAV>``).
    """

    def __init__(self, workdir: Path, *, devices_env: Mapping[str, str] | None = None, audio_source: str = "",
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(workdir, **kwargs)
        self.devices_env = devices_env
        self.audio_source = audio_source

    def _config_text(self) -> str:
        lines = [line for line in super()._config_text().splitlines()
                 if "sndfile" not in line and not line.startswith("snd_path")]  # fmt: skip
        changes: dict[str, str] = {}
        if self.devices_env is not None:
            changes = {"audio_source": "alsa,default", "audio_player": "alsa,default", "ausrc_channels": "1"}
            lines += ["auplay_srate 48000", "auplay_channels 1", "module alsa.so"]
        if self.audio_source:
            changes.update(audio_source=self.audio_source, ausrc_channels="1")
            lines += [f"module {self.audio_source.split(',')[0]}.so"] if "ausine" not in self.audio_source else []
        lines = [f"{line.split()[0]} {changes[line.split()[0]]}" if line.split()[0] in changes else line
                 for line in lines]  # fmt: skip
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 10.0) -> BaresipCaller:
        if self.devices_env is None:
            super().start(timeout_s)
            return self
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.devices_env)  # the baresip process inherits it
        try:
            super().start(timeout_s)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return self


class PhonekitProcess:
    """phonekit's engine in a child process (``python -m bench.callbed``), one JSON command per line.

    The child registers once (:meth:`start`) and then places calls or idles on request;
    its pjsua2 log and any failure go to ``<workdir>/<name>.log``.
    """

    def __init__(self, workdir: Path, name: str = "phonekit", env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "bench.callbed"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=ROOT,
            env=dict(env) if env is not None else None,
            text=True,
        )
        self._buffer = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def fail(self, why: str) -> TestbedError:
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        return TestbedError(f"{self.name} (pid {self.pid}): {why}\n--- {self.log_path} ---\n{tail}")

    def send(self, command: str, **params: Any) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps({"cmd": command, **params}) + "\n")
        self.popen.stdin.flush()

    def expect(self, kind: str, timeout_s: float) -> dict[str, Any]:
        """The child's next message, which must be of ``kind``."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout_s
        ready, _, _ = select.select([self.popen.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = self.popen.stdout.readline() if ready else None
        if not line:
            raise self.fail(f"no {kind!r} within {timeout_s:g} s" if line is None else f"exited before {kind!r}")
        message: dict[str, Any] = json.loads(line)
        if message.get("kind") != kind:
            raise self.fail(f"expected {kind!r}, got {message}")
        return message

    def start(self, server: Kamailio, user: str = PHONEKIT_CALLER, mode: str = "engine", without: str = "",
              **config: Any) -> dict[str, Any]:  # fmt: skip
        """Start the engine (``config``: EngineConfig fields) and register ``user``; fail unless 200.

        ``mode``: ``engine`` (calls by ``Engine.call`` with a BufferPort) or ``phone`` (calls by
        ``phone.phone.Phone`` with the sound devices, which ``env`` must point at). ``without``:
        a cost to switch off for a breakdown (see ``_switch_off``).
        """
        account = {"user": user, "domain": server.domain, "registrar": f"{server.host}:{server.udp_port}",
                   "password": server.users[user]}  # fmt: skip
        self.send("start", config={"bound_address": server.host, **config}, account=account, mode=mode,
                  without=without)  # fmt: skip
        registered = self.expect("registered", 15.0)
        if registered["code"] != 200:
            raise self.fail(f"registration as {user} failed: {registered}")
        return registered

    def stop(self) -> None:
        """Ask the child to close its engine and exit; stop it by PID if it does not."""
        try:
            if self.popen.poll() is None:
                try:
                    self.send("quit")
                    self.popen.wait(10.0)
                except (OSError, subprocess.TimeoutExpired):
                    self.popen.terminate()
                    try:
                        self.popen.wait(3.0)
                    except subprocess.TimeoutExpired:
                        self.popen.kill()
                        self.popen.wait(3.0)
        finally:
            self._log.close()


class CallBed:
    """Kamailio, the baresip callee 1002, and whatever callers a bench adds (all stopped by :meth:`stop`)."""

    def __init__(self, workdir: Path, callee_codecs: Sequence[str] = ("PCMU", "PCMA", "G722")) -> None:
        self.workdir = workdir
        port = free_port()
        self.server = Kamailio(workdir / "kamailio", udp_port=port, tcp_port=port, tls_port=free_port())
        self.callee_codecs = tuple(callee_codecs)
        self.callee: BaresipPeer | None = None
        self._stoppable: list[BaresipPeer | PhonekitProcess] = []

    def uri(self, user: str = CALLEE) -> str:
        return f"sip:{user}@{self.server.host}:{self.server.udp_port}"

    def registrar(self, user: str) -> Registrar:
        s = self.server
        return Registrar(host=s.host, port=s.udp_port, user=user, password=s.users[user], domain=s.domain)

    def start(self) -> CallBed:
        self.server.start()
        self.callee = BaresipPeer(self.workdir / "callee", name="callee", tone_hz=CALLEE_TONE_HZ,
                                  codecs=self.callee_codecs, registrar=self.registrar(CALLEE))  # fmt: skip
        self._stoppable.append(self.callee)
        self.callee.start()
        self.callee.wait_registered(10.0)
        return self

    def baresip_caller(self, codecs: Sequence[str] = ("PCMU", "PCMA", "G722"), name: str = "caller",
                       devices_env: Mapping[str, str] | None = None, audio_source: str = "") -> BaresipCaller:
        caller = BaresipCaller(self.workdir / name, name=name, tone_hz=440, codecs=codecs,
                               registrar=self.registrar(BARESIP_CALLER), devices_env=devices_env,
                               audio_source=audio_source)  # fmt: skip
        self._stoppable.append(caller)
        caller.start()
        caller.wait_registered(10.0)
        return caller

    def phonekit(self, name: str = "phonekit", env: Mapping[str, str] | None = None, mode: str = "engine",
                 without: str = "", **config: Any) -> PhonekitProcess:  # fmt: skip
        agent = PhonekitProcess(self.workdir, name, env)
        self._stoppable.append(agent)
        agent.start(self.server, mode=mode, without=without, **config)
        return agent

    def release(self, what: BaresipPeer | PhonekitProcess) -> None:
        """Stop one caller now (by its PID) rather than at the end."""
        what.stop()
        self._stoppable.remove(what)

    def wait_callee_idle(self, since: int, timeout_s: float = 10.0) -> None:
        """Wait until the callee has closed the call that began after event mark ``since``."""
        assert self.callee is not None
        self.callee.wait_event("CALL_CLOSED", timeout_s, since=since)

    def stop(self) -> None:
        try:
            for what in reversed(self._stoppable):
                what.stop()
            self._stoppable.clear()
        finally:
            self.server.stop()


@contextmanager
def call_bed(prefix: str, callee_codecs: Sequence[str] = ("PCMU", "PCMA", "G722")) -> Iterator[CallBed]:
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        bed = CallBed(Path(tmp), callee_codecs)
        try:
            yield bed.start()
        finally:
            bed.stop()


def baresip_call(caller: BaresipPeer, uri: str, timeout_s: float = 10.0) -> float:
    """Dial ``uri`` and wait until established; returns ms from sending ``dial`` to the CALL_ESTABLISHED event."""
    start = time.perf_counter()
    mark = caller.dial(uri)
    caller.wait_event("CALL_ESTABLISHED", timeout_s, since=mark)
    return (time.perf_counter() - start) * 1000.0


# ----------------------------------------------------------------------------- the child process


class _Agent:
    """The child's side of :class:`PhonekitProcess`: one method per command, replies on a private stdout.

    Two ways to run a call, both as phonekit itself does: ``engine`` is
    :meth:`Engine.call` with a :class:`BufferPort` (the one-shot measurements);
    ``phone`` is :class:`phone.phone.Phone` (statistics every 0.5 s) with the
    sound devices through ``phone.bridge.DeviceBridge`` (PortAudio → ALSA
    ``pulse`` → whatever PulseAudio ``PULSE_SERVER`` names), as the terminal phone runs.
    """

    def __init__(self) -> None:
        replies = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # nothing but replies may reach the parent's pipe
        self._replies = replies
        self.engine: Any = None
        self.account: Any = None
        self.phone: Any = None
        self.bridge: Any = None

    def reply(self, kind: str, **fields: Any) -> None:
        self._replies.write(json.dumps({"kind": kind, **fields}) + "\n")

    def start(self, config: dict[str, Any], account: dict[str, str], mode: str = "engine", without: str = "") -> None:
        from diagnostics.secret import Secret
        from phone.engine import Engine, EngineConfig, SipAccount

        _switch_off(without)
        settings = EngineConfig(**{**config, "codecs": tuple(config.get("codecs", ()))})
        sip = SipAccount(account["user"], account["domain"], account["registrar"], Secret(account["password"]))
        if mode == "engine":
            self.engine = Engine(settings).start()
            self.account, outcome = self.engine.register(sip)
        elif mode in ("phone", "phone-buffer"):
            from phone.phone import Phone

            if mode == "phone":
                from diagnostics.audio.probe import resolve_device
                from phone.bridge import DeviceBridge

                # As the terminal phone runs it: the devices open for each call only.
                self.bridge = DeviceBridge(resolve_device(None, "input"), resolve_device(None, "output"),
                                           clock_rate_hz=settings.clock_rate_hz)  # fmt: skip
            self.phone = Phone(settings, account=sip, domain=sip.domain, audio=self.bridge,
                               audio_per_call=self.bridge is not None).start()  # fmt: skip
            self.engine = self.phone.engine
            outcome = self.phone.registration
        else:
            raise ValueError(f"mode must be 'engine', 'phone' or 'phone-buffer' (got {mode!r})")
        self.reply("registered", code=outcome.code, reason=outcome.reason, ms=outcome.duration_ms)

    def idle(self, seconds: float) -> None:
        self.reply("idling")
        if self.phone is not None:
            self.phone.wait(lambda: False, seconds)
        else:
            self.engine.poll_seconds(seconds)
        self.reply("idled")

    def call(self, uri: str, seconds: float, npy: str = "", tone_hz: float = 440.0, dbfs: float = -16.0) -> None:
        import numpy as np

        from diagnostics.audio.synth import tone

        if self.phone is not None:
            if self.bridge is None:  # phone-buffer: the phone's own one-shot audio path
                self.phone.play = tone(self.phone.engine.config.clock_rate_hz, seconds + 2.0, tone_hz, dbfs)
                self.phone.record_s = seconds + 1.0
            self._phone_call(uri, seconds)
            return

        rate = self.engine.config.clock_rate_hz
        play = np.load(npy) if npy else tone(rate, seconds + 2.0, tone_hz, dbfs)
        media_up: list[str] = []

        def on_sample(stats: Any) -> bool:
            if not media_up:
                media_up.append(stats.codec)
                self.reply("media", codec=stats.codec)
            return False

        outcome = self.engine.call(self.account, uri, play, seconds=seconds, stop_when=on_sample)
        stats = outcome.stats.to_dict() if outcome.stats is not None else None
        self.reply("called", code=outcome.code, reason=outcome.reason, setup_ms=outcome.setup_ms, stats=stats)

    def _phone_call(self, uri: str, seconds: float) -> None:
        phone = self.phone
        phone.dial(uri)
        call = phone.active.call
        phone.wait(lambda: call.confirmed or call.disconnected, 10.0)
        phone.wait(lambda: call.disconnected or phone.stats() is not None, 2.0)
        first = phone.stats()
        if first is None:
            self.reply("called", code=call.last_code, reason=call.last_reason, setup_ms=0.0, stats=None)
            return
        self.reply("media", codec=first.codec)
        phone.wait(lambda: call.disconnected, seconds)
        last = phone.stats()
        phone.hangup()
        phone.wait(lambda: phone.active is None, 5.0)
        entry = phone.finished[-1]
        self.reply("called", code=entry.code, reason=entry.reason, setup_ms=entry.setup_ms,
                   stats=last.to_dict() if last is not None else None)  # fmt: skip

    def close(self) -> None:
        if self.phone is not None:
            self.phone.close()
        elif self.engine is not None:
            self.engine.close()
        if self.bridge is not None:
            self.bridge.stop()


def _switch_off(without: str) -> None:
    """For ``call_cpu --breakdown`` only: switch one of ``Engine.call``'s costs off, in this child process.

    ``stats``: statistics are read once (for the codec) instead of at every 10 ms poll
    (``Call.sample_stats`` reads four pjsua2 structures and parses pjsua's call dump);
    ``stats+copy``: also, :class:`BufferPort` no longer copies received frames out of
    pjsua2 (``bytes(frame.buf)`` converts a SWIG ``ByteVector`` element by element).
    """
    if not without:
        return
    if without not in ("stats", "stats+copy"):
        raise ValueError(f"without must be '', 'stats' or 'stats+copy' (got {without!r})")
    from phone import engine

    read_stats = engine.Call.sample_stats

    def sample_once(call: Any) -> Any:
        return call.last_stats if call.last_stats is not None else read_stats(call)

    engine.Call.sample_stats = sample_once  # type: ignore[method-assign,assignment]
    if without == "stats+copy":

        def count_only(port: Any, frame: Any) -> None:
            port.frames_received += 1
            port._record_pos = min(len(port._record), port._record_pos + port.samples_per_frame)

        engine.BufferPort.onFrameReceived = count_only  # type: ignore[method-assign,assignment]


def _agent() -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    agent = _Agent()
    try:
        for line in sys.stdin:
            command = json.loads(line)
            kind = command.pop("cmd")
            if kind == "quit":
                break
            if kind not in ("start", "idle", "call"):
                raise ValueError(f"unknown command {kind!r}")
            getattr(agent, kind)(**command)
    finally:
        agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(_agent())
