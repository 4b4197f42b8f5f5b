"""The SIP/RTP engine on pjsua2: the only module in phonekit that imports ``pjsua2``.

pjsua2 runs with no worker threads (``threadCnt = 0``, ``mainThreadOnly``):
everything that touches it happens in the thread that created the
:class:`Engine`, which drives it with :meth:`Engine.poll`. Only the conference
bridge's clock thread calls into our media ports, and those callbacks only move
samples between preallocated buffers.

The wheel has no sound-device backend, so the engine runs on pjsua2's null
device and audio enters and leaves through Python ports: :class:`DevicePort`
(the sound devices, through ``phone.bridge``), :class:`BufferPort` (files and
probes), :class:`LoopPort` (the echo service).

Lifecycle: no pjsua2 object may be freed by Python after ``libDestroy()`` (its
destructor asserts and aborts the process), and no media port may be freed while
the library runs (the conference clock calls every port each 20 ms, also while
its destructor, which releases the GIL, unregisters it). So :meth:`Engine.close`
hangs up, hands every call and port still known to pjsua2 (``__disown__``: their
C++ side is never destroyed), shuts the accounts down, collects garbage, destroys
the library and drops the Endpoint. On an outgoing call the port joins once it is
confirmed, so that no Python callback runs between the far end's 200 OK and our ACK.

Statistics: :meth:`Engine.call` samples the audio stream's RTP/RTCP statistics
(:class:`StreamStats`) at every poll and returns them with the outcome. Two
pjsua2 2.15 quirks shape that code: ``RtcpStreamStat.reorder`` holds the loss
count (the reorder count is read from the call dump instead), and inbound loss
is only exact right after an in-order packet (see :meth:`Call.sample_stats`).

pjsua2's log goes to Python logging (``phone.engine.pjsua2``), never to stdout.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pjsua2 as pj

from diagnostics.errors import MeasurementError
from diagnostics.profile import Transport
from diagnostics.secret import Secret

__all__ = [
    "SRTP_MODES",
    "Account",
    "BufferPort",
    "Call",
    "CallEvent",
    "CallOutcome",
    "DevicePort",
    "Engine",
    "EngineConfig",
    "FrameIO",
    "LoopPort",
    "RegisterOutcome",
    "SipAccount",
    "StreamStats",
    "Transport",
]

log = logging.getLogger(__name__)
pjsua_log = logging.getLogger(f"{__name__}.pjsua2")

# pjsua2's log levels (1 error … 6 trace) as Python's.
_PJ_LEVELS = {0: logging.CRITICAL, 1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO}


class _LogWriter(pj.LogWriter):  # type: ignore[misc]
    """pjsua2's log into Python logging (stderr), never onto stdout, where ``--json`` output goes."""

    def write(self, entry: pj.LogEntry) -> None:
        pjsua_log.log(_PJ_LEVELS.get(int(entry.level), logging.DEBUG), "%s", str(entry.msg).rstrip())


@contextlib.contextmanager
def _stdout_elsewhere() -> Iterator[None]:
    """Point file descriptor 1 away from stdout for a moment: pjlib prints its first lines (in
    ``libCreate``) before any log configuration applies. They go to stderr when pjsua2 debug
    logging is on, else nowhere."""
    sys.stdout.flush()
    saved = os.dup(1)
    target = os.open(os.devnull, os.O_WRONLY) if not pjsua_log.isEnabledFor(logging.DEBUG) else os.dup(2)
    try:
        os.dup2(target, 1)
        yield
    finally:
        os.close(target)
        ctypes.CDLL(None).fflush(None)  # C stdio buffers, before fd 1 points back at stdout
        os.dup2(saved, 1)
        os.close(saved)

FRAME_USEC = 20_000
"""One packet of audio: 20 ms, the usual RTP packetisation."""
SETTLE_S = 0.3
"""At the end of a call, how long to wait for statistics taken right after an in-order packet."""


SRTP_MODES = ("disabled", "optional", "mandatory")
"""How a call uses SRTP (RFC 3711, keys by SDES RFC 4568): not at all, when the far end offers/accepts it, always."""
_PJ_SRTP = {
    "disabled": pj.PJMEDIA_SRTP_DISABLED,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "mandatory": pj.PJMEDIA_SRTP_MANDATORY,
}

_PJ_TRANSPORT = {
    Transport.UDP: pj.PJSIP_TRANSPORT_UDP,
    Transport.TCP: pj.PJSIP_TRANSPORT_TCP,
    Transport.TLS: pj.PJSIP_TRANSPORT_TLS,
}


@dataclass(frozen=True)
class EngineConfig:
    transports: tuple[Transport, ...] = (Transport.UDP,)
    bound_address: str = ""
    """Address to bind SIP and RTP to; empty means every interface."""
    sip_port: int = 0
    """0 picks a free port (per transport)."""
    tls_ca_file: Path | None = None
    """CA list for verifying the server's certificate; None uses the system store."""
    tls_verify_server: bool = True
    clock_rate_hz: int = 16000
    """Conference bridge rate: wideband, so G.722 is not squeezed through 8 kHz."""
    log_level: int = 1
    """pjsua2 log level (1 errors … 6 everything), logged through ``phone.engine.pjsua2``."""
    user_agent: str = "phonekit"
    rtp_ports: tuple[int, int] | None = None
    """First and last local RTP port (RTCP takes the port above each RTP port); None: pjsua2's
    default (from 4000 up, no limit). Each call's media transport takes a pair in this range."""
    codecs: tuple[str, ...] = ()
    """Codecs in order of preference, as pjsua2 names them or a prefix (``PCMU``, ``G722/16000``,
    ``speex/8000``); empty keeps pjsua2's own priorities."""
    only_listed_codecs: bool = False
    """Disable every codec not in ``codecs`` (else they stay available below the listed ones)."""
    vad: bool = False
    """Voice activity detection (on in pjsua2 by default). Off here: it clips speech onsets (PESQ 0.25
    lower with it on, bench/call_pesq.py) and sends nothing during silence, which starves RTCP."""
    srtp: str = "disabled"
    """One of :data:`SRTP_MODES`. SDES keys travel in the SDP, so they are only secret over TLS:
    with TLS the engine requires a secure signalling path for SRTP, without it SRTP still works
    (and a warning says that the keys are readable on the wire)."""

    def __post_init__(self) -> None:
        if self.srtp not in SRTP_MODES:
            raise ValueError(f"srtp must be one of {', '.join(SRTP_MODES)} (got {self.srtp!r})")
        if self.rtp_ports is not None:
            first, last = self.rtp_ports
            if not (1024 <= first < last <= 65535):
                raise ValueError(f"rtp_ports must be (first, last) with 1024 <= first < last <= 65535 "
                                 f"(got {self.rtp_ports!r})")  # fmt: skip
        if self.only_listed_codecs and not self.codecs:
            raise ValueError("only_listed_codecs needs at least one codec in 'codecs' (got none)")


@dataclass(frozen=True)
class SipAccount:
    """The SIP identity to register and call with."""

    user: str
    domain: str
    registrar: str
    """``host`` or ``host:port`` of the registrar/proxy."""
    password: Secret = field(repr=False)
    transport: Transport = Transport.UDP
    auth_user: str | None = None
    display_name: str = ""

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    def server_uri(self) -> str:
        return f"sip:{self.registrar};transport={self.transport.value}"


@dataclass(frozen=True)
class RegisterOutcome:
    code: int
    """Final SIP status of the REGISTER (200 on success; 408 when nothing answered)."""
    reason: str
    duration_ms: float

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


@dataclass(frozen=True)
class StreamStats:
    """RTP/RTCP statistics of a call's audio stream at one moment (pjsua2's ``getStreamStat``).

    ``rx_*``: what this end received, measured here (RFC 3550 receiver
    statistics). ``tx_*``: what the far end received from us, as its last RTCP
    receiver report said (None until one arrived).
    """

    codec: str
    """Negotiated codec, ``name/clock rate`` (``PCMU/8000``)."""
    codec_clock_rate_hz: int
    local_rtp: str
    """Local RTP address ``ip:port`` of the media transport."""
    remote_rtp: str
    """Where RTP is sent (the far end's SDP address)."""
    rx_source_rtp: str
    """Where RTP really comes from (``ip:port`` of the last packet's sender; empty before the first one)."""
    duration_s: float
    """Since the stream started."""
    tx_packets: int
    """RTP packets sent."""
    rx_packets: int
    """RTP packets received (including duplicates)."""
    rx_lost_packets: int
    """Lost inbound: expected − received, where expected follows the highest sequence number (RFC 3550 A.3)."""
    rx_loss_percent: float
    rx_reordered_packets: int
    """Inbound packets that arrived after a later one (pjmedia's counter, read from pjsua's call dump)."""
    rx_duplicate_packets: int
    rx_discarded_packets: int
    rx_jitter_ms: float | None
    """Interarrival jitter J now (RFC 3550 §6.4.1); None before enough packets (pjmedia skips the first 25).
    pjmedia updates J only for a packet that directly follows the previous one in sequence: when the
    network reorders packets, it reads lower than RFC 3550's J over all packets in arrival order."""
    rx_jitter_mean_ms: float | None
    """Mean of J over the call."""
    rx_jitter_max_ms: float | None
    tx_reports: int
    """RTCP receiver reports received from the far end."""
    tx_lost_packets: int | None
    """Cumulative packets lost on their way to the far end, from its last report."""
    tx_loss_percent: float | None
    """``tx_lost_packets`` over the packets we had sent when that report arrived."""
    tx_jitter_ms: float | None
    """Interarrival jitter the far end measured on our stream, from its last report."""
    rtt_ms: float | None
    """Round-trip time from the last RTCP exchange (RFC 3550 §6.4.1 LSR/DLSR); None before one completed
    (the far end's report must come after our first sender report, ~5 s into a call)."""
    rtt_mean_ms: float | None
    jitter_buffer_delay_ms: float | None
    """Mean delay of the local jitter buffer."""
    jitter_buffer_discarded: int
    """Frames the jitter buffer threw away (too late or overflowing)."""
    jitter_buffer_lost: int
    """Frames the jitter buffer had to conceal."""
    sampled_at_unix_s: float
    """Wall-clock time of this sample."""

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class CallOutcome:
    code: int
    """Final status of the INVITE (200 when answered)."""
    reason: str
    setup_ms: float
    """From sending INVITE to the call being confirmed."""
    received: npt.NDArray[np.int16]
    """Audio that arrived from the far end while the call was up, at the port's rate: sample ``i``
    was heard ``i`` samples after the port started playing ``play`` (gaps are recorded as silence)."""
    sample_rate_hz: int
    stats: StreamStats | None = None
    """The audio stream's statistics shortly before hang-up: the last sample taken right after an
    in-order packet (exact inbound loss, see :meth:`Call.sample_stats`), else the last sample."""

    @property
    def answered(self) -> bool:
        return self.code == 200


def _slow_bytes(buf: Any) -> bytes:
    return bytes(buf)


def _fast_bytes(buf: Any) -> bytes:
    """The bytes of a SWIG ``ByteVector`` read through its data pointer: ~1 µs instead of ~300 µs for a
    20 ms frame (``bytes(buf)`` converts element by element, which alone cost ~17 ms CPU per second of call).
    std::vector's first member is its data pointer in libstdc++, libc++ and MSVC's STL alike; the
    module checks this once at import and falls back to ``bytes(buf)`` if it does not hold."""
    size = buf.size()
    data = ctypes.c_void_p.from_address(int(buf.this)).value
    return ctypes.string_at(data, size) if size and data else b""


def _pick_frame_bytes() -> Callable[[Any], bytes]:
    probe = bytes(range(256)) * 3
    try:
        if _fast_bytes(pj.ByteVector(probe)) == probe:
            return _fast_bytes
    except (TypeError, ValueError, OSError) as exc:
        log.debug("fast ByteVector access unavailable: %s", exc)
    return _slow_bytes


frame_bytes = _pick_frame_bytes()
"""Bytes of a media frame's buffer (see :func:`_fast_bytes`)."""


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def as_int16(samples: npt.NDArray[Any]) -> npt.NDArray[np.int16]:
    """Little-endian int16 from int16 or from float in [−1, 1] (scaled by 32767, clipped)."""
    if np.issubdtype(samples.dtype, np.floating):
        return np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    if samples.dtype != np.int16:
        raise ValueError(f"audio must be int16 or float in [-1, 1] (got {samples.dtype})")
    return np.ascontiguousarray(samples, dtype="<i2")


class BufferPort(pj.AudioMediaPort):  # type: ignore[misc]
    """A conference port that plays a fixed int16 signal and records what it hears.

    Both buffers are allocated up front; the frame callbacks only copy bytes.
    """

    def __init__(self, rate_hz: int, play: npt.NDArray[Any] | None, record_capacity_s: float) -> None:
        super().__init__()
        self.rate_hz = rate_hz
        self.samples_per_frame = rate_hz * FRAME_USEC // 1_000_000
        self._play = as_int16(play if play is not None else np.zeros(0, np.int16))
        self._play_pos = 0
        self._silence = bytes(2 * self.samples_per_frame)
        self._record = np.zeros(int(record_capacity_s * rate_hz), dtype="<i2")
        self._record_pos = 0
        self.frames_received = 0

    def create(self, name: str) -> None:
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, self.rate_hz, 1, FRAME_USEC, 16)
        self.createPort(name, fmt)

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        n = self.samples_per_frame
        chunk = self._play[self._play_pos : self._play_pos + n]
        self._play_pos += len(chunk)
        data = chunk.tobytes() + self._silence[: 2 * (n - len(chunk))]
        frame.buf = pj.ByteVector(data)
        frame.size = len(data)
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        # A frame without audio (nothing to mix yet) still takes its 20 ms: record silence,
        # so that the recording stays aligned in time with what was played.
        if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO:
            self.frames_received += 1
            data = np.frombuffer(frame_bytes(frame.buf), dtype="<i2")
            take = min(len(self._record) - self._record_pos, len(data))
            self._record[self._record_pos : self._record_pos + take] = data[:take]
        else:
            take = min(len(self._record) - self._record_pos, self.samples_per_frame)
            self._record[self._record_pos : self._record_pos + take] = 0
        self._record_pos += take

    def recorded(self) -> npt.NDArray[np.int16]:
        return self._record[: self._record_pos].copy()


class FrameIO(Protocol):
    """Where a :class:`DevicePort` gets and puts audio: one frame (20 ms at the bridge rate) per call.

    Both methods are called from the conference bridge's clock thread, never from the thread that
    drives the engine; they must not call into pjsua2. ``phone.bridge.DeviceBridge`` is one.
    """

    def read_frame(self, out: npt.NDArray[np.int16]) -> None:
        """Fill ``out`` with the next frame to send (the microphone)."""

    def write_frame(self, frame: npt.NDArray[np.int16]) -> None:
        """Take one received frame (for the speaker); ``frame`` is reused after the call returns."""


class DevicePort(pj.AudioMediaPort):  # type: ignore[misc]
    """A conference port whose audio comes from and goes to a :class:`FrameIO` (the sound devices).

    Frames are exchanged through two preallocated int16 arrays; a frame slot with no audio
    (nothing transmits to this port yet) reaches ``write_frame`` as silence.
    """

    def __init__(self, rate_hz: int, io: FrameIO) -> None:
        super().__init__()
        self.rate_hz = rate_hz
        self.io = io
        self.samples_per_frame = rate_hz * FRAME_USEC // 1_000_000
        self._out = np.zeros(self.samples_per_frame, dtype="<i2")
        self._in = np.zeros(self.samples_per_frame, dtype="<i2")

    def create(self, name: str) -> None:
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, self.rate_hz, 1, FRAME_USEC, 16)
        self.createPort(name, fmt)

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        self.io.read_frame(self._out)
        data = self._out.tobytes()
        frame.buf = pj.ByteVector(data)
        frame.size = len(data)
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO and frame.size == 2 * self.samples_per_frame:
            self._in[:] = np.frombuffer(frame_bytes(frame.buf), dtype="<i2")
        else:
            self._in[:] = 0
        self.io.write_frame(self._in)


class LoopPort(pj.AudioMediaPort):  # type: ignore[misc]
    """A conference port that sends back what it hears, one frame later: the echo service's mouth and ear."""

    def __init__(self, rate_hz: int) -> None:
        super().__init__()
        self.rate_hz = rate_hz
        self.samples_per_frame = rate_hz * FRAME_USEC // 1_000_000
        self._last = bytes(2 * self.samples_per_frame)
        self.frames_echoed = 0

    def create(self, name: str) -> None:
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, self.rate_hz, 1, FRAME_USEC, 16)
        self.createPort(name, fmt)

    def reset(self) -> None:
        """Forget the last call's audio before the next call uses this loop."""
        self._last = bytes(len(self._last))
        self.frames_echoed = 0

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        frame.buf = pj.ByteVector(self._last)
        frame.size = len(self._last)
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO and frame.size == len(self._last):
            self._last = frame_bytes(frame.buf)
            self.frames_echoed += 1
        else:
            self._last = bytes(len(self._last))


class Account(pj.Account):  # type: ignore[misc]
    """pjsua2 account that remembers the outcome of its last registration and collects incoming calls."""

    def __init__(self, on_incoming: Callable[[Call], None] | None = None) -> None:
        super().__init__()
        self.reg_code: int | None = None
        self.reg_reason = ""
        self.reg_expires_s = 0
        """Expiry the registrar granted; 0 after unregistering (or before any answer)."""
        self.incoming: list[Call] = []
        self.on_incoming = on_incoming

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.reg_code = int(prm.code)
        self.reg_reason = str(prm.reason)
        self.reg_expires_s = int(prm.expiration)

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        call = Call(self, prm.callId)
        call.incoming = True
        call.remote_uri = str(call.getInfo().remoteUri)
        self.incoming.append(call)
        if self.on_incoming is not None:
            self.on_incoming(call)


# pjsua_dump.c, receive side: "pkt loss=%d (%3.1f%%), discrd=%d (%3.1f%%), dup=%d (%2.1f%%), reord=%d (%3.1f%%)"
_DUMP_REORDER = re.compile(r"discrd=\d+ \([^)]*\), dup=\d+ \([^)]*\), reord=(\d+)")


def _ms(stat: pj.MathStat, field_name: str = "last") -> float | None:
    """A pjmedia MathStat (µs) in ms; None when it holds no sample yet."""
    return float(getattr(stat, field_name)) / 1000.0 if stat.n > 0 else None


_STREAM_UP = (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_LOCAL_HOLD, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD)
"""Media states in which the audio stream exists (and has statistics)."""

# pjsip's invite session states (pjsip_inv_state) as words for events and the phone's status.
_STATE_NAMES = {
    pj.PJSIP_INV_STATE_NULL: "idle",
    pj.PJSIP_INV_STATE_CALLING: "calling",
    pj.PJSIP_INV_STATE_INCOMING: "incoming",
    pj.PJSIP_INV_STATE_EARLY: "ringing",
    pj.PJSIP_INV_STATE_CONNECTING: "connecting",
    pj.PJSIP_INV_STATE_CONFIRMED: "confirmed",
    pj.PJSIP_INV_STATE_DISCONNECTED: "disconnected",
}


@dataclass(frozen=True)
class CallEvent:
    """Something that happened to a call, for the phone to show: ``kind`` is a state name
    (:data:`_STATE_NAMES`), ``hold``/``resumed``/``remote-hold``, ``dtmf`` or ``transfer``."""

    kind: str
    detail: str = ""
    code: int = 0
    at_unix_s: float = field(default_factory=time.time)


class Call(pj.Call):  # type: ignore[misc]
    """One call. Every method runs in the engine's thread (pjsua2 is driven from there only)."""

    def __init__(self, account: Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.state = pj.PJSIP_INV_STATE_NULL
        self.incoming = False
        self.remote_uri = ""
        self.last_code = 0
        self.last_reason = ""
        self.started_at = time.time()
        self.confirmed_at: float | None = None
        self.confirmed_unix_s: float | None = None
        self.disconnected_unix_s: float | None = None
        self.on_media: Callable[[pj.AudioMedia], None] | None = None
        self.on_event: Callable[[Call, CallEvent], None] | None = None
        self.events: list[CallEvent] = []
        self.port: pj.AudioMediaPort | None = None
        self.muted = False
        self.on_hold = False
        """We put the call on hold (a=sendonly sent)."""
        self.remote_hold = False
        """The far end put us on hold."""
        self.dtmf_received = ""
        self.media_pending = False
        """The media changed and :meth:`update_media` has not run yet."""
        self.last_stats: StreamStats | None = None
        self.settled_stats: StreamStats | None = None
        """The last sample taken right after an in-order packet (see :meth:`sample_stats`)."""
        self._tx_reports = 0
        self._tx_packets_at_report = 0
        self._rx_counts = (0, 0)  # (packets, in-sequence packets) at the previous sample

    def audio_index(self) -> int | None:
        """Index of the audio stream (active or on hold either way), or None."""
        info = self.getInfo()  # keep it referenced: its media list points into it (SWIG)
        for index, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status in _STREAM_UP:
                return index
        return None

    def sample_stats(self) -> StreamStats | None:
        """Read the audio stream's statistics now (also kept as :attr:`last_stats`); None without active audio.

        Call it often while the call is up (every 10 ms poll): it also notes how
        many packets we had sent when each RTCP report from the far end arrived,
        which turns the report's cumulative loss into a percentage, and it keeps
        :attr:`settled_stats`. pjmedia recounts inbound loss (expected − received)
        only when an in-order packet arrives, so right after a late (reordered)
        packet its count is too high by the late packets until the next in-order
        one. A sample is exact when every packet since the previous sample came
        in sequence: pjmedia adds a jitter sample for exactly those packets
        (after its first 25), so the jitter sample count grew by as much as the
        packet count.
        """
        try:
            index = self.audio_index()
            if index is None:
                return None
            stat = self.getStreamStat(index)
            info = self.getStreamInfo(index)
            transport = self.getMedTransportInfo(index)
        except pj.Error as exc:  # the stream went away between our calls (far end hung up)
            log.debug("no stream statistics: %s", exc.info())
            return None
        rtcp, rx, tx = stat.rtcp, stat.rtcp.rxStat, stat.rtcp.txStat
        if tx.updateCount > self._tx_reports:
            self._tx_reports = int(tx.updateCount)
            self._tx_packets_at_report = int(tx.pkt)
        now = time.time()
        rx_lost = int(rx.loss)
        reported = self._tx_reports > 0
        tx_lost = int(tx.loss) if reported else None
        jb = stat.jbuf
        previous = self.last_stats
        self.last_stats = StreamStats(
            codec=f"{info.codecName}/{info.codecClockRate}",
            codec_clock_rate_hz=int(info.codecClockRate),
            local_rtp=str(transport.localRtpName),
            remote_rtp=str(info.remoteRtpAddress),
            rx_source_rtp=str(transport.srcRtpName) if int(rx.pkt) else "",
            duration_s=max(0.0, now - (rtcp.start.sec + rtcp.start.msec / 1000.0)),
            tx_packets=int(tx.pkt),
            rx_packets=int(rx.pkt),
            rx_lost_packets=rx_lost,
            rx_loss_percent=100.0 * rx_lost / (rx_lost + rx.pkt) if rx_lost + rx.pkt else 0.0,
            rx_reordered_packets=self._rx_reordered(),
            rx_duplicate_packets=int(rx.dup),
            rx_discarded_packets=int(rx.discard),
            rx_jitter_ms=_ms(rx.jitterUsec),
            rx_jitter_mean_ms=_ms(rx.jitterUsec, "mean"),
            rx_jitter_max_ms=_ms(rx.jitterUsec, "max"),
            tx_reports=self._tx_reports,
            tx_lost_packets=tx_lost,
            tx_loss_percent=(
                100.0 * tx_lost / self._tx_packets_at_report
                if tx_lost is not None and self._tx_packets_at_report
                else None
            ),
            tx_jitter_ms=_ms(tx.jitterUsec) if reported else None,
            rtt_ms=_ms(rtcp.rttUsec),
            rtt_mean_ms=_ms(rtcp.rttUsec, "mean"),
            jitter_buffer_delay_ms=float(jb.avgDelayMsec) if jb.frameSize else None,
            jitter_buffer_discarded=int(jb.discard),
            jitter_buffer_lost=int(jb.lost),
            sampled_at_unix_s=now,
        )
        current = self.last_stats
        counts = (int(rx.pkt), int(rx.jitterUsec.n))
        new_packets, new_in_sequence = counts[0] - self._rx_counts[0], counts[1] - self._rx_counts[1]
        self._rx_counts = counts
        if (
            previous is not None
            and new_packets > 0
            and new_in_sequence == new_packets
            and current.rx_duplicate_packets == previous.rx_duplicate_packets
        ):
            self.settled_stats = current
        return current

    def srtp_active(self) -> bool:
        """Whether the audio stream is encrypted with SRTP now (pjsua's call dump: ``SRTP status: Active``)."""
        return "SRTP status: Active" in str(self.dump(True, ""))

    def _rx_reordered(self) -> int:
        """Inbound packets that arrived out of order, from pjsua's call dump.

        pjsua2 2.15's ``RtcpStreamStat.reorder`` holds the loss count instead
        (``call.cpp``: ``this->reorder = prm.loss``); the dump prints pjmedia's own counter.
        """
        match = _DUMP_REORDER.search(str(self.dump(True, "")))
        return int(match.group(1)) if match else 0

    def _event(self, kind: str, detail: str = "", code: int = 0) -> None:
        event = CallEvent(kind, detail, code)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(self, event)

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        self.state = info.state
        self.last_code = int(info.lastStatusCode)
        self.last_reason = str(info.lastReason)
        self.remote_uri = str(info.remoteUri)
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.perf_counter()
            self.confirmed_unix_s = time.time()
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected_unix_s = time.time()
        self._event(_STATE_NAMES.get(info.state, str(info.state)), self.last_reason, self.last_code)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        # Only note it: this callback runs between the far end's 200 OK and our ACK, so every
        # microsecond here delays call setup. The engine connects the audio after this round of
        # events (Engine.poll), ~10 ms later at most.
        self.media_pending = True

    def update_media(self) -> None:
        """Connect our port to the call's audio (or follow a hold); run by :meth:`Engine.poll`."""
        self.media_pending = False
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            remote_hold = media.status == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD
            if remote_hold != self.remote_hold:
                self.remote_hold = remote_hold
                self._event("remote-hold" if remote_hold else "remote-resumed")
            if media.status == pj.PJSUA_CALL_MEDIA_ACTIVE or remote_hold:
                audio = self.getAudioMedia(index)
                if self.port is not None:
                    audio.startTransmit(self.port)
                    if not self.muted:
                        self.port.startTransmit(audio)
                if self.on_media is not None:
                    self.on_media(audio)

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        self.dtmf_received += str(prm.digit)
        self._event("dtmf", str(prm.digit))

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        self._event("transfer", str(prm.reason), int(prm.statusCode))

    @property
    def disconnected(self) -> bool:
        return bool(self.state == pj.PJSIP_INV_STATE_DISCONNECTED)

    @property
    def confirmed(self) -> bool:
        return bool(self.state == pj.PJSIP_INV_STATE_CONFIRMED)

    @property
    def state_name(self) -> str:
        name = _STATE_NAMES.get(self.state, str(self.state))
        if self.confirmed and (self.on_hold or self.remote_hold):
            return "on hold" if self.on_hold else "held by the far end"
        return name

    # -- operations (all in the engine's thread) ------------------------------------------------------
    def _audio(self) -> pj.AudioMedia | None:
        index = self.audio_index()
        return None if index is None else self.getAudioMedia(index)

    def ring(self) -> None:
        """Tell the caller we are ringing (180)."""
        prm = pj.CallOpParam()
        prm.statusCode = 180
        self.answer(prm)

    def accept(self) -> None:
        """Answer an incoming call (200 OK)."""
        prm = pj.CallOpParam(True)
        prm.statusCode = 200
        self.answer(prm)

    def decline(self, code: int = 486) -> None:
        """Reject an incoming call: 486 Busy Here, or 603 Decline."""
        prm = pj.CallOpParam(True)
        prm.statusCode = code
        self.hangup(prm)

    def end(self) -> None:
        """Hang up (BYE, CANCEL or a final error answer, whatever the state needs)."""
        if not self.disconnected:
            self.hangup(pj.CallOpParam(True))

    def hold(self) -> None:
        """Put the call on hold: re-INVITE with ``a=sendonly`` (RFC 3264 §8.4); our audio stops flowing both ways."""
        self.setHold(pj.CallOpParam(True))
        self.on_hold = True
        self._event("hold")

    def resume(self) -> None:
        """Take the call off hold: re-INVITE with ``a=sendrecv``."""
        prm = pj.CallOpParam(True)
        prm.opt.flag |= pj.PJSUA_CALL_UNHOLD
        self.reinvite(prm)
        self.on_hold = False
        self._event("resumed")

    def set_muted(self, muted: bool) -> None:
        """Stop (or restart) sending our audio; the far end still reaches us, the call stays up."""
        self.muted = muted
        audio = self._audio()
        if audio is not None and self.port is not None:
            if muted:
                self.port.stopTransmit(audio)
            else:
                self.port.startTransmit(audio)
        self._event("muted" if muted else "unmuted")

    def send_digits(self, digits: str) -> None:
        """Send DTMF as RFC 4733 telephone-events in the RTP stream (pjsua2's default method)."""
        if not digits or any(d not in "0123456789*#ABCDabcd" for d in digits):
            raise ValueError(f"DTMF digits must be 0-9, *, #, A-D (got {digits!r})")
        self.dialDtmf(digits)

    def blind_transfer(self, uri: str) -> None:
        """Ask the far end to call ``uri`` instead (REFER, RFC 3515); the outcome arrives as ``transfer`` events."""
        self.xfer(uri, pj.CallOpParam(True))


class Engine:
    """One pjsua2 endpoint; use as a context manager so that it is always torn down in order."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.ep: Any = None
        """pjsua2's Endpoint, a singleton: created by :meth:`start`, dropped by :meth:`close`."""
        self._accounts: list[Account] = []
        self._calls: list[Call] = []
        self._ended: list[Call] = []
        self._ports: list[pj.AudioMediaPort] = []
        self._idle_loops: list[LoopPort] = []
        self.on_incoming: Callable[[Call], None] | None = None
        """Called (in the engine's thread) for each incoming call, after it was told 180 Ringing."""
        self.transport_ids: dict[Transport, int] = {}
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Engine:
        cfg = self.config
        self.ep = pj.Endpoint()
        with _stdout_elsewhere():
            self.ep.libCreate()
        ep_cfg = pj.EpConfig()
        ep_cfg.uaConfig.threadCnt = 0
        ep_cfg.uaConfig.mainThreadOnly = True
        ep_cfg.uaConfig.userAgent = cfg.user_agent
        ep_cfg.logConfig.level = cfg.log_level
        ep_cfg.logConfig.consoleLevel = cfg.log_level
        writer = _LogWriter()
        writer.__disown__()  # the endpoint deletes its writer in libDestroy()
        ep_cfg.logConfig.writer = writer
        ep_cfg.medConfig.clockRate = cfg.clock_rate_hz
        ep_cfg.medConfig.sndClockRate = cfg.clock_rate_hz
        ep_cfg.medConfig.noVad = not cfg.vad
        self.ep.libInit(ep_cfg)
        self._started = True
        for kind in cfg.transports:
            tp_cfg = pj.TransportConfig()
            tp_cfg.port = cfg.sip_port
            if cfg.bound_address:
                tp_cfg.boundAddress = cfg.bound_address
            if kind is Transport.TLS:
                if cfg.tls_ca_file is not None:
                    tp_cfg.tlsConfig.CaListFile = str(cfg.tls_ca_file)
                tp_cfg.tlsConfig.verifyServer = cfg.tls_verify_server
                tp_cfg.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
            try:
                self.transport_ids[kind] = self.ep.transportCreate(_PJ_TRANSPORT[kind], tp_cfg)
            except pj.Error as exc:
                raise MeasurementError(
                    f"could not open a SIP {kind.value} transport: {exc.info()}",
                    remedy="another program may hold the port, or the address is not on this machine",
                ) from exc
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        self._set_codec_priorities()
        return self

    def _set_codec_priorities(self) -> None:
        """Apply ``config.codecs``: listed codecs first in the given order (pjsua2 priorities 255, 254, …)."""
        cfg = self.config
        if not cfg.codecs:
            return
        available = [str(info.codecId) for info in self.ep.codecEnum2()]
        chosen: dict[str, int] = {}
        for rank, wanted in enumerate(cfg.codecs):
            matches = [cid for cid in available if cid.lower().startswith(wanted.lower())]
            if not matches:
                raise ValueError(f"codec {wanted!r} is not available (pjsua2 offers: {', '.join(available)})")
            for cid in matches:
                chosen.setdefault(cid, 255 - rank)
        for cid in available:
            if cid in chosen:
                self.ep.codecSetPriority(cid, chosen[cid])
            elif cfg.only_listed_codecs:
                self.ep.codecSetPriority(cid, 0)

    def close(self) -> None:
        """Hang up, unregister and destroy in the order the conference bridge needs."""
        if not self._started:
            return
        self._release_calls_and_accounts()
        # Media ports are never freed while the library runs: the conference bridge's clock thread
        # calls every port, connected or not, each 20 ms, and a port's C++ destructor releases the GIL
        # while it unregisters, so that thread would call into a half-destroyed Python object (seen as
        # a segfault in a later garbage collection). Handed to pjsua2 here, their C++ side is never
        # destroyed; libDestroy() stops the clock and dismantles the bridge around them.
        for port in self._ports:
            port.__disown__()
        self._ports.clear()
        self._idle_loops.clear()
        # A pjsua2 object that Python frees after libDestroy() aborts the process (its destructor
        # asserts on an invalid id): nothing may keep one alive past this point, not even a local.
        self.on_incoming = None
        gc.collect()
        self.ep.libDestroy()
        self._started = False
        # Drop the Endpoint now: freed later (say, by the garbage collector while a newer engine runs),
        # its destructor would destroy the library under that engine.
        self.ep = None

    def _release_calls_and_accounts(self) -> None:
        """Hang up and drop every call and account; a method of its own so that no loop variable outlives it."""
        for call in self._calls:
            if not call.disconnected:
                try:
                    call.hangup(pj.CallOpParam(True))
                except pj.Error as exc:
                    log.debug("hangup during close: %s", exc.info())
        self.poll_for(lambda: all(c.disconnected for c in self._calls), timeout_s=2.0)
        for call in self._calls + self._ended:
            call.on_media = None
            call.on_event = None
            call.port = None
            # A caller may still hold this call (a local variable, an event handler): hand the C++
            # object to pjsua2 so that Python freeing it after libDestroy() cannot abort the process.
            call.__disown__()
        self._calls.clear()
        self._ended.clear()
        for account in self._accounts:
            account.incoming.clear()
            account.on_incoming = None
            account.shutdown()
        self._accounts.clear()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- event loop ----------------------------------------------------------------------------------
    def poll(self, ms: int = 10) -> None:
        self.ep.libHandleEvents(ms)
        for call in self._calls:
            if call.media_pending:
                try:
                    call.update_media()
                except pj.Error as exc:  # the call ended in the same round of events
                    log.debug("media update of an ended call: %s", exc.info())

    def poll_for(self, done: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() >= deadline:
                return False
            self.poll(10)
        return True

    def poll_seconds(self, seconds: float) -> None:
        self.poll_for(lambda: False, timeout_s=seconds)

    # -- accounts ------------------------------------------------------------------------------------
    def _incoming(self, call: Call) -> None:
        self._calls.append(call)
        try:
            call.ring()
        except pj.Error as exc:
            log.debug("could not send 180 Ringing: %s", exc.info())
        if self.on_incoming is not None:
            self.on_incoming(call)

    def add_account(self, account: SipAccount, register: bool = True) -> Account:
        cfg = pj.AccountConfig()
        cfg.idUri = f'"{account.display_name}" <{account.uri}>' if account.display_name else account.uri
        cfg.regConfig.registrarUri = account.server_uri() if register else ""
        cfg.regConfig.registerOnAdd = register
        cfg.sipConfig.proxies.append(f"sip:{account.registrar};transport={account.transport.value};lr")
        cfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", "*", account.auth_user or account.user, 0, account.password.reveal())
        )
        if account.transport in self.transport_ids:
            cfg.sipConfig.transportId = self.transport_ids[account.transport]
        return self._create_account(cfg, account.transport)

    def add_local_account(self, user: str, transport: Transport | None = None) -> Account:
        """An account that registers nowhere: it answers calls sent straight to this machine's address
        (``sip:user@address:port``) and calls URIs directly. The echo service uses it."""
        kind = transport or self.config.transports[0]
        cfg = pj.AccountConfig()
        host = self.config.bound_address or "127.0.0.1"
        port = self.local_port(kind)
        cfg.idUri = f"sip:{user}@{_host_port(host, port)}"
        cfg.sipConfig.transportId = self.transport_ids[kind]
        return self._create_account(cfg, kind)

    def local_port(self, kind: Transport) -> int:
        """The port a SIP transport listens on."""
        return int(self.ep.transportGetInfo(self.transport_ids[kind]).localName.rsplit(":", 1)[1])

    def _create_account(self, cfg: pj.AccountConfig, transport: Transport) -> Account:
        srtp = self.config.srtp
        cfg.mediaConfig.srtpUse = _PJ_SRTP[srtp]
        # SDES keys are in the SDP: over TLS insist on a TLS hop (1); elsewhere allow any (0), and say so.
        cfg.mediaConfig.srtpSecureSignaling = 1 if transport is Transport.TLS and srtp != "disabled" else 0
        if srtp != "disabled" and transport is not Transport.TLS:
            log.warning("SRTP keys travel in clear-text SDP over %s: use TLS to keep them secret", transport.value)
        if self.config.bound_address:
            # RTP on the same address as SIP, and that address in the SDP: otherwise pjsua2
            # offers the first interface's address and the peer sends media there.
            cfg.mediaConfig.transportConfig.boundAddress = self.config.bound_address
            cfg.mediaConfig.transportConfig.publicAddress = self.config.bound_address
        if self.config.rtp_ports is not None:
            # pjsua2 takes RTP ports from [port, port + portRange] and RTCP one above each:
            # start even and stop one short of the last port so that RTCP stays in range too.
            first, last = self.config.rtp_ports
            start = first + (first % 2)
            cfg.mediaConfig.transportConfig.port = start
            cfg.mediaConfig.transportConfig.portRange = max(0, last - 1 - start)
        acc = Account(on_incoming=self._incoming)
        acc.create(cfg)
        self._accounts.append(acc)
        return acc

    def unregister(self, acc: Account, timeout_s: float = 5.0) -> RegisterOutcome:
        """Remove our binding at the registrar (REGISTER with Expires: 0)."""
        start = time.perf_counter()
        acc.reg_code = None
        acc.setRegistration(False)
        if not self.poll_for(lambda: acc.reg_code is not None, timeout_s):
            return RegisterOutcome(408, "no answer from the registrar", (time.perf_counter() - start) * 1000)
        assert acc.reg_code is not None
        return RegisterOutcome(acc.reg_code, acc.reg_reason, (time.perf_counter() - start) * 1000)

    def reregister(self, acc: Account, timeout_s: float = 5.0) -> RegisterOutcome:
        start = time.perf_counter()
        acc.reg_code = None
        acc.setRegistration(True)
        if not self.poll_for(lambda: acc.reg_code is not None, timeout_s):
            return RegisterOutcome(408, "no answer from the registrar", (time.perf_counter() - start) * 1000)
        assert acc.reg_code is not None
        return RegisterOutcome(acc.reg_code, acc.reg_reason, (time.perf_counter() - start) * 1000)

    def register(self, account: SipAccount, timeout_s: float = 5.0) -> tuple[Account, RegisterOutcome]:
        start = time.perf_counter()
        acc = self.add_account(account, register=True)
        if not self.poll_for(lambda: acc.reg_code is not None, timeout_s):
            return acc, RegisterOutcome(408, "no answer from the registrar", (time.perf_counter() - start) * 1000)
        assert acc.reg_code is not None
        return acc, RegisterOutcome(acc.reg_code, acc.reg_reason, (time.perf_counter() - start) * 1000)

    # -- calls ---------------------------------------------------------------------------------------
    def _new_port(self, play: npt.NDArray[Any] | None, record_s: float) -> BufferPort:
        port = BufferPort(self.config.clock_rate_hz, play, record_s)
        port.create(f"buffer{len(self._ports)}")
        self._ports.append(port)  # kept alive until close(): the bridge may still hold it
        return port

    def device_port(self, io: FrameIO) -> DevicePort:
        """A conference port for the sound devices behind ``io``; kept until :meth:`close`."""
        port = DevicePort(self.config.clock_rate_hz, io)
        port.create(f"device{len(self._ports)}")
        self._ports.append(port)
        return port

    def buffer_port(self, play: npt.NDArray[Any] | None, record_s: float) -> BufferPort:
        """A conference port that plays ``play`` and records up to ``record_s`` seconds."""
        return self._new_port(play, record_s)

    def loop_port(self) -> LoopPort:
        """A loop for one call: a free one from an earlier call, else a new one."""
        if self._idle_loops:
            return self._idle_loops.pop()
        port = LoopPort(self.config.clock_rate_hz)
        port.create(f"loop{len(self._ports)}")
        self._ports.append(port)
        return port

    def place_call(self, account: Account, uri: str, port: pj.AudioMediaPort | None) -> Call:
        """Send the INVITE and return at once; audio flows between ``port`` and the call once media is up."""
        call = Call(account)
        call.port = port
        self._calls.append(call)
        try:
            call.makeCall(uri, pj.CallOpParam(True))
        except pj.Error as exc:
            self._calls.remove(call)
            raise MeasurementError(f"could not place a call to {uri}: {exc.info()}") from exc
        return call

    def forget(self, call: Call) -> None:
        """Drop a disconnected call (its pjsua2 object goes once nothing references it)."""
        if call.disconnected and call in self._calls:
            call.on_event = None
            call.on_media = None
            call.port = None
            self._calls.remove(call)
            self._ended.append(call)  # disowned by close(), see _release_calls_and_accounts
        for acc in self._accounts:
            if call in acc.incoming:
                acc.incoming.remove(call)

    def drop_port(self, port: pj.AudioMediaPort) -> None:
        """Give back a loop whose call is over, for the next call (ports are never freed while the library
        runs, see :meth:`close`): a long-running echo service keeps as many as it had calls at once."""
        if isinstance(port, LoopPort) and port in self._ports and not any(c.port is port for c in self._calls):
            port.reset()
            self._idle_loops.append(port)

    @property
    def calls(self) -> tuple[Call, ...]:
        return tuple(self._calls)

    def call(
        self,
        account: Account,
        uri: str,
        play: npt.NDArray[Any] | None = None,
        seconds: float = 2.0,
        answer_timeout_s: float = 10.0,
        stop_when: Callable[[StreamStats], bool] | None = None,
    ) -> CallOutcome:
        """Call ``uri``, send ``play`` (int16 or float, at the bridge rate) and record the far end for ``seconds``.

        ``stop_when`` hangs up earlier, as soon as it returns True for a statistics sample
        (e.g. once the far end's first RTCP report is in).
        """
        start = time.perf_counter()
        call = self.place_call(account, uri, None)
        self.poll_for(lambda: call.confirmed_at is not None or call.disconnected, answer_timeout_s)
        # The port joins the conference bridge only now: while the call is set up, the bridge's clock
        # thread has no Python port to call (it would compete for the GIL on the way to our ACK).
        port = self._new_port(play, seconds + 1.0)
        call.port = port
        call.media_pending = True
        if call.confirmed_at is None:
            if not call.disconnected:
                call.hangup(pj.CallOpParam(True))
                self.poll_for(lambda: call.disconnected, 2.0)
            code = call.last_code or 408
            return CallOutcome(code, call.last_reason or "no answer", 0.0, np.zeros(0, np.int16), port.rate_hz)
        setup_ms = (call.confirmed_at - start) * 1000.0
        # Sample the stream's statistics every poll: the last sample is the state at hang-up,
        # and the note of what we had sent when each RTCP report arrived stays exact.
        # When it is time to stop, wait (up to SETTLE_S) for one more settled sample, so that the
        # statistics returned are exact for inbound loss and include everything seen until then.
        deadline = time.monotonic() + seconds
        stopping_at: float | None = None
        settled_before: StreamStats | None = None
        while not call.disconnected:
            self.poll(10)
            sample = call.sample_stats()
            now = time.monotonic()
            if stopping_at is None and (now >= deadline or (stop_when is not None and sample is not None
                                                            and stop_when(sample))):  # fmt: skip
                stopping_at, settled_before = now, call.settled_stats
            if stopping_at is not None and (call.settled_stats is not settled_before or now - stopping_at > SETTLE_S):
                break
        if not call.disconnected:
            call.hangup(pj.CallOpParam(True))
            self.poll_for(lambda: call.disconnected, 2.0)
        stats = call.settled_stats if call.settled_stats is not settled_before else call.last_stats
        return CallOutcome(200, "OK", setup_ms, port.recorded(), port.rate_hz, stats=stats)
