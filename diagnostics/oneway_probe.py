"""Gather the evidence of :mod:`diagnostics.oneway`: a test call to an echo, the microphone, STUN, the SIP ALG
check and this machine's firewall.

The test call sends a known speech-like signal (not the microphone: the
network legs must be judged even when the microphone is dead) and records
what comes back; at the same time the microphone is read through the phone's
own device bridge (the path a real call takes) and the far end's audio is
handed to the speaker through it. Call statistics are sampled four times a
second for the report's plot.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from diagnostics.checks import CheckContext
from diagnostics.oneway import Evidence, MicEvidence, NetEvidence, RtpEvidence
from diagnostics.profile import AccountProfile, load_profile

__all__ = ["PROBE_SECONDS", "gather"]

log = logging.getLogger(__name__)

PROBE_SECONDS = 3.0
"""Long enough for ~150 packets each way and the echo's return; the whole verdict stays under 8 s."""
RATE_HZ = 16000
FRAME = RATE_HZ // 50
SAMPLE_EVERY_S = 0.25


class _ProbeIO:
    """The call's audio: sends the probe signal, records what returns, meters the mic, feeds the speaker.

    Called from the conference clock thread; only copies into preallocated arrays.
    """

    def __init__(self, signal: npt.NDArray[np.int16], bridge: Any, seconds: float) -> None:
        self.signal = signal
        self.bridge = bridge
        n = int((seconds + 2.0) * RATE_HZ)
        self.mic = np.zeros(n, dtype=np.int16)
        self.heard = np.zeros(n, dtype=np.int16)
        self.sent = np.zeros(n, dtype=np.int16)
        self.pos_out = 0
        self.pos_in = 0
        self.active = False
        """Only once the call is up do frames count (before, the bridge primes)."""
        self.speaker_peak_rms = 0.0
        self._mic_frame = np.zeros(FRAME, dtype=np.int16)

    def read_frame(self, out: npt.NDArray[np.int16]) -> None:
        if self.bridge is not None:
            self.bridge.read_frame(self._mic_frame)
        if not self.active or self.pos_out + FRAME > len(self.sent):
            out[:] = 0
            return
        p = self.pos_out
        chunk = self.signal[p : p + FRAME]
        out[: len(chunk)] = chunk
        out[len(chunk) :] = 0
        self.sent[p : p + FRAME] = out
        if self.bridge is not None:
            self.mic[p : p + FRAME] = self._mic_frame
        self.pos_out = p + FRAME

    def write_frame(self, frame: npt.NDArray[np.int16]) -> None:
        if self.bridge is not None:
            self.bridge.write_frame(frame)
        if not self.active or self.pos_in + FRAME > len(self.heard):
            return
        self.heard[self.pos_in : self.pos_in + FRAME] = frame
        self.pos_in += FRAME
        rms = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64)))) / 32768.0
        self.speaker_peak_rms = max(self.speaker_peak_rms, rms)


def _db(x: float) -> float | None:
    return 20.0 * math.log10(x) if x > 0 else None


def _mic_evidence(io: _ProbeIO, label: str, muted: bool | None) -> MicEvidence:
    x = io.mic[: io.pos_out].astype(np.float64) / 32768.0
    if len(x) == 0:
        return MicEvidence(label, None, None, True, muted)
    rms = float(np.sqrt(np.mean(x**2)))
    return MicEvidence(label, _db(rms), _db(float(np.max(np.abs(x)))), bool(not np.any(io.mic[: io.pos_out])), muted)


def _os_muted(input_spec: str | None) -> tuple[str, bool | None]:
    """The input device's name and its OS mute flag (the default source, or the one named)."""
    from diagnostics.audio.system import system_devices

    sources = [d for d in system_devices() if d.direction == "input" and not d.is_monitor]
    if input_spec:
        needle = input_spec.casefold()
        chosen = [d for d in sources if needle in d.name.casefold() or needle in d.description.casefold()]
    else:
        chosen = [d for d in sources if d.is_default]
    return (chosen[0].description, chosen[0].muted) if len(chosen) == 1 else ("", None)


def _stun(profile: AccountProfile, local_ip: str) -> tuple[str | None, str]:
    from diagnostics.network.stun import StunError, binding

    if profile.stun_server is None:
        return None, "no STUN server in the profile"
    server = profile.stun_server
    try:
        infos = socket.getaddrinfo(server.host, server.port or 3478, type=socket.SOCK_DGRAM)
        address = infos[0][4]
        with socket.socket(infos[0][0], socket.SOCK_DGRAM) as sock:
            sock.bind((local_ip, 0))
            result = binding(sock, (str(address[0]), int(address[1])), timeout_s=1.0)
        return str(result.mapped), ""
    except (OSError, StunError, ValueError) as exc:
        return None, f"STUN failed: {exc}"


def _alg(profile_path: Path) -> tuple[str | None, str]:
    from diagnostics.sip.alg import check_sip_alg

    try:
        result = check_sip_alg(CheckContext(profile=profile_path, interactive=False), timeout_s=1.5)
    except Exception as exc:  # a broken ALG probe must not hide the call's evidence
        log.debug("sip_alg check failed: %s", exc, exc_info=True)
        return None, f"could not run: {exc}"
    return result.status.value, result.summary


@dataclass
class _CallResult:
    rtp: RtpEvidence
    io: _ProbeIO


def _call(profile: AccountProfile, target: str, bridge: Any, seconds: float, local_ip: str) -> _CallResult:
    from diagnostics.network.media import measure_round_trip, probe_signal
    from phone.engine import as_int16
    from phone.phone import Phone, account_for, dialplan_for, engine_config_for

    signal = as_int16(probe_signal(RATE_HZ, seconds + 2.0, -20.0))
    io = _ProbeIO(signal, bridge, seconds)
    config = engine_config_for(profile, bound_address=local_ip, vad=False)
    phone = Phone(config, account=account_for(profile), domain=profile.domain, dialplan=dialplan_for(profile),
                  audio=io)  # fmt: skip
    series: dict[str, list[float]] = {"t_s": [], "rx_pps": [], "tx_pps": [], "rx_loss_percent": [], "rx_jitter_ms": []}
    with phone:
        reg = phone.registration
        if reg is not None and not reg.ok:
            return _CallResult(RtpEvidence(target, False, reg.code, f"registration failed: {reg.reason}"), io)
        phone.dial(target)
        assert phone.active is not None
        call = phone.active.call
        if not phone.wait_answered(8.0):
            return _CallResult(RtpEvidence(target, False, call.last_code or 408, call.last_reason or "no answer"), io)
        io.active = True
        start = time.monotonic()
        last = (0.0, 0, 0)
        stats = None
        while not call.disconnected and time.monotonic() - start < seconds:
            phone.wait(lambda: call.disconnected, SAMPLE_EVERY_S)
            stats = call.sample_stats() or stats
            if stats is None:
                continue
            t = time.monotonic() - start
            dt = max(t - last[0], 1e-3)
            series["t_s"].append(round(t, 3))
            series["rx_pps"].append(round((stats.rx_packets - last[1]) / dt, 1))
            series["tx_pps"].append(round((stats.tx_packets - last[2]) / dt, 1))
            series["rx_loss_percent"].append(round(stats.rx_loss_percent, 2))
            series["rx_jitter_ms"].append(stats.rx_jitter_ms if stats.rx_jitter_ms is not None else 0.0)
            last = (t, stats.rx_packets, stats.tx_packets)
        duration = time.monotonic() - start
        on_hold, remote_hold, muted = call.on_hold, call.remote_hold, call.muted
        io.active = False
        if not call.disconnected:
            phone.hangup()
            phone.wait(lambda: phone.active is None, 2.0)
    n = min(io.pos_out, io.pos_in)
    trip = measure_round_trip(io.sent[:n], io.heard[:n], RATE_HZ)
    has_speaker = bridge is not None and bridge.stats().playback is not None
    speaker = _db(io.speaker_peak_rms) if has_speaker else None
    return _CallResult(RtpEvidence(
        target=target, answered=True, code=200, reason="OK",
        codec=stats.codec if stats else "", seconds=duration,
        tx_packets=stats.tx_packets if stats else 0, rx_packets=stats.rx_packets if stats else 0,
        local_sdp=stats.local_rtp if stats else "", remote_sdp=stats.remote_rtp if stats else "",
        rx_source=stats.rx_source_rtp if stats else "",
        far_end_reports=stats.tx_reports if stats else 0,
        far_end_lost_packets=stats.tx_lost_packets if stats else None,
        echo_detected=trip.detected, echo_correlation=trip.correlation, round_trip_ms=trip.delay_ms,
        on_hold=on_hold, remote_hold=remote_hold, muted=muted, speaker_level_dbfs=speaker, series=series,
    ), io)  # fmt: skip


def gather(
    profile_path: Path,
    number: str | None = None,
    input_spec: str | None = None,
    output_spec: str | None = None,
    seconds: float = PROBE_SECONDS,
) -> Evidence:
    """Everything :func:`diagnostics.oneway.assess` needs (see the module docstring)."""
    from diagnostics.audio.probe import resolve_device
    from diagnostics.errors import MeasurementError, UsageError
    from diagnostics.network.firewall import udp_drops
    from phone.phone import local_address_for

    profile = load_profile(profile_path)
    if number is None and not profile.echo_extension:
        raise UsageError(f"{profile_path}: field 'checks.echo_extension' is missing (or give a number to call)")
    target = number or f"sip:{profile.echo_extension}@{profile.domain}"
    local_ip = local_address_for(profile)
    bridge = None
    mic_label, muted = _os_muted(input_spec or profile.input_device or None)
    try:
        from phone.bridge import DeviceBridge

        bridge = DeviceBridge(resolve_device(input_spec or profile.input_device or None, "input"),
                              resolve_device(output_spec or profile.output_device or None, "output"),
                              clock_rate_hz=RATE_HZ)  # fmt: skip
        bridge.start()
    except (MeasurementError, UsageError) as exc:
        log.info("no sound devices for the test call: %s", exc)
        bridge = None
    try:
        result = _call(profile, target, bridge, seconds, local_ip)
    finally:
        if bridge is not None:
            bridge.stop()
    mapped, stun_note = _stun(profile, local_ip)
    alg_status, alg_summary = _alg(profile_path)
    port_text = result.rtp.local_sdp.rsplit(":", 1)[-1] if result.rtp.local_sdp else str(profile.rtp_ports[0])
    inbound, outbound = udp_drops(int(port_text), "inbound"), udp_drops(int(port_text), "outbound")
    net = NetEvidence(
        mapped_address=mapped, stun_note=stun_note, sip_alg=alg_status, sip_alg_summary=alg_summary,
        firewall_known=inbound.known, firewall_inbound=tuple(map(str, inbound.rules)),
        firewall_outbound=tuple(map(str, outbound.rules)), firewall_note=inbound.why_unknown,
    )  # fmt: skip
    mic = _mic_evidence(result.io, mic_label or "default input", muted) if bridge is not None else None
    return Evidence(mic, result.rtp, net)
