"""baresip 1.0 as an independent, headless SIP peer for the test bed.

phonekit's own SIP stack is pjsua2; a test that only ever talks pjsua2 to
pjsua2 cannot catch a bug the two ends share.  baresip is a different SIP and
RTP implementation, so it serves as the "other phone": it auto-answers, plays
a known sine tone, records what it hears, reports call and DTMF events, and
can dial out.  Everything runs on loopback with no sound card.

Facts verified against Debian 12's baresip 1.0.0 (``baresip-core``) that
shape this module:

* Auto-answer is the account parameter ``;answermode=auto``.  In that mode
  baresip sends no ``CALL_INCOMING`` event (only in ``manual`` mode); an
  answered incoming call shows up as ``CALL_ESTABLISHED`` with
  ``"direction": "incoming"``.
* Audio source ``ausine,<Hz>`` only runs at 48 kHz stereo (``ausrc_srate
  48000``, ``ausrc_channels 2``); its amplitude is 50 % of full scale, i.e.
  a -9 dBFS RMS sine.  The 48 kHz -> 8/16 kHz path uses the proper filters of
  librem's resampler (pass band 0-3 kHz for 8 kHz, 0-7 kHz for 16 kHz).  The
  resampler's FIR tables are designed for 48 kHz only: a 16 -> 8 kHz (or
  8 -> 16) conversion uses the 48 kHz/4 kHz table at 16 kHz, which cuts
  everything above ~1.3 kHz.  So: never set ``ausrc_srate``/``auplay_srate``
  to 8000 or 16000 together with another-rate codec, and never feed ``aufile``
  a WAV at a rate other than 48 kHz.
* The ``sndfile`` audio filter records what is sent (``...-enc.wav``) and what
  is received (``...-dec.wav``) *at the codec rate* (8 kHz for G.711, 16 kHz
  for G.722), mono, 16-bit PCM, between codec and resampler: the playback
  path never touches the recording.  Names are
  ``<snd_path>/dump-YYYY-MM-DD-HH-MM-SS-{enc,dec}.wav`` in local time with
  one-second resolution, so two calls in the same second would overwrite each
  other: this module moves them into a per-call folder as soon as the call
  closes.
* There is no null player; ``aubridge,<name>`` as player without a matching
  source simply never pulls audio, which is harmless (decoding and recording
  run on RTP receive).
* ``ctrl_tcp`` speaks netstring-framed JSON, accepts ONE connection and only
  relays events to a connected client; commands are the long commands of
  ``menu.so`` (``dial``, ``hangup``, ``sndcode``, ``reginfo`` ...).
* SIP over TLS listens on ``sip_listen`` port + 1, so that port must be free.
* Received DTMF (RFC 4733 telephone-event and SIP INFO) is reported as
  ``CALL_DTMF_START`` with the digit in ``param``, then ``CALL_DTMF_END``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import re
import shutil
import socket
import struct
import threading
import time
import uuid
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from tests.testbed.procs import Process, TestbedError, free_port, require, tcp_listening

log = logging.getLogger(__name__)

MODULE_PATH = Path("/usr/lib/baresip/modules")

#: Codec names accepted by :class:`BaresipPeer`, as baresip spells them in an
#: account's ``audio_codecs`` (a bare "G722" would mean G722/8000 and not match).
CODECS: dict[str, str] = {
    "PCMU": "PCMU/8000/1",
    "PCMA": "PCMA/8000/1",
    "G722": "G722/16000/1",
}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STATUS_LINE = re.compile(r"\r?\[\d+:\d\d:\d\d\] audio=[^\r\n]*\r?")

#: Start-up warnings that mean the peer would not be what the test asked for
#: (e.g. "account: audio codec not found", a module that did not load).
_FATAL_WARNINGS = ("account:", "module ", "ctrl_tcp:", "sndfile:", "ausine:", "ua:", "tcp:")

Transport = Literal["udp", "tcp", "tls"]


@dataclass(frozen=True)
class Registrar:
    """Where and as whom a :class:`BaresipPeer` registers.

    ``domain`` is the AOR's domain when it differs from the registrar's
    address (the registrar is then used as outbound proxy).  ``ca_file``
    verifies a TLS registrar's certificate (baresip's ``sip_cafile``).
    """

    host: str
    port: int
    user: str
    password: str
    transport: Transport = "udp"
    domain: str | None = None
    ca_file: Path | None = None
    regint_s: int = 600

    @property
    def aor(self) -> str:
        domain = self.domain or f"{self.host}:{self.port}"
        return f"sip:{self.user}@{domain}"


@dataclass(frozen=True)
class BaresipEvent:
    """One event baresip relayed over ctrl_tcp (e.g. ``CALL_ESTABLISHED``)."""

    seq: int
    type: str
    param: str
    call_id: str | None
    direction: str | None
    peer_uri: str | None
    raw: dict[str, Any]
    monotonic: float


@dataclass
class CallRecording:
    """The WAVs baresip's ``sndfile`` wrote for one call, moved to their own folder."""

    call_id: str
    folder: Path
    received: Path | None = None
    sent: Path | None = None
    source_names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ToneAnalysis:
    """Dominant frequency and level of a recording (the middle part, see :func:`analyse_wav`)."""

    rate: int
    duration_s: float
    frequency_hz: float
    rms_dbfs: float


# --------------------------------------------------------------------- audio


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Samples of a 16-bit PCM WAV as float in [-1, 1) (channels averaged) and its rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise TestbedError(f"{path}: {8 * wav.getsampwidth()}-bit WAV, expected 16-bit PCM")
        rate = wav.getframerate()
        channels = wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return data, rate


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level relative to a full-scale square wave (a full-scale sine reads -3 dBFS)."""
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(samples))))
    return float(20.0 * np.log10(rms)) if rms > 0 else float("-inf")


def dominant_frequency(samples: np.ndarray, rate: int, min_hz: float = 50.0) -> float:
    """Frequency of the strongest spectral peak above ``min_hz``, interpolated between bins.

    A Hann window and parabolic interpolation on the log magnitude give
    well under 1 Hz error for a steady tone of a second or more.
    """
    if samples.size < 16:
        raise ValueError("too few samples for a spectrum")
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    freqs = np.fft.rfftfreq(samples.size, 1.0 / rate)
    spectrum[freqs < min_hz] = 0.0
    k = int(np.argmax(spectrum))
    if 0 < k < spectrum.size - 1 and spectrum[k] > 0:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-30)
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom != 0 else 0.0
    else:
        offset = 0.0
    return float((k + offset) * rate / samples.size)


def analyse_wav(path: Path, trim_s: float = 0.25) -> ToneAnalysis:
    """Dominant frequency and RMS of a recording, ignoring ``trim_s`` at each end.

    The ends hold the call's start (jitter buffer filling, silence) and
    hang-up, which would otherwise pull the level down.
    """
    samples, rate = read_wav(path)
    cut = int(trim_s * rate)
    middle = samples[cut : samples.size - cut] if samples.size > 4 * cut else samples
    if middle.size < 16:
        raise TestbedError(f"{path}: only {samples.size} samples recorded")
    return ToneAnalysis(
        rate=rate,
        duration_s=samples.size / rate,
        frequency_hz=dominant_frequency(middle, rate),
        rms_dbfs=rms_dbfs(middle),
    )


def _wav_finished(path: Path) -> bool:
    """True once libsndfile has closed the file (its RIFF size matches the file size)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 8 and head[:4] == b"RIFF" and struct.unpack("<I", head[4:8])[0] == size - 8


# ------------------------------------------------------------------- netstring


def _netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


def _take_netstring(buf: bytearray) -> bytes | None:
    """Remove and return one complete netstring payload from ``buf``, or None if incomplete."""
    colon = buf.find(b":")
    if colon < 0:
        if len(buf) > 10:
            raise TestbedError(f"ctrl_tcp: not a netstring: {bytes(buf[:40])!r}")
        return None
    length = int(buf[:colon])
    end = colon + 1 + length
    if len(buf) < end + 1:
        return None
    if buf[end : end + 1] != b",":
        raise TestbedError(f"ctrl_tcp: netstring without trailing comma: {bytes(buf[: end + 1])[-40:]!r}")
    payload = bytes(buf[colon + 1 : end])
    del buf[: end + 1]
    return payload


# ----------------------------------------------------------------------- peer


def _free_sip_port(host: str) -> int:
    """A port free for SIP UDP+TCP whose successor is free for TCP (baresip's TLS listener)."""
    for _ in range(50):
        port = free_port(host)
        if port >= 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port + 1))
            except OSError:
                continue
        return port
    raise TestbedError(f"no port pair free for baresip SIP (+TLS on port+1) on {host}")


class BaresipPeer:
    """One baresip process: auto-answering, tone-playing, recording SIP peer.

    Without ``registrar`` it is reachable directly at :attr:`uri`
    (``sip:<user>@<host>:<sip_port>``); with one it registers there and
    :meth:`wait_registered` tells when it succeeded.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        name: str = "baresip",
        user: str = "peer",
        tone_hz: int = 1000,
        codecs: Sequence[str] = ("PCMU", "PCMA", "G722"),
        registrar: Registrar | None = None,
        host: str = "127.0.0.1",
        sip_port: int | None = None,
        ctrl_port: int | None = None,
        answermode: Literal["auto", "manual", "early"] = "auto",
        max_calls: int = 1,
        rtp_ports: tuple[int, int] = (20000, 39999),
        sip_trace: bool = False,
        mediaenc: Literal["", "srtp", "srtp-mand"] = "",
    ) -> None:
        unknown = [c for c in codecs if c not in CODECS]
        if unknown or not codecs:
            raise ValueError(f"codecs must be a non-empty subset of {sorted(CODECS)}, got {list(codecs)}")
        if not 10 <= tone_hz <= 20000:
            raise ValueError("ausine plays 10..20000 Hz")
        self.name = name
        self.user = registrar.user if registrar else user
        self.tone_hz = tone_hz
        self.codecs = tuple(codecs)
        self.registrar = registrar
        self.host = host
        self.sip_port = sip_port if sip_port is not None else _free_sip_port(host)
        self.ctrl_port = ctrl_port if ctrl_port is not None else free_port(host, socket.SOCK_STREAM)
        self.answermode = answermode
        self.max_calls = max_calls
        self.rtp_ports = rtp_ports
        self.sip_trace = sip_trace
        self.mediaenc = mediaenc
        """SDES-SRTP (RFC 4568) through baresip's srtp module: ``srtp`` optional, ``srtp-mand`` mandatory."""
        self.workdir = workdir
        self.config_dir = workdir / "config"
        self.snd_dir = workdir / "sndfile"
        self.calls_dir = workdir / "calls"
        self.log_path = workdir / "baresip.log"
        self.process: Process | None = None

        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._events: list[BaresipEvent] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._cmd_lock = threading.Lock()
        self._tokens = itertools.count(1)
        self._active_calls: set[str] = set()
        self._recordings: list[CallRecording] = []
        self._clear_mark = 0
        self._reader_error: str | None = None

    # ------------------------------------------------------------ addresses

    @property
    def uri(self) -> str:
        """Where to call this peer directly, bypassing any registrar."""
        return f"sip:{self.user}@{self.host}:{self.sip_port}"

    @property
    def aor(self) -> str:
        """The peer's address of record (its registrar's domain when registered)."""
        return self.registrar.aor if self.registrar else self.uri

    # ---------------------------------------------------------- config files

    def _account_line(self) -> str:
        codecs = ",".join(CODECS[c] for c in self.codecs)
        params = [f"answermode={self.answermode}", f"audio_codecs={codecs}", "ptime=20"]
        if self.mediaenc:
            params.append(f"mediaenc={self.mediaenc}")
        reg = self.registrar
        if reg is None:
            return f"<{self.uri}>;" + ";".join([*params, "regint=0"])
        uri = f"{reg.aor};transport={reg.transport}"
        params += [f"auth_user={reg.user}", f"auth_pass={reg.password}", f"regint={reg.regint_s}"]
        if reg.domain:
            params.append(f'outbound="sip:{reg.host}:{reg.port};transport={reg.transport}"')
        return f"<{uri}>;" + ";".join(params)

    def _config_text(self) -> str:
        bridge = f"aubridge,{self.name}-nil"
        lines = [
            "poll_method epoll",
            f"sip_listen {self.host}:{self.sip_port}",
            # An address, not "lo": baresip 1.0 fails to bind to an interface name here.
            f"net_interface {self.host}",
            "call_local_timeout 120",
            f"call_max_calls {self.max_calls}",
            # No sound card: ausine plays the known tone (48 kHz stereo only),
            # aubridge is a player that never pulls audio.
            f"audio_source ausine,{self.tone_hz}",
            f"audio_player {bridge}",
            f"audio_alert {bridge}",
            "ausrc_srate 48000",
            "ausrc_channels 2",
            "audio_level no",
            "ausrc_format s16",
            "auplay_format s16",
            "auenc_format s16",
            "audec_format s16",
            "audio_buffer 20-160",
            f"rtp_ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "rtcp_mux no",
            "jitter_buffer_delay 5-10",
            "rtp_stats no",
            f"module_path {MODULE_PATH}",
            "module g711.so",
            "module g722.so",
            "module sndfile.so",
            "module ausine.so",
            "module aubridge.so",
            *(["module srtp.so"] if self.mediaenc else []),
            "module_tmp uuid.so",
            "module_tmp account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen {self.host}:{self.ctrl_port}",
            f"snd_path {self.snd_dir}",
            "ringback_disabled yes",
        ]
        if self.registrar is not None and self.registrar.ca_file is not None:
            lines.append(f"sip_cafile {self.registrar.ca_file}")
        return "\n".join(lines) + "\n"

    def write_config(self) -> None:
        """Write config, accounts (0600: it may hold a password) and uuid (no newline: it breaks Contact)."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.snd_dir.mkdir(parents=True, exist_ok=True)
        self.calls_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "config").write_text(self._config_text())
        accounts = self.config_dir / "accounts"
        accounts.touch(mode=0o600)
        accounts.chmod(0o600)
        accounts.write_text(self._account_line() + "\n")
        (self.config_dir / "uuid").write_text(str(uuid.uuid4()))
        # No contacts file needed: contact.so is not loaded.

    # -------------------------------------------------------------- lifecycle

    def start(self, timeout_s: float = 10.0) -> BaresipPeer:
        """Start baresip and connect to its ctrl_tcp; fail with its log if either does not come up."""
        binary = require("baresip")
        missing = [
            m
            for m in ("ausine", "aubridge", "sndfile", "ctrl_tcp", "menu", "g722")
            if not (MODULE_PATH / f"{m}.so").exists()
        ]
        if missing:
            raise TestbedError(f"baresip modules missing in {MODULE_PATH}: {missing} (Debian package baresip-core)")
        self.write_config()
        argv = [binary, "-f", str(self.config_dir)] + (["-s"] if self.sip_trace else [])
        self.process = Process(self.name, argv, self.log_path, cwd=self.workdir)
        try:
            self._await_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info(
            "%s: baresip pid %d, SIP %s, ctrl %s:%d", self.name, self.process.pid, self.uri, self.host, self.ctrl_port
        )
        return self

    def _await_ready(self, timeout_s: float) -> None:
        assert self.process is not None
        self.process.wait_until(lambda: tcp_listening(self.host, self.ctrl_port), timeout_s, "ctrl_tcp listener")
        # baresip prints its warnings in red; a bad config line is a warning, not an exit.
        warnings = [_ANSI.sub("", line) for line in self.process.log_tail(200).splitlines() if "\x1b[31m" in line]
        fatal = [w for w in warnings if w.startswith(_FATAL_WARNINGS)]
        if fatal:
            raise self.fail(f"bad configuration: {fatal}")
        if warnings:
            log.warning("%s: baresip warned at start: %s", self.name, warnings)
        self._connect()

    def _connect(self) -> None:
        assert self.process is not None
        self._sock = socket.create_connection((self.host, self.ctrl_port), timeout=5.0)
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name=f"{self.name}-ctrl", daemon=True)
        self._reader.start()

    def stop(self) -> None:
        """Close the control connection and stop baresip (two SIGTERMs, then SIGKILL)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        if self.process is not None:
            self.process.stop(timeout_s=3.0, resignal_after_s=2.0)
        if self._reader is not None:
            self._reader.join(2.0)
            self._reader = None

    def __enter__(self) -> BaresipPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def fail(self, why: str) -> TestbedError:
        """An error carrying baresip's log tail, for a test failure that explains itself."""
        if self.process is None:
            return TestbedError(f"{self.name}: {why} (not started)")
        return TestbedError(f"{self.name} (pid {self.process.pid}): {why}\n--- {self.log_path} ---\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """The end of baresip's log without menu's per-call status line (a \\r-stream every 100 ms)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        text = _ANSI.sub("", _STATUS_LINE.sub("", text))
        return "\n".join(line for line in text.split("\n")[-lines:])

    # ----------------------------------------------------------- ctrl_tcp io

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        buf = bytearray()
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while (payload := _take_netstring(buf)) is not None:
                    self._dispatch(payload)
        except OSError as exc:
            if self._sock is not None:
                log.warning("%s: ctrl_tcp connection lost: %s", self.name, exc)
                self._reader_error = str(exc)
        except TestbedError as exc:
            log.error("%s: %s", self.name, exc)
            self._reader_error = str(exc)
        finally:
            with self._cond:
                self._reader_error = self._reader_error or "ctrl_tcp connection closed"
                self._cond.notify_all()

    def _dispatch(self, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except json.JSONDecodeError as exc:
            log.warning("%s: undecodable ctrl_tcp message %r: %s", self.name, payload[:200], exc)
            return
        if msg.get("response"):
            with self._cond:
                self._responses[str(msg.get("token"))] = msg
                self._cond.notify_all()
            return
        if not msg.get("event"):
            log.debug("%s: ctrl_tcp message neither event nor response: %s", self.name, msg)
            return
        kind = str(msg.get("type", ""))
        call_id = msg.get("id")
        if kind == "CALL_CLOSED" and call_id:
            # Move the recordings before a next call in the same second reuses their names.
            self._collect_recordings(str(call_id))
        with self._cond:
            event = BaresipEvent(
                seq=len(self._events),
                type=kind,
                param=str(msg.get("param", "")),
                call_id=call_id,
                direction=msg.get("direction"),
                peer_uri=msg.get("peeruri"),
                raw=msg,
                monotonic=time.monotonic(),
            )
            self._events.append(event)
            if kind in ("CALL_INCOMING", "CALL_RINGING", "CALL_PROGRESS", "CALL_ESTABLISHED") and call_id:
                self._active_calls.add(call_id)
            elif kind == "CALL_CLOSED" and call_id:
                self._active_calls.discard(call_id)
            self._cond.notify_all()
        if kind not in ("CALL_RTCP", "VU_TX_REPORT", "VU_RX_REPORT"):
            log.info("%s: event %s %s", self.name, kind, event.param)

    def _collect_recordings(self, call_id: str) -> None:
        folder = self.calls_dir / f"{len(self._recordings) + 1:03d}-{call_id}"
        folder.mkdir(parents=True, exist_ok=True)
        rec = CallRecording(call_id=call_id, folder=folder)
        for src in sorted(self.snd_dir.glob("dump-*.wav")):
            # Renaming a file libsndfile still has open is safe: it finishes writing through its fd.
            if src.name.endswith("-dec.wav"):
                rec.received = folder / "received.wav"
                dst = rec.received
            elif src.name.endswith("-enc.wav"):
                rec.sent = folder / "sent.wav"
                dst = rec.sent
            else:
                continue
            rec.source_names.append(src.name)
            src.rename(dst)
        with self._cond:
            self._recordings.append(rec)

    def command(self, command: str, params: str | None = None, timeout_s: float = 5.0) -> str:
        """Run a baresip long command (menu.so's ``dial``, ``hangup``, ``reginfo`` ...); return its text."""
        if self._sock is None:
            raise self.fail(f"command {command!r} while not connected")
        request: dict[str, str] = {"command": command}
        if params is not None:
            request["params"] = params
        with self._cmd_lock:
            token = f"t{next(self._tokens)}"
            request["token"] = token
            self._sock.sendall(_netstring(json.dumps(request).encode()))
            deadline = time.monotonic() + timeout_s
            with self._cond:
                while token not in self._responses:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._reader_error:
                        raise self.fail(f"no answer to {command!r} ({self._reader_error or 'timeout'})")
                    self._cond.wait(left)
                response = self._responses.pop(token)
        data = _ANSI.sub("", str(response.get("data", "")))
        if not response.get("ok", False):
            raise self.fail(f"command {command} {params or ''} failed: {data}")
        return data

    # ------------------------------------------------------------- call control

    def dial(self, uri: str) -> int:
        """Call ``uri``; returns an event mark to pass as ``since`` to :meth:`wait_event`."""
        mark = self.mark()
        self.command("dial", uri)
        return mark

    def hangup(self) -> None:
        """Hang up the current call (no-op if there is none)."""
        self.command("hangup")

    def send_dtmf(self, digits: str, gap_s: float = 0.2) -> None:
        """Send DTMF as RFC 4733 telephone-events, one ``sndcode`` per digit.

        One ``sndcode`` with several digits would send key-downs for all and a
        single key-up for the last, so each digit is its own command.
        """
        for digit in digits:
            self.command("sndcode", digit)
            time.sleep(gap_s)

    def reset(self) -> None:
        """Hang up any call and forget old events: a shared peer starts each test clean."""
        if self.active_calls():
            mark = self.mark()
            self.hangup()
            with contextlib.suppress(TestbedError):
                self.wait_event("CALL_CLOSED", 5.0, since=mark)
        with self._cond:
            self._clear_mark = len(self._events)

    # ------------------------------------------------------------------ events

    def mark(self) -> int:
        """Position in the event log; events from here on are "new"."""
        with self._cond:
            return len(self._events)

    def events(self, since: int | None = None) -> list[BaresipEvent]:
        with self._cond:
            return list(self._events[self._clear_mark if since is None else since :])

    def active_calls(self) -> set[str]:
        with self._cond:
            return set(self._active_calls)

    def wait_event(
        self,
        kind: str,
        timeout_s: float,
        since: int | None = None,
        where: Callable[[BaresipEvent], bool] | None = None,
    ) -> BaresipEvent:
        """First event of type ``kind`` at or after ``since`` (default: since start/:meth:`reset`).

        Fails with baresip's log tail and the events seen if none comes in time.
        """
        start = self._clear_mark if since is None else since
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for event in self._events[start:]:
                    if event.type == kind and (where is None or where(event)):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or (self._reader_error and not self.alive()):
                    break
                self._cond.wait(min(left, 0.5))
            seen = [f"{e.type}({e.param})" for e in self._events[start:] if e.type != "CALL_RTCP"]
        raise self.fail(f"no {kind} within {timeout_s:g} s; events seen: {seen}")

    def dtmf_digits(self, since: int | None = None) -> str:
        """Digits received (CALL_DTMF_START events) since a mark, in order."""
        return "".join(e.param for e in self.events(since) if e.type == "CALL_DTMF_START")

    def registration_status(self) -> str:
        """baresip's ``reginfo`` text (contains "OK" once registered, "ERR" after a failure)."""
        return self.command("reginfo")

    def wait_registered(self, timeout_s: float = 10.0) -> None:
        """Poll ``reginfo`` until the registrar accepted us; fail at once if it refused.

        Polling, not the REGISTER_OK event: baresip registers as soon as it
        has read its accounts, usually before our ctrl_tcp connection exists,
        and ctrl_tcp does not replay missed events.
        """
        if self.registrar is None:
            raise TestbedError(f"{self.name}: no registrar configured")
        deadline = time.monotonic() + timeout_s
        status = ""
        while time.monotonic() < deadline:
            status = self.registration_status()
            if re.search(r"\bOK\b", status):
                return
            if re.search(r"\bERR\b", status):
                # A final failure (e.g. 403, or 401 again for a wrong password): waiting won't help.
                raise self.fail(f"registration at {self.registrar.host}:{self.registrar.port} failed: {status.strip()}")
            time.sleep(0.1)
        raise self.fail(
            f"not registered at {self.registrar.host}:{self.registrar.port} within {timeout_s:g} s: {status.strip()}"
        )

    # -------------------------------------------------------------- recordings

    def recordings(self) -> list[CallRecording]:
        """Recordings of all closed calls, oldest first."""
        with self._cond:
            return list(self._recordings)

    def last_recording(self, timeout_s: float = 5.0) -> CallRecording:
        """Recordings of the last closed call, once libsndfile has finished the WAV headers."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not self._recordings:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.fail("no call has closed yet, so there is no recording")
                self._cond.wait(left)
            rec = self._recordings[-1]
        for path in (rec.received, rec.sent):
            while path is not None and not _wav_finished(path):
                if time.monotonic() > deadline:
                    raise self.fail(f"{path} not finalised within {timeout_s:g} s")
                time.sleep(0.05)
        return rec

    def received_wav(self, timeout_s: float = 5.0) -> Path:
        """What this peer heard in its last call (decoded, at the codec's rate)."""
        rec = self.last_recording(timeout_s)
        if rec.received is None:
            raise self.fail(f"call {rec.call_id} left no received-audio recording (no media?)")
        return rec.received


# ------------------------------------------------------------------ fixtures

PeerFactory = Callable[..., BaresipPeer]


@contextlib.contextmanager
def baresip_peers(base: Path) -> Iterator[PeerFactory]:
    """Context giving a factory for started peers; stops all of them on exit."""
    peers: list[BaresipPeer] = []
    counter = itertools.count(1)

    def make(**kwargs: Any) -> BaresipPeer:
        name = str(kwargs.pop("name", f"baresip{next(counter)}"))
        workdir = base / name
        if workdir.exists():
            shutil.rmtree(workdir)
        peer = BaresipPeer(workdir, name=name, **kwargs)
        peers.append(peer)
        return peer.start()

    try:
        yield make
    finally:
        for peer in reversed(peers):
            try:
                peer.stop()
            except (OSError, TestbedError) as exc:
                log.error("stopping %s failed: %s", peer.name, exc)


@pytest.fixture(scope="session")
def baresip_session_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerFactory]:
    """Factory of baresip peers that live until the end of the test session."""
    with baresip_peers(tmp_path_factory.mktemp("baresip-session")) as make:
        yield make


@pytest.fixture
def baresip_factory(tmp_path: Path) -> Iterator[PeerFactory]:
    """Factory of baresip peers stopped at the end of the test (e.g. extra callers)."""
    with baresip_peers(tmp_path / "baresip") as make:
        yield make


@pytest.fixture(scope="session")
def baresip_session_peer(baresip_session_factory: PeerFactory) -> BaresipPeer:
    """One auto-answering peer without registrar, tone 1000 Hz, PCMU/PCMA/G722."""
    return baresip_session_factory(name="peer", user="peer", tone_hz=1000)


@pytest.fixture
def baresip_peer(baresip_session_peer: BaresipPeer) -> BaresipPeer:
    """The session peer, checked alive, with no call up and a clean event log."""
    if not baresip_session_peer.alive():
        raise baresip_session_peer.fail("session baresip peer died")
    baresip_session_peer.reset()
    return baresip_session_peer
