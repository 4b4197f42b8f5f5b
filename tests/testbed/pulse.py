"""PulseAudio virtual-device scenes: a private server whose mic and speaker are known.

Probes and the phone must be tested against audio devices whose behaviour is
known exactly, on machines that have no sound card.  Each *scene* is one
private ``pulseaudio`` server (never daemonized, stopped by its PID) with
virtual devices named and described like real hardware, fed by a signal
generated here, so every scene carries its ground truth (:class:`GroundTruth`).

Scenes (``SCENES``; one function each):

``headset``      mic carries known tone bursts over a quiet noise floor; no speaker leak.
``laptop-echo``  speaker leaks into the mic through ``module-loopback`` with a
                 nominal delay and attenuation; the mic also carries low noise.
``dead-mic``     mic delivers digital silence (exact zeros).
``noisy``        mic carries band-limited noise of known level (optional tone).
``clipping``     mic carries sine bursts clipped at full scale, known clipped fraction.
``no-input``     only a speaker: no capture device (see :func:`no_input`).

How a scene is built: a mic is ``module-remap-source`` over the monitor of a
plumbing null sink (``testbed_mic_feed``, described "Test bed mic feed (not
a device)"; clients listing sinks see it, it is never the default), into
which ``sox`` loops a one-second, exactly periodic file of the scene's
signal; speakers are ``module-null-sink`` (``norewinds=1``).  Everything runs
at 48 kHz mono float32, so levels pass through unchanged (full scale stays
exactly +-1.0, silence exactly 0.0).  The echo is ``module-loopback`` from
the speaker's monitor into the mic feed, attenuated by its sink-input
volume, with two always-connected 10 ms ``pacat`` streams (NOTES.md) to hold
its delay; 15 independent measurements of the 100 ms default gave 92-103 ms.

Talking to a scene from a child process: run it with ``scene.env``.  That
environment sets ``PULSE_SERVER`` (and a private cookie and client.conf with
autospawn off) so that libpulse, ``pactl``, ``paplay``, ``sox -t alsa pulse``
and PortAudio (sounddevice) reach this server and no other.  The scene's mic
and speaker are the server's default source and sink, so ALSA's ``pulse`` and
``default`` PCMs (Debian's libasound2-plugins) use them; ``pulse:<name>``
picks any other device.

Talking to scenes from THIS process with sounddevice (verified by
tests/testbed/test_pulse.py)::

    with sounddevice_in(scene) as sd:     # sets os.environ, re-initializes PortAudio
        x = sd.rec(48000, samplerate=48000, channels=1, dtype="float32",
                   device="pulse", blocking=True)

PortAudio enumerates devices (and ALSA reads its configuration) at
``import sounddevice``; :func:`sounddevice_in` sets the environment first
and then calls ``sd._terminate(); sd._initialize()``, which is enough for
one process to use several scenes one after another.  PortAudio then lists
two devices, ``pulse`` and ``default`` (both ``ALSA``); separate
``InputStream``/``OutputStream`` on them work.  Do not use ``sd.playrec``
(one duplex stream): it returned silence with xruns here.

pytest: the fixtures below (``pulse_scenes`` factory, ``pulse_scene`` for
indirect parametrization, ``headset_scene`` ... ``no_input_scene``) are
session-scoped; put ``pytest_plugins = ["tests.testbed.pulse"]`` in the root
``tests/conftest.py``.  A scene that cannot start fails the test with the
server's log, it is never skipped.

Command line (the README demo)::

    python -m tests.testbed.pulse headset -- phonekit check
    python -m tests.testbed.pulse laptop-echo --measure-echo
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.testbed.procs import Process, TestbedError, require

log = logging.getLogger(__name__)

SAMPLERATE = 48_000
"""Every device and feeder runs at this rate, so nothing is resampled."""

LOOP_S = 1.0
"""Length of the looped mic signal: tones need a whole number of cycles in it."""

FEED_SINK = "testbed_mic_feed"
"""Null sink whose monitor becomes the mic; it is test-bed plumbing, not a device."""

_START_TIMEOUT_S = 10.0


class SignalKind(enum.Enum):
    """What the scene's mic carries."""

    TONE = "tone"
    NOISE = "noise"
    TONE_IN_NOISE = "tone+noise"
    CLIPPED_TONE = "clipped-tone"
    SILENCE = "silence"
    NONE = "none"
    """No capture device at all."""


@dataclass(frozen=True)
class Device:
    """How a virtual device presents itself: names and properties of real hardware."""

    name: str
    description: str
    form_factor: str
    bus: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._:-]+", self.name):
            raise ValueError(f"device name must be letters, digits and . _ : - (got {self.name!r})")
        for value in (self.description, self.form_factor, self.bus):
            if any(c in value for c in "'\"\\"):
                raise ValueError(f"device fields must not contain quotes or backslashes (got {value!r})")

    def properties(self) -> str:
        """The ``sink_properties``/``source_properties`` value, quoted for pa_modargs."""
        return (
            f"\"device.description='{self.description}' device.class=sound "
            f'device.form_factor={self.form_factor} device.bus={self.bus}"'
        )


# Named the way module-alsa-card names real cards; mono, since every scene runs mono.
USB_HEADSET_SPEAKER = Device(
    "alsa_output.usb-Generic_USB_Headset-00.analog-mono", "USB Headset Analog Mono", "headset", "usb"
)
USB_HEADSET_MIC = Device("alsa_input.usb-Generic_USB_Headset-00.mono-fallback", "USB Headset Mono", "headset", "usb")
BUILTIN_SPEAKER = Device("alsa_output.pci-0000_00_1f.3.analog-mono", "Built-in Audio Analog Mono", "internal", "pci")
BUILTIN_MIC = Device("alsa_input.pci-0000_00_1f.3.analog-mono", "Built-in Audio Analog Mono", "internal", "pci")


@dataclass(frozen=True)
class MicSignal:
    """Recipe for the signal looped into a mic (levels are RMS dBFS, see :class:`GroundTruth`)."""

    tone_hz: float | None = None
    tone_dbfs: float | None = None
    """RMS level of the tone alone; its peak is 3.01 dB higher."""
    noise_dbfs: float | None = None
    """RMS level of the noise alone, all of it inside ``noise_band_hz``."""
    noise_band_hz: tuple[float, float] = (300.0, 3400.0)
    clip_fraction: float | None = None
    """Overdrive the tone so that this fraction of its samples sits at full scale."""
    on_s: float | None = None
    """Gate the tone like talk spurts: it sounds for the first ``on_s`` of every loop (10 ms ramps), then
    pauses; the pauses let a meter tell speech from the noise floor. None: a steady tone."""
    seed: int = 1

    def __post_init__(self) -> None:
        if (self.tone_hz is None) != (self.tone_dbfs is None and self.clip_fraction is None):
            raise ValueError(f"a tone needs tone_hz and tone_dbfs or clip_fraction (got {self!r})")
        if self.tone_hz is not None and not float(self.tone_hz * LOOP_S).is_integer():
            raise ValueError(
                f"tone_hz must give whole cycles in {LOOP_S} s so the loop is seamless (got {self.tone_hz})"
            )
        if self.tone_hz is not None and not 0 < self.tone_hz < SAMPLERATE / 2:
            raise ValueError(f"tone_hz must lie between 0 and {SAMPLERATE // 2} Hz (got {self.tone_hz})")
        if self.clip_fraction is not None and not 0 < self.clip_fraction < 1:
            raise ValueError(f"clip_fraction must lie between 0 and 1 (got {self.clip_fraction})")
        if self.on_s is not None and not 0.05 <= self.on_s < LOOP_S:
            raise ValueError(f"on_s must lie in 0.05..{LOOP_S} s (got {self.on_s})")
        low, high = self.noise_band_hz
        if not 0 < low < high < SAMPLERATE / 2:
            raise ValueError(f"noise_band_hz must be 0 < low < high < {SAMPLERATE // 2} (got {self.noise_band_hz})")

    def render(self) -> np.ndarray:
        """One loop of the signal (float32, exactly periodic so looping adds no click)."""
        n = round(LOOP_S * SAMPLERATE)
        out = np.zeros(n)
        if self.tone_hz is not None:
            phase = 2 * np.pi * self.tone_hz * np.arange(n) / SAMPLERATE
            gate = _gate(n, self.on_s)
            if self.clip_fraction is not None:
                # |A sin| >= 1 for a fraction 1 - (2/pi) asin(1/A) of the time: solve for A.
                out += np.clip(gate * np.sin(phase) / math.cos(math.pi * self.clip_fraction / 2), -1.0, 1.0)
            else:
                out += gate * math.sqrt(2) * _amplitude(self.tone_dbfs) * np.sin(phase)
        if self.noise_dbfs is not None:
            out += _band_noise(n, self.noise_band_hz, self.noise_dbfs, self.seed)
        if np.abs(out).max() > 1.0:
            raise ValueError(f"signal exceeds full scale; lower its levels (got {self!r})")
        return out.astype(np.float32)

    @property
    def kind(self) -> SignalKind:
        if self.clip_fraction is not None:
            return SignalKind.CLIPPED_TONE
        if self.tone_hz is not None:
            return SignalKind.TONE_IN_NOISE if self.noise_dbfs is not None else SignalKind.TONE
        return SignalKind.NOISE if self.noise_dbfs is not None else SignalKind.SILENCE


def _gate(n: int, on_s: float | None) -> np.ndarray:
    """1 during the first ``on_s`` of the loop and 0 after, with 10 ms raised-cosine edges."""
    if on_s is None:
        return np.ones(n)
    gate = np.zeros(n)
    on = round(on_s * SAMPLERATE)
    ramp = round(0.01 * SAMPLERATE)
    gate[:on] = 1.0
    edge = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, ramp))
    gate[:ramp] = edge
    gate[on - ramp : on] = edge[::-1]
    return gate


def _amplitude(dbfs: float | None) -> float:
    return 0.0 if dbfs is None else float(10 ** (dbfs / 20))


def _band_noise(n: int, band_hz: tuple[float, float], dbfs: float, seed: int) -> np.ndarray:
    """Periodic noise with a flat spectrum inside ``band_hz`` only, scaled to an exact RMS.

    Built in the frequency domain (random phases on the in-band bins of an
    n-point FFT), so one period loops seamlessly and no energy falls outside
    the band: its level is the same at any sample rate or band-limited meter.
    """
    freqs = np.fft.rfftfreq(n, 1 / SAMPLERATE)
    in_band = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, in_band.sum())
    spectrum = np.zeros(freqs.size, dtype=complex)
    spectrum[in_band] = np.exp(1j * phases)
    noise = np.fft.irfft(spectrum, n)
    return noise * (_amplitude(dbfs) / float(np.sqrt(np.mean(noise**2))))


@dataclass(frozen=True)
class Echo:
    """Speaker-to-mic leak made by ``module-loopback``."""

    delay_ms: float = 100.0
    """Nominal: module-loopback's ``latency_msec``; measure the real one, see ``measure_echo``."""
    attenuation_db: float = 10.0
    """Loss from speaker to mic (10 means the echo is 10 dB below what was played)."""

    def __post_init__(self) -> None:
        if not 20 <= self.delay_ms <= 2000:
            raise ValueError(f"echo delay_ms must lie in 20..2000 (got {self.delay_ms})")
        if self.attenuation_db < 0:
            raise ValueError(f"echo attenuation_db must be >= 0 (got {self.attenuation_db})")


@dataclass(frozen=True)
class GroundTruth:
    """What a scene's devices really do; tests compare probes against it.

    Levels are RMS dBFS: 20*log10(rms) with full scale 1.0, so a full-scale
    square wave is 0 dBFS and a full-scale sine -3.01 dBFS.  ``level_dbfs``
    and ``peak_dbfs`` are computed from the exact samples being looped.
    """

    scene: str
    samplerate: int
    has_input: bool
    """False only for ``no-input``: no source but monitors exists."""
    signal: SignalKind
    tone_hz: float | None = None
    tone_dbfs: float | None = None
    noise_dbfs: float | None = None
    noise_band_hz: tuple[float, float] | None = None
    level_dbfs: float | None = None
    """RMS of the whole mic signal (without echo); -inf for digital silence."""
    peak_dbfs: float | None = None
    clipped_fraction: float | None = None
    """Fraction of samples at exactly +-1.0."""
    echo_delay_ms: float | None = None
    """Nominal speaker-to-mic delay; PulseAudio's buffering adds to it."""
    echo_attenuation_db: float | None = None

    @classmethod
    def of(cls, scene: str, signal: MicSignal | None, has_input: bool, echo: Echo | None) -> GroundTruth:
        if not has_input:
            return cls(scene, SAMPLERATE, False, SignalKind.NONE)
        samples = (signal or MicSignal()).render().astype(np.float64)
        rms = float(np.sqrt(np.mean(samples**2)))
        peak = float(np.abs(samples).max())
        kind = signal.kind if signal is not None else SignalKind.SILENCE
        return cls(
            scene=scene,
            samplerate=SAMPLERATE,
            has_input=True,
            signal=kind,
            tone_hz=signal.tone_hz if signal else None,
            tone_dbfs=signal.tone_dbfs if signal else None,
            noise_dbfs=signal.noise_dbfs if signal else None,
            noise_band_hz=signal.noise_band_hz if signal and signal.noise_dbfs is not None else None,
            level_dbfs=20 * math.log10(rms) if rms > 0 else -math.inf,
            peak_dbfs=20 * math.log10(peak) if peak > 0 else -math.inf,
            clipped_fraction=float(np.mean(np.abs(samples) >= 1.0)) if kind is SignalKind.CLIPPED_TONE else None,
            echo_delay_ms=echo.delay_ms if echo else None,
            echo_attenuation_db=echo.attenuation_db if echo else None,
        )


@dataclass(frozen=True)
class SceneSpec:
    """One row of the scene table: devices, mic signal and echo path."""

    name: str
    speaker: Device
    mic: Device | None
    signal: MicSignal | None
    """None with a mic: nothing is fed, the mic delivers exact zeros."""
    echo: Echo | None = None


@dataclass(frozen=True)
class EchoMeasurement:
    """Echo path measured from outside: speaker monitor and mic recorded by one sox."""

    delay_ms: float
    attenuation_db: float


class PulseScene:
    """A running private PulseAudio server with a scene's devices; stop() ends all of it."""

    def __init__(self, spec: SceneSpec, workdir: Path, *, remove_workdir: bool = False) -> None:
        self.spec = spec
        self.name = spec.name
        self.workdir = workdir
        self.truth = GroundTruth.of(spec.name, spec.signal, spec.mic is not None, spec.echo)
        self.speaker: str = spec.speaker.name
        """Sink name of the speaker (also the default sink)."""
        self.mic: str | None = spec.mic.name if spec.mic else None
        """Source name of the mic (also the default source); None for no-input."""
        self.socket = workdir / "runtime" / "native"
        if len(str(self.socket)) > 100:  # sun_path holds 108 bytes
            raise TestbedError(
                f"scene {spec.name}: socket path too long for AF_UNIX, use a shorter workdir (got {self.socket})"
            )
        self._remove_workdir = remove_workdir
        self.env: dict[str, str] = _client_env(workdir, self.socket)
        self._procs: list[Process] = []
        self._server: Process | None = None

    # -- life cycle ---------------------------------------------------------

    def start(self) -> PulseScene:
        """Start the server, load the devices, start feeders; on failure stop what started."""
        try:
            self._start_server()
            self._load_devices()
        except BaseException:
            self.stop()
            raise
        log.info("scene %s up: pulseaudio pid %d at %s", self.name, self.pid, self.socket)
        return self

    def stop(self) -> None:
        """Stop helpers first (so they don't log the server's death), then the server."""
        errors: list[str] = []
        for proc in reversed(self._procs):
            try:
                proc.stop()
            except OSError as exc:
                errors.append(f"{proc.name}: {exc}")
        self._procs.clear()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise TestbedError(f"scene {self.name}: could not stop " + "; ".join(errors))

    def __enter__(self) -> PulseScene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self._server is None:
            raise TestbedError(f"scene {self.name} is not running")
        return self._server.pid

    def _start_server(self) -> None:
        pulseaudio = require("pulseaudio")
        require("pactl")
        for sub in ("runtime", "state", "home", "config/pulse", "tmp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        (self.workdir / "runtime").chmod(0o700)
        # Daemon defaults match the devices, so clients that ask nothing get 48 kHz mono float.
        (self.workdir / "config/pulse/daemon.conf").write_text(
            f"default-sample-format = float32le\ndefault-sample-rate = {SAMPLERATE}\n"
            "alternate-sample-rate = 48000\ndefault-sample-channels = 1\n"
            "default-channel-map = mono\nflat-volumes = no\n"
        )
        server_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.workdir / "home"),
            "XDG_CONFIG_HOME": str(self.workdir / "config"),
            "XDG_RUNTIME_DIR": str(self.workdir / "runtime"),
            "PULSE_RUNTIME_PATH": str(self.workdir / "runtime"),
            "PULSE_STATE_PATH": str(self.workdir / "state"),
            "PULSE_CONFIG": str(self.workdir / "config/pulse/daemon.conf"),
        }
        argv = [
            pulseaudio,
            "--daemonize=no",
            "-n",  # no default.pa: only what is loaded below exists
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--use-pid-file=no",
            "--system=no",  # root would otherwise be nagged into system mode
            "--log-target=stderr",
            "--log-level=info",
            f"--load=module-native-protocol-unix socket={self.socket} auth-anonymous=1",
        ]
        self._server = Process(f"pulseaudio[{self.name}]", argv, self.workdir / "pulseaudio.log", env=server_env)
        self._server.wait_until(self._answers, _START_TIMEOUT_S, "answer on " + str(self.socket))

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        return _run(["pactl", "info"], self.env, check=False).returncode == 0

    def _load_devices(self) -> None:
        spec = self.spec
        self.load_module(
            "module-null-sink",
            f"sink_name={spec.speaker.name}",
            "norewinds=1",
            *_FORMAT,
            f"sink_properties={spec.speaker.properties()}",
        )
        self.pactl("set-default-sink", spec.speaker.name)
        if spec.mic is None:
            # PulseAudio made the speaker's monitor the default source; say so explicitly.
            self.pactl("set-default-source", f"{spec.speaker.name}.monitor")
            return
        self.load_module(
            "module-null-sink",
            f"sink_name={FEED_SINK}",
            "norewinds=1",
            *_FORMAT,
            "sink_properties=\"device.description='Test bed mic feed (not a device)' device.class=abstract\"",
        )
        self.load_module(
            "module-remap-source",
            f"master={FEED_SINK}.monitor",
            f"source_name={spec.mic.name}",
            *_FORMAT,
            f"source_properties={spec.mic.properties()}",
        )
        self.pactl("set-default-source", spec.mic.name)
        if spec.signal is not None:
            self._start_feeder()
        if spec.echo is not None:
            self._load_echo(spec.echo)

    def _start_feeder(self) -> None:
        assert self.spec.signal is not None
        raw = self.workdir / "mic_signal.f32"
        self.spec.signal.render().tofile(raw)
        sox = require("sox")
        argv = [sox, "-q", "--temp", str(self.workdir / "tmp"), *_SOX_RAW, str(raw)]
        argv += ["-t", "alsa", "-e", "signed", "-b", "32", f"pulse:{FEED_SINK}", "repeat", "-"]
        feeder = self._spawn("mic-feeder", argv)
        self._wait_for_stream("sink-inputs", _stream_of(feeder))

    def _load_echo(self, echo: Echo) -> None:
        assert self.mic is not None
        module = self.load_module(
            "module-loopback",
            f"source={self.speaker}.monitor",
            f"sink={FEED_SINK}",
            f"latency_msec={echo.delay_ms:g}",
            "source_dont_move=1",
            "sink_dont_move=1",
            "sink_input_properties=media.name=testbed-echo-path",
        )
        index = self._wait_for_stream("sink-inputs", lambda s: str(s.get("owner_module")) == str(module))
        # A linear factor, not "-10dB": pactl would take the minus sign for an option.
        self.pactl("set-sink-input-volume", str(index), f"{10 ** (-echo.attenuation_db / 20):.9f}")
        # NOTES.md: without always-connected low-latency streams on both ends the
        # null sinks change block size whenever a client connects and the loopback
        # re-buffers, so the delay wanders by tens of ms.
        pacat = require("pacat")
        common = ["--raw", "--latency-msec=10", "--format=float32le", f"--rate={SAMPLERATE}", "--channels=1"]
        play = [pacat, "--playback", *common, f"--device={self.speaker}", "/dev/zero"]
        record = [pacat, "--record", *common, f"--device={self.mic}", "/dev/null"]
        self._wait_for_stream("sink-inputs", _stream_of(self._spawn("keepalive-play", play)))
        self._wait_for_stream("source-outputs", _stream_of(self._spawn("keepalive-record", record)))
        self._wait_echo_settled(index, echo)

    def _wait_echo_settled(self, index: int, echo: Echo) -> None:
        """Wait until module-loopback holds its target latency (PulseAudio's own figure).

        Right after loading, the loopback is still filling its buffer: an echo
        measured then came out 20 ms short.  Its own latency report is good
        enough to tell when it has settled (never used as a measurement).
        """
        deadline = time.monotonic() + _START_TIMEOUT_S
        in_range = 0
        latency_ms = math.nan
        while time.monotonic() < deadline:
            stream = next((s for s in self.pactl_list("sink-inputs") if s["index"] == index), None)
            if stream is None:
                raise TestbedError(f"scene {self.name}: the echo loopback's sink input #{index} vanished")
            latency_ms = (stream["buffer_latency_usec"] + stream["sink_latency_usec"]) / 1000
            in_range = in_range + 1 if abs(latency_ms - echo.delay_ms) <= 0.1 * echo.delay_ms else 0
            if in_range >= 3:
                return
            time.sleep(0.1)
        raise TestbedError(
            f"scene {self.name}: echo loopback did not settle near {echo.delay_ms:g} ms (last {latency_ms:.1f} ms)"
        )

    def _spawn(self, what: str, argv: Sequence[str]) -> Process:
        proc = Process(f"{what}[{self.name}]", argv, self.workdir / f"{what}.log", env=self.env)
        self._procs.append(proc)
        return proc

    def _wait_for_stream(self, kind: str, match: Callable[[Mapping[str, Any]], bool]) -> int:
        """Wait until a sink input/source output matching ``match`` exists; return its index."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            for proc in self._procs:
                if not proc.alive():
                    raise proc.fail(f"exited with code {proc.popen.returncode} while scene {self.name} started")
            for stream in self.pactl_list(kind):
                if match(stream):
                    return int(stream["index"])
            time.sleep(0.05)
        present = [s.get("properties", {}).get("application.name") for s in self.pactl_list(kind)]
        raise TestbedError(
            f"scene {self.name}: expected stream not among {kind} within {_START_TIMEOUT_S:.0f} s: {present}"
        )

    # -- control ------------------------------------------------------------

    def pactl(self, *args: str) -> str:
        """Run pactl against this server; fail with the server's last log lines."""
        result = _run(["pactl", *args], self.env, check=False)
        if result.returncode != 0:
            tail = self._server.log_tail(8) if self._server else ""
            raise TestbedError(f"scene {self.name}: pactl {' '.join(args)} failed: {result.stderr.strip()}\n{tail}")
        return result.stdout

    def load_module(self, module: str, *args: str) -> int:
        return int(self.pactl("load-module", module, *args).strip())

    def pactl_list(self, kind: str) -> list[dict[str, Any]]:
        """``pactl -f json list <kind>`` (sinks, sources, sink-inputs, source-outputs, modules)."""
        return list(json.loads(self.pactl("-f", "json", "list", kind)))

    def capture_sources(self) -> list[str]:
        """Names of sources that are not monitors: what a client would call microphones.

        A monitor has ``device.class=monitor``; pactl's JSON also names its
        sink in ``monitor_source`` (sic), which is empty for real sources.
        """
        return [s["name"] for s in self.pactl_list("sources") if not _is_monitor(s)]

    def default_source(self) -> str:
        return str(json.loads(self.pactl("-f", "json", "info"))["default_source_name"])

    def measure_echo(self, seconds: float = 1.5, burst_dbfs: float = -16.0) -> EchoMeasurement:
        """Measure speaker-to-mic delay and loss independently of PulseAudio's own figures.

        Plays a 0.5 s burst of 300-3400 Hz noise into the speaker while ONE
        sox process records the speaker's monitor and the mic (``sox -M``);
        the delay is the cross-correlation peak (parabolic interpolation),
        the loss the power ratio over the burst.  Two recorders in one
        process still start up to 5 ms apart (recording the same monitor
        twice gave offsets of 0, 1.3, 2.5 and 5 ms), so a single reading
        is good to about +-5 ms; separate recorder processes would be worse.
        """
        if self.mic is None:
            raise TestbedError(f"scene {self.name} has no mic: no echo to measure")
        sox = require("sox")
        burst = _band_noise(round(0.5 * SAMPLERATE), (300.0, 3400.0), burst_dbfs, seed=7).astype(np.float32)
        if np.abs(burst).max() >= 1.0:  # noise peaks ~12 dB over its RMS
            raise TestbedError(f"scene {self.name}: echo burst would clip, lower burst_dbfs (got {burst_dbfs})")
        burst_path = self.workdir / "echo_burst.f32"
        burst.tofile(burst_path)
        out = self.workdir / "echo_capture.f32"
        rec_argv = [sox, "-q", "-M"]
        for source in (f"{self.speaker}.monitor", self.mic):
            rec_argv += ["-t", "alsa", "-r", str(SAMPLERATE), "-c", "1", f"pulse:{source}"]
        rec_argv += ["-t", "raw", "-e", "floating-point", "-b", "32", str(out), "trim", "0", f"{seconds:g}"]
        play_argv = [sox, "-q", *_SOX_RAW, str(burst_path), "-t", "alsa", "-e", "signed", "-b", "32"]
        play_argv.append(f"pulse:{self.speaker}")
        recorder = subprocess.Popen(rec_argv, env=self.env, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)  # let the recorder run before the burst starts
            _run(play_argv, self.env, check=True, timeout=seconds + 5)
            _, err = recorder.communicate(timeout=seconds + 5)
        finally:
            if recorder.poll() is None:
                recorder.kill()
                recorder.wait()
        if recorder.returncode != 0:
            raise TestbedError(f"scene {self.name}: sox recorder exited {recorder.returncode}: {err.strip()}")
        both = np.fromfile(out, dtype=np.float32).reshape(-1, 2).astype(np.float64)
        return _echo_from(both[:, 0], both[:, 1], self.name)

    def measure_echo_delay_ms(self) -> float:
        """Real speaker-to-mic delay in ms (see :meth:`measure_echo`)."""
        return self.measure_echo().delay_ms

    def __repr__(self) -> str:
        return f"PulseScene({self.name!r}, socket={str(self.socket)!r})"


_FORMAT = (f"rate={SAMPLERATE}", "channels=1", "format=float32le", "channel_map=mono")
_SOX_RAW = ("-t", "raw", "-e", "floating-point", "-b", "32", "-r", str(SAMPLERATE), "-c", "1")


def _stream_of(proc: Process) -> Callable[[Mapping[str, Any]], bool]:
    """Match the stream a child opened (libpulse tags every client with its PID)."""
    return lambda stream: stream.get("properties", {}).get("application.process.id") == str(proc.pid)


def _is_monitor(source: Mapping[str, Any]) -> bool:
    return bool(source.get("monitor_source")) or source.get("properties", {}).get("device.class") == "monitor"


def _echo_from(reference: np.ndarray, mic: np.ndarray, scene: str) -> EchoMeasurement:
    """Delay (cross-correlation peak) and loss (power ratio) of ``mic`` against ``reference``."""
    active = np.abs(reference) > 1e-4
    if not active.any():
        raise TestbedError(f"scene {scene}: the burst never reached the speaker monitor")
    n = 1 << (2 * len(reference) - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(mic, n) * np.conj(np.fft.rfft(reference, n)), n)
    max_lag = len(reference) // 2
    lags = np.concatenate([corr[:max_lag], corr[-max_lag:]])  # lag 0..max, then -max..-1
    peak = int(np.argmax(np.abs(lags)))
    lag = peak if peak < max_lag else peak - 2 * max_lag
    # Parabolic interpolation around the peak for sub-sample resolution.
    y0, y1, y2 = (abs(corr[(lag + k) % n]) for k in (-1, 0, 1))
    denom = y0 - 2 * y1 + y2
    frac = 0.5 * (y0 - y2) / denom if denom else 0.0
    delay_samples = lag + frac
    first, last = np.flatnonzero(active)[[0, -1]]
    shift = round(delay_samples)
    if last + shift >= len(mic) or first + shift < 0:
        raise TestbedError(f"scene {scene}: echo at {delay_samples / SAMPLERATE * 1e3:.1f} ms fell outside the capture")
    ref_power = float(np.mean(reference[first:last] ** 2))
    echo_power = float(np.mean(mic[first + shift : last + shift] ** 2))
    return EchoMeasurement(
        delay_ms=delay_samples * 1000 / SAMPLERATE,
        attenuation_db=10 * math.log10(ref_power / echo_power) if echo_power > 0 else math.inf,
    )


def _client_env(workdir: Path, socket: Path) -> dict[str, str]:
    """Environment for a client of this scene and of no other PulseAudio.

    Inherited ``PULSE_*`` variables are dropped (a stray ``PULSE_SINK`` would
    redirect streams); the client.conf turns autospawn off so a client that
    loses the server fails instead of starting another one; the cookie file
    lives in the workdir so nothing is written to the caller's home.
    """
    client_conf = workdir / "client.conf"
    client_conf.parent.mkdir(parents=True, exist_ok=True)
    client_conf.write_text(f"default-server = unix:{socket}\nautospawn = no\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env.update(
        PULSE_SERVER=f"unix:{socket}",
        PULSE_CLIENTCONFIG=str(client_conf),
        PULSE_COOKIE=str(workdir / "cookie"),
        PULSE_RUNTIME_PATH=str(workdir / "runtime"),
    )
    return env


def _run(
    argv: Sequence[str], env: Mapping[str, str], *, check: bool, timeout: float = 10.0
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result


# -- scenes ---------------------------------------------------------------------


def _start(spec: SceneSpec, workdir: Path | None) -> PulseScene:
    if workdir is None:  # a private temp dir, removed again by stop()
        return PulseScene(spec, Path(tempfile.mkdtemp(prefix=f"pulse-{spec.name}-")), remove_workdir=True).start()
    return PulseScene(spec, workdir).start()


def headset(
    workdir: Path | None = None,
    *,
    tone_hz: float = 1000.0,
    level_dbfs: float = -20.0,
    on_s: float | None = 0.5,
    noise_dbfs: float | None = -70.0,
) -> PulseScene:
    """USB headset: the mic carries talk-spurt-like tone bursts (``level_dbfs`` RMS while on, ``on_s`` of every
    second) over a quiet noise floor; no speaker-to-mic leak. ``on_s=None`` gives a steady tone."""
    signal = MicSignal(tone_hz=tone_hz, tone_dbfs=level_dbfs, on_s=on_s, noise_dbfs=noise_dbfs)
    return _start(SceneSpec("headset", USB_HEADSET_SPEAKER, USB_HEADSET_MIC, signal), workdir)


def laptop_echo(
    workdir: Path | None = None,
    *,
    delay_ms: float = 100.0,
    attenuation_db: float = 10.0,
    noise_dbfs: float = -60.0,
) -> PulseScene:
    """Laptop speakers leaking into the built-in mic, plus a low noise floor.

    The nominal delay is module-loopback's target latency; PulseAudio's
    buffering moves the real one (92-103 ms measured for 100 ms), so compare
    probes against :meth:`PulseScene.measure_echo`, not the nominal.  The
    mic's ``level_dbfs`` ground truth is the noise alone, without echo.
    """
    spec = SceneSpec(
        "laptop-echo", BUILTIN_SPEAKER, BUILTIN_MIC, MicSignal(noise_dbfs=noise_dbfs), Echo(delay_ms, attenuation_db)
    )
    return _start(spec, workdir)


def dead_mic(workdir: Path | None = None) -> PulseScene:
    """USB headset whose mic delivers digital silence: nothing feeds it, it reads exact zeros."""
    return _start(SceneSpec("dead-mic", USB_HEADSET_SPEAKER, USB_HEADSET_MIC, None), workdir)


def noisy(
    workdir: Path | None = None,
    *,
    noise_dbfs: float = -40.0,
    band_hz: tuple[float, float] = (300.0, 3400.0),
    tone_hz: float | None = None,
    tone_dbfs: float | None = None,
) -> PulseScene:
    """Built-in mic with a high noise floor: flat noise confined to ``band_hz`` (optionally a tone on top)."""
    signal = MicSignal(tone_hz=tone_hz, tone_dbfs=tone_dbfs, noise_dbfs=noise_dbfs, noise_band_hz=band_hz)
    return _start(SceneSpec("noisy", BUILTIN_SPEAKER, BUILTIN_MIC, signal), workdir)


def clipping(
    workdir: Path | None = None, *, tone_hz: float = 440.0, clipped_fraction: float = 0.2, on_s: float | None = 0.5
) -> PulseScene:
    """USB headset with the mic gain far too high: sine bursts (``on_s`` of every second) flattened at +-1.0
    for ``clipped_fraction`` of their samples; the ground truth counts the whole loop."""
    signal = MicSignal(tone_hz=tone_hz, clip_fraction=clipped_fraction, on_s=on_s)
    return _start(SceneSpec("clipping", USB_HEADSET_SPEAKER, USB_HEADSET_MIC, signal), workdir)


def no_input(workdir: Path | None = None) -> PulseScene:
    """Speakers only, no microphone.

    PulseAudio always gives each sink a monitor source, so "no capture
    device" means: every source is a monitor.  A client tells by
    ``pa_source_info.monitor_of_sink != PA_INVALID_INDEX`` (pactl JSON:
    non-empty ``monitor_source``; property ``device.class=monitor``).
    PulseAudio makes the speaker's monitor the default source, and the
    scene sets it explicitly, so ALSA ``pulse``/``default`` capture and
    PortAudio "work" but record what is played to the speaker, i.e. silence.
    """
    return _start(SceneSpec("no-input", BUILTIN_SPEAKER, None, None), workdir)


SceneParam = float | tuple[float, float] | None
"""Type of a scene function's keyword parameters (levels, frequencies, bands)."""

SCENES: dict[str, Callable[..., PulseScene]] = {
    "headset": headset,
    "laptop-echo": laptop_echo,
    "dead-mic": dead_mic,
    "noisy": noisy,
    "clipping": clipping,
    "no-input": no_input,
}


def start_scene(name: str, workdir: Path | None = None, **params: SceneParam) -> PulseScene:
    """Start scene ``name`` (a key of ``SCENES``) with the scene function's keyword parameters."""
    try:
        factory = SCENES[name]
    except KeyError:
        raise TestbedError(f"unknown scene {name!r}; known: {', '.join(SCENES)}") from None
    return factory(workdir, **params)


def run_in_scene(name: str, argv: Sequence[str], workdir: Path | None = None, **params: SceneParam) -> int:
    """Start a scene, run ``argv`` with its environment, stop the scene; return the exit code."""
    with start_scene(name, workdir, **params) as scene:
        return subprocess.run(list(argv), env=scene.env, check=False).returncode


# -- sounddevice in this process --------------------------------------------------


@contextlib.contextmanager
def sounddevice_in(scene: PulseScene) -> Iterator[ModuleType]:
    """Point this process's PortAudio at ``scene`` and yield the ``sounddevice`` module.

    Sets the scene's ``PULSE_*`` variables in ``os.environ`` (libpulse inside
    ALSA's pulse plugin reads them whenever a stream opens) and re-initializes
    PortAudio, which re-reads ALSA's configuration (whether ``default`` is
    PulseAudio is decided there) and re-enumerates devices.  Verified: after
    ``import sounddevice`` with no server reachable PortAudio lists no device
    at all; after this it lists ``pulse`` and ``default``.  The previous
    variables come back on exit; PortAudio stays pointed at the scene until
    the next call.  Not thread-safe: one scene at a time per process.
    """
    ours = {k: v for k, v in scene.env.items() if k.startswith("PULSE_")}
    saved = {k: v for k, v in os.environ.items() if k.startswith("PULSE_")}
    for k in saved:
        del os.environ[k]
    os.environ.update(ours)
    try:
        import sounddevice as sd

        sd._terminate()
        sd._initialize()
        yield sd
    finally:
        for k in ours:
            os.environ.pop(k, None)
        os.environ.update(saved)


# -- pytest fixtures ------------------------------------------------------------------


@dataclass
class SceneFactory:
    """Starts scenes for tests under one directory and stops every one of them at teardown.

    A scene asked for by name alone is started once and shared (the per-scene
    fixtures and ``pulse_scene`` get the same server); one with parameters
    is always a new server.  All live until :meth:`stop_all`.
    """

    root: Path
    started: list[PulseScene] = field(default_factory=list)
    shared: dict[str, PulseScene] = field(default_factory=dict)

    def __call__(self, name: str, **params: SceneParam) -> PulseScene:
        if not params and name in self.shared:
            return self.shared[name]
        workdir = self.root / f"{name}-{len(self.started)}"
        try:
            scene = start_scene(name, workdir, **params)
        except TestbedError as exc:
            pytest.fail(f"PulseAudio scene {name!r} could not start: {exc}", pytrace=False)
        self.started.append(scene)
        if not params:
            self.shared[name] = scene
        return scene

    def stop_all(self) -> None:
        """Stop every scene, even when one of them fails to stop; then report the failures."""
        errors: list[str] = []
        while self.started:
            scene = self.started.pop()
            try:
                scene.stop()
            except TestbedError as exc:
                errors.append(str(exc))
        self.shared.clear()
        if errors:
            raise TestbedError("; ".join(errors))


@pytest.fixture(scope="session")
def pulse_scenes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SceneFactory]:
    """Factory: ``pulse_scenes("noisy", noise_dbfs=-30)`` starts a scene stopped at session end."""
    factory = SceneFactory(tmp_path_factory.mktemp("pulse"))
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def pulse_scene(request: pytest.FixtureRequest, pulse_scenes: SceneFactory) -> PulseScene:
    """One scene named by indirect parametrization.

    ``@pytest.mark.parametrize("pulse_scene", ["headset", "noisy"], indirect=True)``
    """
    name = getattr(request, "param", None)
    if not isinstance(name, str):
        pytest.fail("pulse_scene needs a scene name via indirect parametrization", pytrace=False)
    return pulse_scenes(name)


@pytest.fixture(scope="session")
def headset_scene(pulse_scenes: SceneFactory) -> PulseScene:
    """USB headset, mic carries 1 kHz bursts (0.5 s of every second) at -20 dBFS RMS over -70 dBFS noise."""
    return pulse_scenes("headset")


@pytest.fixture(scope="session")
def laptop_echo_scene(pulse_scenes: SceneFactory) -> PulseScene:
    """Built-in speaker leaking into the mic: nominal 100 ms, -10 dB; mic noise -60 dBFS."""
    return pulse_scenes("laptop-echo")


@pytest.fixture(scope="session")
def dead_mic_scene(pulse_scenes: SceneFactory) -> PulseScene:
    """USB headset whose mic delivers exact zeros."""
    return pulse_scenes("dead-mic")


@pytest.fixture(scope="session")
def noisy_scene(pulse_scenes: SceneFactory) -> PulseScene:
    """Built-in mic with 300-3400 Hz noise at -40 dBFS RMS."""
    return pulse_scenes("noisy")


@pytest.fixture(scope="session")
def clipping_scene(pulse_scenes: SceneFactory) -> PulseScene:
    """USB headset mic with 440 Hz bursts (0.5 s of every second) clipped at +-1.0 for 20 % of their samples."""
    return pulse_scenes("clipping")


@pytest.fixture(scope="session")
def no_input_scene(pulse_scenes: SceneFactory) -> PulseScene:
    """Speaker only: every source is a monitor."""
    return pulse_scenes("no-input")


# -- command line -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.testbed.pulse SCENE [--workdir DIR] [--measure-echo [N]] [-- CMD ARGS...]``.

    Runs CMD with the scene's environment, or measures the echo path, or
    (neither given) holds the scene until Ctrl-C / SIGTERM so other shells
    can use the ``PULSE_SERVER`` printed on stderr.  Exit codes: the
    command's own; 0 otherwise; 2 if CMD cannot be run; 3 if the scene
    could not start (environment error).
    """
    args_in = list(sys.argv[1:] if argv is None else argv)
    split = args_in.index("--") if "--" in args_in else len(args_in)
    own, command = args_in[:split], args_in[split + 1 :]
    parser = argparse.ArgumentParser(prog="python -m tests.testbed.pulse", description=__doc__.splitlines()[0])
    parser.add_argument("scene", choices=list(SCENES))
    parser.add_argument("--workdir", type=Path, help="keep the server's files here (default: a new temp dir)")
    parser.add_argument(
        "--measure-echo",
        type=int,
        metavar="N",
        nargs="?",
        const=5,
        default=0,
        help="measure the echo path N times (default 5) and print delay and loss",
    )
    args = parser.parse_args(own)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        with start_scene(args.scene, args.workdir) as scene:
            info = {
                "scene": scene.name,
                "speaker": scene.speaker,
                "mic": scene.mic,
                "env": {k: v for k, v in scene.env.items() if k.startswith("PULSE_")},
                "truth": _jsonable(scene.truth),
            }
            print(json.dumps(info, indent=2), file=sys.stderr)
            for _ in range(args.measure_echo):
                m = scene.measure_echo()
                print(f"echo delay {m.delay_ms:.2f} ms, attenuation {m.attenuation_db:.2f} dB")
            if command:
                return subprocess.run(command, env=scene.env, check=False).returncode
            if not args.measure_echo:
                _hold_until_signalled()
            return 0
    except TestbedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:  # the command itself could not be started
        print(f"error: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        return 2


def _hold_until_signalled() -> None:
    """Block until Ctrl-C or SIGTERM, returning normally so the scene is stopped."""
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    print("scene running; Ctrl-C stops it", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()


def _jsonable(truth: GroundTruth) -> dict[str, Any]:
    """Ground truth as strict JSON: the enum by value, -inf dBFS (silence) as null."""
    out = asdict(truth)
    out["signal"] = truth.signal.value
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in out.items()}


if __name__ == "__main__":
    sys.exit(main())
