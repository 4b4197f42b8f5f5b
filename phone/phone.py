"""The phone: one SIP account, one call with audio at a time, dial rules and barring before every INVITE.

:class:`Phone` sits between a user interface (the terminal phone, the
one-shot commands, ``phonekit launch``) and :class:`phone.engine.Engine`. It
owns the decisions a phone makes: which number becomes which URI and whether
it may be called at all (:func:`provision.dialplan.decide`; a refused number
never reaches the wire), what happens to a second incoming call while one is
up (486 Busy Here), what the history records, what the user is told.

Everything here runs in one thread, the engine's: interfaces call
:meth:`Phone.poll` in their loop and act between polls.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt

from diagnostics.profile import AccountProfile, HostPort
from phone import history
from phone.engine import (
    Account,
    BufferPort,
    Call,
    CallEvent,
    Engine,
    EngineConfig,
    FrameIO,
    RegisterOutcome,
    SipAccount,
    StreamStats,
)
from phone.quality import CallQuality, quality_of
from provision.dialplan import Decision, Dial, DialPlan, Refused, decide, embedded_dialplan

__all__ = [
    "Phone",
    "PhoneError",
    "account_for",
    "dialplan_for",
    "engine_config_for",
    "local_address_for",
    "registrar_of",
]

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 0.5
"""How often the active call's RTP/RTCP statistics are sampled (reading them parses pjsua's call dump)."""
_DIRECT = re.compile(r"\+?[0-9*#]+")


class PhoneError(Exception):
    """An operation that cannot be done now (no call to hang up, nothing ringing …); the text says why."""


def engine_config_for(profile: AccountProfile, bound_address: str = "", **overrides: Any) -> EngineConfig:
    """The engine settings a profile asks for: its transport, TLS verification, RTP ports, codecs, SRTP."""
    values: dict[str, Any] = {
        "transports": (profile.transport,),
        "bound_address": bound_address,
        "tls_ca_file": profile.tls_ca_file,
        "tls_verify_server": profile.tls_verify,
        "rtp_ports": profile.rtp_ports,
        "codecs": profile.codecs,
        "srtp": profile.srtp,
    }
    values.update(overrides)
    return EngineConfig(**values)


def registrar_of(profile: AccountProfile) -> tuple[str, int]:
    """Host and port the profile registers at (its domain and the transport's port when not given)."""
    registrar = profile.registrar or HostPort(profile.domain)
    return registrar.host, registrar.port or profile.transport.default_port


def local_address_for(profile: AccountProfile) -> str:
    """This machine's address on the route to the registrar: what SIP and RTP bind to and the SDP offers."""
    from diagnostics.network.media import route_source

    return route_source(*registrar_of(profile))


def account_for(profile: AccountProfile) -> SipAccount:
    host, port = registrar_of(profile)
    host = f"[{host}]" if ":" in host else host
    return SipAccount(
        user=profile.user,
        domain=profile.domain,
        registrar=f"{host}:{port}",
        password=profile.password,
        transport=profile.transport,
        auth_user=profile.auth_user or None,
        display_name=profile.display_name,
    )


def dialplan_for(profile: AccountProfile) -> tuple[DialPlan, tuple[str, ...]] | None:
    """The profile's ``[dialplan]`` and its per-user ``allow`` list (UsageError naming the field if invalid)."""
    return embedded_dialplan({"dialplan": dict(profile.dialplan)} if profile.dialplan else {}, str(profile.path))


@dataclass
class _Active:
    call: Call
    number: str
    uri: str
    rule: str
    started_unix_s: float
    placed_at: float
    port: BufferPort | None = None
    last_sample_at: float = 0.0
    attach: Any = None
    """The port to connect once the call is confirmed (see :meth:`Phone.dial`)."""


class Phone:
    """A registered (or, without an account, directly reachable) phone.

    ``audio``: the sound devices (a :class:`phone.engine.FrameIO`, e.g. ``phone.bridge.DeviceBridge``);
    without it each call plays ``play`` and records up to ``record_s`` seconds (the one-shot commands).
    """

    def __init__(
        self,
        engine_config: EngineConfig,
        *,
        account: SipAccount | None,
        domain: str,
        dialplan: tuple[DialPlan, tuple[str, ...]] | None = None,
        history_path: Path | None = None,
        audio: FrameIO | None = None,
        play: npt.NDArray[Any] | None = None,
        record_s: float = 0.0,
        local_user: str = "phonekit",
        notify: Callable[[str], None] | None = None,
        audio_per_call: bool = False,
    ) -> None:
        self.engine = Engine(engine_config)
        self.sip_account = account
        self.domain = domain
        self.dialplan = dialplan
        self.history_path = history_path
        self.audio = audio
        self.play = play
        self.record_s = record_s
        self.local_user = local_user
        self.notify = notify or (lambda text: log.info("%s", text))
        self.audio_per_call = audio_per_call
        """Start ``audio`` (its ``start()``/``stop()``) for each call only: an idle phone keeps no sound
        device open (the device streams cost ~50 ms CPU per second while open)."""
        self.account: Account | None = None
        self.registration: RegisterOutcome | None = None
        self.active: _Active | None = None
        self.ringing: Call | None = None
        self.last_quality: CallQuality | None = None
        self.finished: list[history.HistoryEntry] = []
        self._device_port: Any = None
        self._last_recording: npt.NDArray[Any] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, register_timeout_s: float = 5.0) -> Phone:
        self.engine.start()
        self.engine.on_incoming = self._on_incoming
        if self.audio is not None:
            self._device_port = self.engine.device_port(self.audio)
        if self.sip_account is None:
            self.account = self.engine.add_local_account(self.local_user)
            return self
        self.account, self.registration = self.engine.register(self.sip_account, register_timeout_s)
        return self

    def close(self) -> None:
        if self.active is not None and not self.active.call.disconnected:
            self.active.call.end()
            self.engine.poll_for(lambda: self.active is None or self.active.call.disconnected, 2.0)
            self._finish_if_done()
        self.active = None
        self.ringing = None
        self._device_port = None
        self.account = None
        self._audio_off()
        self.audio = None
        self.engine.close()

    def __enter__(self) -> Phone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def registered(self) -> bool:
        return self.account is not None and self.account.reg_code == 200 and self.account.reg_expires_s > 0

    def register(self) -> RegisterOutcome:
        if self.account is None or self.sip_account is None:
            raise PhoneError("this phone has no registrar (it answers at its own address)")
        self.registration = self.engine.reregister(self.account)
        return self.registration

    def unregister(self) -> RegisterOutcome:
        if self.account is None or self.sip_account is None:
            raise PhoneError("this phone has no registrar (it answers at its own address)")
        self.registration = self.engine.unregister(self.account)
        return self.registration

    @property
    def address(self) -> str:
        """Where others reach this phone."""
        if self.sip_account is not None:
            return self.sip_account.uri
        assert self.account is not None
        return str(self.account.getInfo().uri)

    # -- the event loop -----------------------------------------------------------------------------
    def poll(self, ms: int = 10) -> None:
        self.engine.poll(ms)
        active = self.active
        if active is not None and active.attach is not None and active.call.confirmed:
            active.call.port, active.attach = active.attach, None
            active.call.media_pending = True
            self.engine.poll(0)  # connect it now, not a poll later
        if active is not None and active.call.confirmed:
            now = time.monotonic()
            if now - active.last_sample_at >= STATS_INTERVAL_S:
                active.last_sample_at = now
                active.call.sample_stats()
        self._finish_if_done()

    def wait(self, done: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() >= deadline:
                return False
            self.poll(10)
        return True

    # -- calls --------------------------------------------------------------------------------------
    def decide(self, number: str) -> Decision:
        """What dialing ``number`` would do: the profile's dial plan and barring, or plain digits/URIs without one."""
        text = number.strip()
        if self.dialplan is not None:
            plan, allow = self.dialplan
            return decide(text, plan, self.domain, allow)
        if text.startswith(("sip:", "sips:")):
            return Dial(uri=text, normalized=text, rule="uri")
        if not self.domain:
            return Refused("invalid", f"no profile, so no domain to call {text!r} in: dial a sip: URI")
        if _DIRECT.fullmatch(text):
            return Dial(uri=f"sip:{text}@{self.domain}", normalized=text, rule="direct")
        return Refused("invalid", f"{text!r} is neither a number nor a sip: URI")

    def dial(self, number: str) -> Decision:
        """Decide, then call. A refusal is returned (and recorded) without anything sent."""
        if self.active is not None:
            raise PhoneError("a call is already up: hang up first (or transfer it)")
        decision = self.decide(number)
        if isinstance(decision, Refused):
            self._record(history.HistoryEntry(time.time(), "outgoing", number, "", "refused",
                                              reason=decision.reason, rule=decision.rule))  # fmt: skip
            return decision
        assert self.account is not None
        port = self._port_for_call()
        placed_at = time.perf_counter()
        # The port joins the call once it is confirmed (poll): a Python port that the conference bridge
        # calls while the 200 OK arrives delays our ACK (0.39 instead of 0.21 ms, bench/call_setup.py).
        call = self.engine.place_call(self.account, decision.uri, None)
        call.on_event = self._on_call_event
        self.active = _Active(call, number, decision.uri, decision.rule, time.time(), placed_at,
                              port if isinstance(port, BufferPort) else None, attach=port)  # fmt: skip
        self._audio_on(call)  # if the devices fail, the call ends and is recorded like any other
        return decision

    def wait_answered(self, timeout_s: float) -> bool:
        """After :meth:`dial`: wait for the answer; without one in time, hang up (CANCEL) and wait until the
        call is over and recorded. True when the call was answered."""
        if self.active is None:
            return False
        call = self.active.call
        self.wait(lambda: call.confirmed or call.disconnected, timeout_s)
        if call.confirmed:
            return True
        if not call.disconnected:
            call.end()
            self.wait(lambda: call.disconnected, 3.0)
        self.wait(lambda: self.active is None, 1.0)
        return False

    def _audio_on(self, call: Call) -> None:
        """Open the sound devices for a call (per-call mode); a device that fails ends the call with the error."""
        start = getattr(self.audio, "start", None)
        if not self.audio_per_call or start is None:
            return
        try:
            start()
        except Exception:
            call.end()
            raise

    def _audio_off(self) -> None:
        stop = getattr(self.audio, "stop", None)
        if self.audio_per_call and stop is not None and self.active is None:
            stop()

    def _port_for_call(self) -> Any:
        if self._device_port is not None:
            return self._device_port
        return self.engine.buffer_port(self.play, self.record_s + 1.0)

    def answer(self) -> Call:
        call = self.ringing
        if call is None or call.disconnected:
            raise PhoneError("no call is ringing")
        port = self._port_for_call()
        call.port = port
        self._audio_on(call)
        call.accept()
        self.ringing = None
        self.active = _Active(call, call.remote_uri, call.remote_uri, "incoming", call.started_at,
                              time.perf_counter(), port if isinstance(port, BufferPort) else None)  # fmt: skip
        return call

    def reject(self, code: int = 486) -> None:
        call = self.ringing
        if call is None or call.disconnected:
            raise PhoneError("no call is ringing")
        call.decline(code)
        self.ringing = None
        self._record(history.HistoryEntry(call.started_at, "incoming", call.remote_uri, call.remote_uri,
                                          "rejected", code=code))  # fmt: skip
        self.engine.poll(10)
        self.engine.forget(call)

    def _require_call(self) -> Call:
        if self.active is None or self.active.call.disconnected:
            raise PhoneError("no call is up")
        return self.active.call

    def hangup(self) -> None:
        self._require_call().end()

    def hold(self) -> None:
        call = self._require_call()
        if not call.confirmed:
            raise PhoneError("the call is not answered yet")
        call.hold()

    def resume(self) -> None:
        call = self._require_call()
        if not call.on_hold:
            raise PhoneError("the call is not on hold")
        call.resume()

    def mute(self, muted: bool = True) -> None:
        self._require_call().set_muted(muted)

    def dtmf(self, digits: str) -> None:
        call = self._require_call()
        if not call.confirmed:
            raise PhoneError("the call is not answered yet")
        call.send_digits(digits)

    def transfer(self, number: str) -> Decision:
        """Blind transfer; the target goes through the dial plan and barring like any number dialed."""
        call = self._require_call()
        decision = self.decide(number)
        if isinstance(decision, Dial):
            call.blind_transfer(decision.uri)
        return decision

    def quality(self) -> CallQuality | None:
        """The active call's quality now (or the last call's, once it ended)."""
        if self.active is not None and self.active.call.confirmed:
            stats = self.active.call.sample_stats()
            if stats is not None:
                self.last_quality = quality_of(stats)
        return self.last_quality

    def stats(self) -> StreamStats | None:
        if self.active is not None and self.active.call.confirmed:
            return self.active.call.sample_stats()
        return None

    def recorded(self) -> npt.NDArray[Any] | None:
        """What the last (or active) call's buffer port recorded (one-shot mode), at the bridge rate."""
        if self.active is not None and self.active.port is not None:
            return self.active.port.recorded()
        return self._last_recording

    # -- engine callbacks ---------------------------------------------------------------------------
    def _on_incoming(self, call: Call) -> None:
        call.on_event = self._on_call_event
        if self.active is not None or self.ringing is not None:
            call.decline(486)
            self.notify(f"busy: declined a call from {call.remote_uri}")
            self._record(history.HistoryEntry(call.started_at, "incoming", call.remote_uri, call.remote_uri,
                                              "missed", code=486, reason="Busy Here"))  # fmt: skip
            return
        self.ringing = call
        self.notify(f"incoming call from {call.remote_uri}: 'answer' or 'reject'")

    def _on_call_event(self, call: Call, event: CallEvent) -> None:
        if event.kind == "dtmf":
            self.notify(f"DTMF {event.detail} received")
        elif event.kind == "transfer":
            self.notify(f"transfer: {event.code} {event.detail}")
        elif event.kind in ("remote-hold", "remote-resumed"):
            self.notify("the far end put the call on hold" if event.kind == "remote-hold" else "the far end resumed")
        elif event.kind in ("ringing", "confirmed", "disconnected"):
            detail = f" ({event.code} {event.detail})" if event.kind == "disconnected" else ""
            self.notify(f"call {event.kind}{detail}: {call.remote_uri}")

    def _finish_if_done(self) -> None:
        ringing = self.ringing
        if ringing is not None and ringing.disconnected:  # the caller gave up
            self.ringing = None
            caller = ringing.remote_uri
            self._record(history.HistoryEntry(ringing.started_at, "incoming", caller, caller, "missed",
                                              code=ringing.last_code, reason=ringing.last_reason))  # fmt: skip
            self.engine.forget(ringing)
        active = self.active
        if active is None or not active.call.disconnected:
            return
        call = active.call
        if call.last_stats is not None:
            self.last_quality = quality_of(call.last_stats)
        answered = call.confirmed_unix_s is not None
        entry = history.HistoryEntry(
            started_unix_s=active.started_unix_s,
            direction="incoming" if call.incoming else "outgoing",
            number=active.number,
            uri=active.uri,
            outcome="answered" if answered else "failed",
            code=200 if answered else call.last_code,
            reason=call.last_reason,
            duration_s=round((call.disconnected_unix_s or time.time()) - call.confirmed_unix_s, 3) if answered
            and call.confirmed_unix_s is not None else 0.0,
            setup_ms=round((call.confirmed_at - active.placed_at) * 1000.0, 1)
            if call.confirmed_at is not None and not call.incoming else None,
            mos=round(self.last_quality.mos, 2) if answered and self.last_quality and self.last_quality.mos else None,
            rule=active.rule,
        )
        self._record(entry)
        # A copy, not the port: no pjsua2 object may outlive the engine (its destructor would abort).
        self._last_recording = active.port.recorded() if active.port is not None else None
        self.active = None
        self.engine.forget(call)
        self._audio_off()

    def _record(self, entry: history.HistoryEntry) -> None:
        self.finished.append(entry)
        if self.history_path is not None:
            history.append(self.history_path, entry)
