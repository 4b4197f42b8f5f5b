"""The SIP/RTP engine on pjsua2: the only module in phonekit that imports ``pjsua2``.

pjsua2 runs with no worker threads (``threadCnt = 0``, ``mainThreadOnly``):
everything that touches it happens in the thread that created the
:class:`Engine`, which drives it with :meth:`Engine.poll`. Only the conference
bridge's clock thread calls into our media ports, and those callbacks only move
samples between preallocated buffers.

The wheel has no sound-device backend, so the engine runs on pjsua2's null
device and audio enters and leaves through :class:`BufferPort` (and, with the
phone, a sounddevice bridge).

Lifecycle: calls and media ports are destroyed before ``libDestroy()``,
otherwise the conference bridge asserts and aborts the process.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pjsua2 as pj

from diagnostics.errors import MeasurementError
from diagnostics.profile import Transport
from diagnostics.secret import Secret

__all__ = [
    "Account",
    "BufferPort",
    "CallOutcome",
    "Engine",
    "EngineConfig",
    "RegisterOutcome",
    "SipAccount",
    "Transport",
]

log = logging.getLogger(__name__)

FRAME_USEC = 20_000
"""One packet of audio: 20 ms, the usual RTP packetisation."""


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
    user_agent: str = "phonekit"


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
class CallOutcome:
    code: int
    """Final status of the INVITE (200 when answered)."""
    reason: str
    setup_ms: float
    """From sending INVITE to the call being confirmed."""
    received: npt.NDArray[np.int16]
    """Audio that arrived from the far end while the call was up, at the port's rate."""
    sample_rate_hz: int

    @property
    def answered(self) -> bool:
        return self.code == 200


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
        if frame.type != pj.PJMEDIA_FRAME_TYPE_AUDIO:
            return
        self.frames_received += 1
        data = np.frombuffer(bytes(frame.buf), dtype="<i2")
        room = len(self._record) - self._record_pos
        take = min(room, len(data))
        self._record[self._record_pos : self._record_pos + take] = data[:take]
        self._record_pos += take

    def recorded(self) -> npt.NDArray[np.int16]:
        return self._record[: self._record_pos].copy()


class Account(pj.Account):  # type: ignore[misc]
    """pjsua2 account that remembers the outcome of its last registration."""

    def __init__(self) -> None:
        super().__init__()
        self.reg_code: int | None = None
        self.reg_reason = ""
        self.incoming: list[Call] = []

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        self.reg_code = int(prm.code)
        self.reg_reason = str(prm.reason)

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.incoming.append(Call(self, prm.callId))


class Call(pj.Call):  # type: ignore[misc]
    def __init__(self, account: Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.state = pj.PJSIP_INV_STATE_NULL
        self.last_code = 0
        self.last_reason = ""
        self.confirmed_at: float | None = None
        self.on_media: Callable[[pj.AudioMedia], None] | None = None

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        self.state = info.state
        self.last_code = int(info.lastStatusCode)
        self.last_reason = str(info.lastReason)
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.perf_counter()

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        info = self.getInfo()
        for index, media in enumerate(info.media):
            active = media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE
            if active and self.on_media is not None:
                self.on_media(self.getAudioMedia(index))

    @property
    def disconnected(self) -> bool:
        return bool(self.state == pj.PJSIP_INV_STATE_DISCONNECTED)


class Engine:
    """One pjsua2 endpoint; use as a context manager so that it is always torn down in order."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.ep = pj.Endpoint()
        self._accounts: list[Account] = []
        self._calls: list[Call] = []
        self._ports: list[BufferPort] = []
        self.transport_ids: dict[Transport, int] = {}
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Engine:
        cfg = self.config
        self.ep.libCreate()
        ep_cfg = pj.EpConfig()
        ep_cfg.uaConfig.threadCnt = 0
        ep_cfg.uaConfig.mainThreadOnly = True
        ep_cfg.uaConfig.userAgent = cfg.user_agent
        ep_cfg.logConfig.level = cfg.log_level
        ep_cfg.logConfig.consoleLevel = cfg.log_level
        ep_cfg.medConfig.clockRate = cfg.clock_rate_hz
        ep_cfg.medConfig.sndClockRate = cfg.clock_rate_hz
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
        return self

    def close(self) -> None:
        """Hang up, unregister and destroy in the order the conference bridge needs."""
        if not self._started:
            return
        self._release_calls_and_accounts()
        self._ports.clear()
        # A pjsua2 object that Python frees after libDestroy() aborts the process (its destructor
        # asserts on an invalid id): nothing may keep one alive past this point, not even a local.
        gc.collect()
        self.ep.libDestroy()
        self._started = False

    def _release_calls_and_accounts(self) -> None:
        """Hang up and drop every call and account; a method of its own so that no loop variable outlives it."""
        for call in self._calls:
            if not call.disconnected:
                try:
                    call.hangup(pj.CallOpParam(True))
                except pj.Error as exc:
                    log.debug("hangup during close: %s", exc.info())
        self.poll_for(lambda: all(c.disconnected for c in self._calls), timeout_s=2.0)
        for call in self._calls:
            call.on_media = None
        self._calls.clear()
        for account in self._accounts:
            account.incoming.clear()
            account.shutdown()
        self._accounts.clear()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- event loop ----------------------------------------------------------------------------------
    def poll(self, ms: int = 10) -> None:
        self.ep.libHandleEvents(ms)

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
        if self.config.bound_address:
            # RTP on the same address as SIP, and that address in the SDP: otherwise pjsua2
            # offers the first interface's address and the peer sends media there.
            cfg.mediaConfig.transportConfig.boundAddress = self.config.bound_address
            cfg.mediaConfig.transportConfig.publicAddress = self.config.bound_address
        acc = Account()
        acc.create(cfg)
        self._accounts.append(acc)
        return acc

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

    def call(
        self,
        account: Account,
        uri: str,
        play: npt.NDArray[Any] | None = None,
        seconds: float = 2.0,
        answer_timeout_s: float = 10.0,
    ) -> CallOutcome:
        """Call ``uri``, send ``play`` (int16 or float, at the bridge rate) and record the far end for ``seconds``."""
        port = self._new_port(play, seconds + 1.0)
        call = Call(account)
        self._calls.append(call)

        def connect(media: pj.AudioMedia) -> None:
            port.startTransmit(media)
            media.startTransmit(port)

        call.on_media = connect
        prm = pj.CallOpParam(True)
        start = time.perf_counter()
        try:
            call.makeCall(uri, prm)
        except pj.Error as exc:
            raise MeasurementError(f"could not place a call to {uri}: {exc.info()}") from exc
        self.poll_for(lambda: call.confirmed_at is not None or call.disconnected, answer_timeout_s)
        if call.confirmed_at is None:
            if not call.disconnected:
                call.hangup(pj.CallOpParam(True))
                self.poll_for(lambda: call.disconnected, 2.0)
            code = call.last_code or 408
            return CallOutcome(code, call.last_reason or "no answer", 0.0, np.zeros(0, np.int16), port.rate_hz)
        setup_ms = (call.confirmed_at - start) * 1000.0
        self.poll_for(lambda: call.disconnected, seconds)
        if not call.disconnected:
            call.hangup(pj.CallOpParam(True))
            self.poll_for(lambda: call.disconnected, 2.0)
        return CallOutcome(200, "OK", setup_ms, port.recorded(), port.rate_hz)
