"""Check ``network.media``: do RTP packets get through both ways, and how good would a call sound?

Probe (I/O, :func:`probe_media`):

1. Bind every port of the profile's RTP range on the address that routes to
   the registrar (ranges over 4096 ports: both edges and an even sample), to
   find ports other programs already hold.
2. Register with the profile's account and call its echo extension through
   the registrar for up to :data:`PROBE_MAX_S`, sending speech-like audio
   (band-limited noise in talk spurts), with voice activity detection off so
   that RTP flows the whole time. The call ends once the far end's first RTCP
   receiver report is in and at least :data:`PROBE_MIN_S` have passed: the
   outbound figures exist only in that report (RFC 3550 §6.2: at most one
   report per ~5 s).

Measure (pure): from pjsua2's RTCP statistics, loss both ways (inbound as
counted here, RFC 3550 A.3; outbound from the far end's report), interarrival
jitter (RFC 3550 §6.4.1, A.8; inbound as pjmedia computes it, over in-sequence
packets only, which reads low when the network reorders), reordering and RTT;
from the audio the echo sent back, the round trip by cross-correlation
(:func:`measure_round_trip`), half of which is the mouth-to-ear delay of the
path (network both ways, both jitter buffers, the codecs and the echo's own
buffer: an upper bound; the sound devices are not included, the audio checks
measure those). With that delay and each direction's loss, the E-model
(:mod:`diagnostics.network.emodel`) rates every codec pjsua2 offers.

Verdict (pure, :func:`assess_media`; MOS thresholds in :data:`MOS_BANDS`): the
worst of these findings, in this order of precedence::

    finding                                              status  meaning
    no RTP packet arrived from the far end               fail    inbound RTP blocked (firewall/NAT)
    RTP arrives, but the echo sent back silence, or      fail    one-way audio: outbound RTP blocked
      the far end reports >= 90 % of our packets lost
    no free RTP port pair in the profile's range         fail    calls cannot get media ports
    some RTP ports of the range held by other programs   warn    fewer ports; a firewall opening serves others
    MOS >= 4.0 (R >= 79.4)                               pass    G.109: users satisfied or better
    MOS 3.6 to 4.0 (R 70.1 to 79.4)                      warn    G.109: some users dissatisfied
    MOS < 3.6 (R < 70.1)                                 fail    G.109: many users dissatisfied or worse

The MOS that counts is the worse direction's, for the codec the probe
negotiated (G.711 first: every server has it); with audio blocked one way
there is no MOS verdict.
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from diagnostics.audio.dsp import FloatArray, bandpass, to_float
from diagnostics.checks import CheckContext, CheckSpec, run_one
from diagnostics.errors import MeasurementError, UsageError
from diagnostics.network.emodel import CODECS, CodecImpairment, Rating, rate_call
from diagnostics.profile import AccountProfile, HostPort, needs_profile, profile_of
from diagnostics.report import EXIT_USAGE, CheckResult, Report, Status, exit_code

if TYPE_CHECKING:
    from phone.engine import StreamStats

__all__ = [
    "CHECK_ID",
    "MOS_BANDS",
    "PROBE_CODECS",
    "PROBE_MAX_S",
    "PROBE_MIN_S",
    "CodecRating",
    "DirectionStats",
    "MediaMeasurement",
    "MosBand",
    "PortScan",
    "RoundTrip",
    "assess_media",
    "check_media",
    "main",
    "measure_round_trip",
    "probe_media",
    "probe_signal",
    "rate_codecs",
    "route_source",
    "scan_rtp_ports",
]

log = logging.getLogger(__name__)

CHECK_ID = "network.media"

PROBE_MIN_S = 3.0
"""Shortest probe call: enough packets for loss and jitter to mean something."""
PROBE_MAX_S = 8.0
"""Longest probe call: the far end's first RTCP report is due 2.5–7.5 s in (RFC 3550 §6.2, 6.3.1)."""
PROBE_CODECS = ("PCMU/8000", "PCMA/8000")
"""Codecs the probe prefers: G.711, which every server and echo service has; the others stay offered."""
RATE_HZ = 16000
"""The engine's bridge rate: the probe signal and the echo are compared at it."""
MAX_SCANNED_PORTS = 4096
SPEECH_BAND_HZ = (300.0, 3400.0)
ROUND_TRIP_MAX_S = 1.5
DETECTION_CORRELATION = 0.2
"""Normalised correlation peak below which the echo did not bring our audio back. An unrelated
signal of a few seconds reaches about 0.03; our audio back through G.711, concealed loss and
jitter buffers that stretch and shrink it, well over 0.5."""
ONE_WAY_LOSS_PERCENT = 90.0
"""Outbound loss at or above this (far end's report) means outbound RTP is blocked."""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class PortScan:
    """Which ports of the RTP range could be bound on ``address`` (UDP)."""

    address: str
    first_port: int
    last_port: int
    checked: int
    """Ports tried (every port up to MAX_SCANNED_PORTS in the range, else a sample with both edges)."""
    in_use: tuple[int, ...]
    complete: bool
    """Every port of the range was tried."""
    free_pairs: int | None
    """RTP/RTCP pairs (even port and the next) both free; None when only a sample was tried."""

    @property
    def pairs_in_range(self) -> int:
        first = self.first_port + (self.first_port % 2)
        return max(0, (self.last_port - first + 1) // 2)


@dataclass(frozen=True)
class RoundTrip:
    """Delay of our own audio coming back from the echo extension."""

    detected: bool
    delay_ms: float | None
    correlation: float
    """Peak of the in-band cross-correlation normalised by both signals' in-band energy (0 … 1)."""


@dataclass(frozen=True)
class DirectionStats:
    """One direction of the RTP stream."""

    packets: int | None
    """Received (inbound) or sent (outbound)."""
    lost_packets: int | None
    loss_percent: float | None
    jitter_ms: float | None

    @property
    def measured(self) -> bool:
        return self.loss_percent is not None


@dataclass(frozen=True)
class MediaMeasurement:
    """Everything the verdict needs; built from the probe, or by hand in tests."""

    codec: str
    """Negotiated codec, ``PCMU/8000``."""
    inbound: DirectionStats
    """From the far end to us: counted here."""
    outbound: DirectionStats
    """From us to the far end: from its RTCP report (all None without one)."""
    rtt_ms: float | None
    round_trip: RoundTrip
    ports: PortScan
    reordered_packets: int = 0
    jitter_buffer_delay_ms: float | None = None
    jitter_buffer_lost: int = 0
    setup_ms: float = 0.0
    duration_s: float = 0.0
    local_rtp: str = ""
    remote_rtp: str = ""
    sampled_at_unix_s: float = 0.0
    call_placed: bool = True
    """False when the probe could not call at all (no free RTP port pair): nothing but the ports to judge."""

    @property
    def one_way_delay_ms(self) -> float | None:
        """Mouth-to-ear delay of the path (without the sound devices), see :attr:`delay_source`."""
        if self.round_trip.detected and self.round_trip.delay_ms is not None:
            return self.round_trip.delay_ms / 2.0
        if self.rtt_ms is not None:
            return self.rtt_ms / 2.0 + (self.jitter_buffer_delay_ms or 0.0)
        return None

    @property
    def delay_source(self) -> str:
        if self.round_trip.detected and self.round_trip.delay_ms is not None:
            return "half the audio round trip through the echo"
        if self.rtt_ms is not None:
            return "half the RTCP round-trip time plus the jitter buffer"
        return "not measured (rated as 0 ms)"


@dataclass(frozen=True)
class CodecRating:
    """E-model rating of one codec on the measured path, each direction."""

    codec: str
    estimated: bool
    """The codec's Ie/Bpl are estimates (see :data:`diagnostics.network.emodel.CODECS`)."""
    inbound: Rating | None
    """What we would hear."""
    outbound: Rating | None
    """What the far end would hear (None without its RTCP report)."""

    @property
    def worst_mos(self) -> float | None:
        values = [r.mos for r in (self.inbound, self.outbound) if r is not None]
        return min(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "codec": self.codec,
            "estimated": self.estimated,
            "r_inbound": _round(self.inbound.r if self.inbound else None),
            "mos_inbound": _round(self.inbound.mos if self.inbound else None, 3),
            "r_outbound": _round(self.outbound.r if self.outbound else None),
            "mos_outbound": _round(self.outbound.mos if self.outbound else None, 3),
        }


@dataclass(frozen=True)
class MosBand:
    """One row of the MOS verdict table (first row whose ``min_mos`` the MOS reaches wins)."""

    min_mos: float
    status: Status
    label: str


MOS_BANDS: tuple[MosBand, ...] = (
    MosBand(4.0, Status.PASS, "good (G.109: users satisfied)"),
    MosBand(3.6, Status.WARN, "fair (G.109: some users dissatisfied)"),
    MosBand(-math.inf, Status.FAIL, "poor (G.109: many users dissatisfied)"),
)
"""MOS 4.0 and 3.6 are R 79.4 and 70.1 by G.107 eq. B-4: G.109's category edges at R 80 and 70."""


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# --------------------------------------------------------------------------- measure (pure)


def probe_signal(rate_hz: int, seconds: float, level_dbfs: float = -20.0, seed: int = 7) -> FloatArray:
    """Speech-like test audio: 300–3400 Hz noise in talk spurts of 0.15–0.45 s with 0.1–0.3 s pauses.

    On/off like speech, so the echo's copy correlates at one lag only; noise,
    so that the correlation peak is sharp. ``level_dbfs`` is the level while
    active (RFC 7874's −19 dBm0 is about −22 dBFS).
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * rate_hz)
    noise = bandpass(rng.standard_normal(n), rate_hz, *SPEECH_BAND_HZ)
    noise *= 10.0 ** (level_dbfs / 20.0) / np.sqrt(np.mean(np.square(noise)))
    gate = np.zeros(n)
    pos = 0
    fade = int(0.01 * rate_hz)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    while pos < n:
        on = int(rng.uniform(0.15, 0.45) * rate_hz)
        end = min(n, pos + on)
        gate[pos:end] = 1.0
        if end - pos > 2 * fade:
            gate[pos : pos + fade] = ramp
            gate[end - fade : end] = ramp[::-1]
        pos = end + int(rng.uniform(0.1, 0.3) * rate_hz)
    return np.asarray(noise * gate, dtype=np.float64)


def measure_round_trip(sent: Any, received: Any, rate_hz: int, max_delay_s: float = ROUND_TRIP_MAX_S) -> RoundTrip:
    """Delay of ``sent`` in ``received`` (sample i of both at the same instant): in-band cross-correlation.

    The lag of the strongest correlation between 0 and ``max_delay_s``,
    refined by a parabola through the peak; detected when the peak,
    normalised by both signals' in-band energy, reaches :data:`DETECTION_CORRELATION`.
    """
    ref, cap = to_float(np.asarray(sent)), to_float(np.asarray(received))
    if len(ref) == 0 or len(cap) == 0 or not np.any(cap):
        return RoundTrip(False, None, 0.0)
    max_lag = min(int(max_delay_s * rate_hz), len(cap) - 1)
    n_fft = int(2 ** np.ceil(np.log2(len(ref) + len(cap))))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate_hz)
    band = (freqs >= SPEECH_BAND_HZ[0]) & (freqs <= SPEECH_BAND_HZ[1])
    ref_spectrum, cap_spectrum = np.fft.rfft(ref, n_fft) * band, np.fft.rfft(cap, n_fft) * band
    r = np.abs(np.fft.irfft(np.conj(ref_spectrum) * cap_spectrum, n_fft)[: max_lag + 1])
    k = int(np.argmax(r))
    # In-band energies by Parseval (the same scaling as irfft's correlation values).
    energy = np.sum(np.abs(ref_spectrum) ** 2) * np.sum(np.abs(cap_spectrum) ** 2)
    correlation = float(r[k] * n_fft / math.sqrt(energy)) if energy > 0 else 0.0
    lag = float(k)
    if 0 < k < len(r) - 1:
        a, b, c = float(r[k - 1]), float(r[k]), float(r[k + 1])
        denom = a - 2.0 * b + c
        if denom < 0:
            lag = k + 0.5 * (a - c) / denom
    detected = correlation >= DETECTION_CORRELATION
    return RoundTrip(detected, 1000.0 * lag / rate_hz if detected else None, correlation)


def rate_codecs(
    one_way_delay_ms: float, inbound_loss_percent: float | None, outbound_loss_percent: float | None,
    codecs: Sequence[CodecImpairment] = CODECS,
) -> tuple[CodecRating, ...]:  # fmt: skip
    """E-model rating of every codec in ``codecs`` for the measured delay and each direction's loss."""

    def one(codec: CodecImpairment, loss: float | None) -> Rating | None:
        return None if loss is None else rate_call(codec, one_way_delay_ms, loss)

    return tuple(
        CodecRating(c.key, c.estimated, one(c, inbound_loss_percent), one(c, outbound_loss_percent)) for c in codecs
    )


def _band(mos: float) -> MosBand:
    return next(band for band in MOS_BANDS if mos >= band.min_mos)


@dataclass(frozen=True)
class _Finding:
    status: Status
    summary: str
    remedy: str | None


def _port_findings(ports: PortScan) -> list[_Finding]:
    span = f"{ports.first_port}–{ports.last_port}"
    count = len(ports.in_use)
    shown = ", ".join(map(str, ports.in_use[:8])) + (" …" if count > 8 else "")
    held = f"{count} port{'s' if count != 1 else ''} in use ({shown})"
    holders = f"see 'ss -lunp' for ports {span}"
    if ports.free_pairs == 0:
        why = held if count else "the range holds no even RTP port with its RTCP port above it"
        return [
            _Finding(
                Status.FAIL,
                f"no free RTP port pair in {span}: {why}",
                f"close the programs holding them ({holders}) or set network.rtp_ports to a free range"
                if count
                else "set network.rtp_ports to a range of at least two ports starting at an even one",
            )
        ]
    if not count:
        return []
    scope = f"of {ports.checked} checked " if not ports.complete else ""
    return [
        _Finding(
            Status.WARN,
            f"{count} RTP port{'s' if count != 1 else ''} {scope}in {span} "
            f"{'are' if count != 1 else 'is'} held by other programs ({shown})",
            f"calls get fewer media ports, and a firewall opening for {span} serves those programs too: "
            f"close them ({holders}) or move network.rtp_ports",
        )
    ]


def _flow_findings(m: MediaMeasurement) -> list[_Finding]:
    span = f"{m.ports.first_port}–{m.ports.last_port}"
    if not m.inbound.packets:
        return [_Finding(
            Status.FAIL, "one-way or no audio: inbound RTP blocked (firewall/NAT): no RTP packet arrived from the "
            f"far end ({m.remote_rtp or 'unknown address'}) while ours went out",
            f"allow inbound UDP to ports {span} on this machine and on the network's firewall; behind NAT, the "
            "server must send media back to where ours comes from (symmetric RTP/latching, an SBC) or use STUN/ICE",
        )]  # fmt: skip
    far_end_lost = m.outbound.loss_percent is not None and m.outbound.loss_percent >= ONE_WAY_LOSS_PERCENT
    silent_echo = not m.round_trip.detected and (m.inbound.loss_percent or 0.0) < 50.0
    if far_end_lost or silent_echo:
        why = (
            f"the far end reports {m.outbound.loss_percent:.0f} % of our packets lost"
            if far_end_lost and m.outbound.loss_percent is not None
            else "the echo sent back silence"
        )
        return [_Finding(
            Status.FAIL, f"one-way audio: outbound RTP does not reach the far end ({why}); inbound RTP arrives",
            f"allow outbound UDP from ports {span} to the media server ({m.remote_rtp or 'its address'}); "
            "a SIP ALG or NAT that rewrites SDP wrongly has the same effect",
        )]  # fmt: skip
    return []


def _quality_finding(m: MediaMeasurement, ratings: Sequence[CodecRating]) -> _Finding | None:
    mine = next((r for r in ratings if r.codec.lower() == m.codec.lower()), None)
    if mine is None or mine.worst_mos is None:
        return None
    mos = mine.worst_mos
    band = _band(mos)
    direction, rating = min(
        ((name, r) for name, r in (("inbound", mine.inbound), ("outbound", mine.outbound)) if r is not None),
        key=lambda item: item[1].mos,
    )
    delay = m.one_way_delay_ms or 0.0
    loss = {"inbound": m.inbound.loss_percent, "outbound": m.outbound.loss_percent}[direction] or 0.0
    jitter = " / ".join(
        f"{name} {value:.1f} ms" for name, value in (("in", m.inbound.jitter_ms), ("out", m.outbound.jitter_ms))
        if value is not None
    )  # fmt: skip
    summary = (
        f"call quality {band.label}: MOS {mos:.2f} (R {rating.r:.1f}, {m.codec}, {direction}); "
        f"loss in {m.inbound.loss_percent or 0.0:.1f} % / out "
        + (f"{m.outbound.loss_percent:.1f} %" if m.outbound.loss_percent is not None else "not reported")
        + f", delay ≈ {delay:.0f} ms one way"
        + (f", jitter {jitter}" if jitter else "")
    )
    if band.status is Status.PASS:
        return _Finding(band.status, summary, None)
    if rating.ie_eff >= rating.id_:
        remedy = (
            f"{loss:.1f} % of packets are lost {direction}: use a wired connection instead of Wi-Fi, look for a "
            "saturated uplink (uploads, backups) and ask for QoS (DSCP EF) for voice"
        )
    else:
        remedy = (
            f"the mouth-to-ear delay (≈ {delay:.0f} ms) is too long: avoid VPN detours and distant servers; "
            "jitter makes the jitter buffers add delay, so check for a congested link"
        )
    return _Finding(band.status, summary, remedy)


def assess_media(m: MediaMeasurement) -> CheckResult:
    """The verdict of ``network.media`` for one measurement (pure: see the table in the module docstring)."""
    delay = m.one_way_delay_ms
    ratings = rate_codecs(delay or 0.0, m.inbound.loss_percent if m.inbound.packets else None,
                          m.outbound.loss_percent)  # fmt: skip
    flow = _flow_findings(m) if m.call_placed else []
    findings = flow + _port_findings(m.ports)
    if m.call_placed and not flow:  # with audio blocked one way, a quality rating would only mislead
        quality = _quality_finding(m, ratings)
        if quality is not None:
            findings.append(quality)
    if not findings:  # nothing to rate: the negotiated codec is not in the E-model table
        findings.append(_Finding(Status.PASS, f"RTP flows both ways ({m.codec}); codec not rated by the E-model",
                                 None))  # fmt: skip
    worst = max(findings, key=lambda f: f.status.severity)
    ordered = [worst] + [f for f in findings if f is not worst]
    summary = "; ".join(f.summary for f in ordered)
    remedies = [f.remedy for f in ordered if f.remedy]
    mine = next((r for r in ratings if r.codec.lower() == m.codec.lower()), None)
    measurements: dict[str, Any] = {
        "codec": m.codec,
        "mos": _round(mine.worst_mos if mine else None, 3),
        "mos_inbound": _round(mine.inbound.mos if mine and mine.inbound else None, 3),
        "mos_outbound": _round(mine.outbound.mos if mine and mine.outbound else None, 3),
        "r_inbound": _round(mine.inbound.r if mine and mine.inbound else None),
        "r_outbound": _round(mine.outbound.r if mine and mine.outbound else None),
        "one_way_delay_ms": _round(delay),
        "delay_source": m.delay_source,
        "round_trip_ms": _round(m.round_trip.delay_ms),
        "round_trip_correlation": _round(m.round_trip.correlation, 3),
        "rtt_ms": _round(m.rtt_ms),
        "inbound_packets": m.inbound.packets,
        "inbound_lost_packets": m.inbound.lost_packets,
        "inbound_loss_percent": _round(m.inbound.loss_percent, 3),
        "inbound_jitter_ms": _round(m.inbound.jitter_ms, 3),
        "inbound_reordered_packets": m.reordered_packets,
        "outbound_packets": m.outbound.packets,
        "outbound_lost_packets": m.outbound.lost_packets,
        "outbound_loss_percent": _round(m.outbound.loss_percent, 3),
        "outbound_jitter_ms": _round(m.outbound.jitter_ms, 3),
        "jitter_buffer_delay_ms": _round(m.jitter_buffer_delay_ms),
        "jitter_buffer_lost_frames": m.jitter_buffer_lost,
        "codec_ratings": [r.to_dict() for r in ratings],
        "rtp_ports_first": m.ports.first_port,
        "rtp_ports_last": m.ports.last_port,
        "rtp_ports_checked": m.ports.checked,
        "rtp_ports_in_use": list(m.ports.in_use[:50]),
        "rtp_ports_in_use_count": len(m.ports.in_use),
        "rtp_port_pairs_free": m.ports.free_pairs,
        "local_rtp": m.local_rtp,
        "remote_rtp": m.remote_rtp,
        "setup_ms": _round(m.setup_ms),
        "probe_duration_s": _round(m.duration_s, 3),
        "sampled_at_unix_s": round(m.sampled_at_unix_s, 6),
    }
    return CheckResult(CHECK_ID, worst.status, summary, measurements, "; ".join(remedies) or None)


# --------------------------------------------------------------------------- probe (I/O)


def route_source(host: str, port: int) -> str:
    """The local address this machine sends from to reach ``host`` (a connected UDP socket; nothing is sent)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise MeasurementError(
            f"cannot resolve the registrar {host!r}: {exc}",
            remedy="check the profile's registrar/domain and this machine's DNS",
        ) from exc
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
        except OSError as exc:
            raise MeasurementError(
                f"no route to the registrar {host}:{port}: {exc.strerror}",
                remedy="check the network connection and the default route",
            ) from exc
        return str(sock.getsockname()[0])


def _ports_to_scan(first: int, last: int, limit: int) -> tuple[list[int], bool]:
    count = last - first + 1
    if count <= limit:
        return list(range(first, last + 1)), True
    step = count / (limit - 2)
    sample = {first, first + 1, last - 1, last} | {first + int(i * step) for i in range(limit - 4)}
    return sorted(p for p in sample if first <= p <= last), False


def scan_rtp_ports(address: str, first: int, last: int, limit: int = MAX_SCANNED_PORTS) -> PortScan:
    """Try to bind each UDP port of [first, last] on ``address`` (one at a time); which ones are taken."""
    ports, complete = _ports_to_scan(first, last, limit)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    in_use: list[int] = []
    for port in ports:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    in_use.append(port)
                    continue
                raise MeasurementError(
                    f"cannot bind UDP {address}:{port} to test the RTP range: {exc.strerror}",
                    remedy="ports below 1024 need privileges; check network.rtp_ports in the profile",
                ) from exc
    free_pairs = None
    if complete:
        taken = set(in_use)
        start = first + (first % 2)
        free_pairs = sum(1 for p in range(start, last, 2) if p not in taken and p + 1 not in taken)
    return PortScan(address, first, last, len(ports), tuple(in_use), complete, free_pairs)


def _direction_stats(stats: StreamStats | None) -> tuple[DirectionStats, DirectionStats]:
    if stats is None:
        return DirectionStats(0, None, None, None), DirectionStats(None, None, None, None)
    inbound = DirectionStats(stats.rx_packets, stats.rx_lost_packets, stats.rx_loss_percent, stats.rx_jitter_ms)
    outbound = DirectionStats(stats.tx_packets, stats.tx_lost_packets, stats.tx_loss_percent, stats.tx_jitter_ms)
    return inbound, outbound


def _stop_when_reported(sample: StreamStats) -> bool:
    """Enough: the far end's report is in, or nothing at all arrived (waiting longer changes nothing)."""
    return sample.duration_s >= PROBE_MIN_S and (sample.tx_reports > 0 or sample.rx_packets == 0)


def probe_media(profile: AccountProfile, max_seconds: float = PROBE_MAX_S) -> MediaMeasurement:
    """Scan the RTP ports, register, call the echo extension and measure (see the module docstring).

    Raises :class:`MeasurementError` when it cannot get as far as a call with media.
    """
    from phone.engine import Engine, EngineConfig, SipAccount  # pjsua2 only when a probe runs

    if not profile.echo_extension:
        raise UsageError(f"{profile.path}: field 'checks.echo_extension' is missing")
    registrar = profile.registrar or HostPort(profile.domain)
    port = registrar.port or profile.transport.default_port
    local = route_source(registrar.host, port)
    ports = scan_rtp_ports(local, *profile.rtp_ports)
    if ports.free_pairs == 0:  # no media port for a call: the port scan is the whole verdict
        nothing = DirectionStats(None, None, None, None)
        return MediaMeasurement("none", nothing, nothing, None, RoundTrip(False, None, 0.0), ports, call_placed=False)
    config = EngineConfig(
        transports=(profile.transport,),
        bound_address=local,
        tls_ca_file=profile.tls_ca_file,
        tls_verify_server=profile.tls_verify,
        rtp_ports=profile.rtp_ports,
        codecs=PROBE_CODECS,
        vad=False,
    )
    account = SipAccount(
        user=profile.user,
        domain=profile.domain,
        registrar=str(registrar if registrar.port else _with_port(registrar.host, port)),
        password=profile.password,
        transport=profile.transport,
        auth_user=profile.auth_user or None,
        display_name=profile.display_name,
    )
    signal = probe_signal(RATE_HZ, max_seconds + 1.0)
    target = f"sip:{profile.echo_extension}@{profile.domain}"
    with Engine(config) as engine:
        acc, registered = engine.register(account)
        if not registered.ok:
            raise MeasurementError(
                f"registration as {profile.aor} at {account.registrar} failed: {registered.code} {registered.reason}",
                remedy="run the sip.register check for the cause; the media test needs a registered account",
            )
        outcome = engine.call(acc, target, signal, seconds=max_seconds, stop_when=_stop_when_reported)
    if not outcome.answered:
        raise MeasurementError(
            f"the echo extension {target} did not answer: {outcome.code} {outcome.reason}",
            remedy="check checks.echo_extension in the profile; a 408 can also mean a firewall drops SIP "
            "(fragmented INVITEs over UDP) or that the server cannot reach this machine",
        )
    stats = outcome.stats
    inbound, outbound = _direction_stats(stats)
    round_trip = measure_round_trip(signal[: len(outcome.received)], outcome.received, outcome.sample_rate_hz)
    log.info("media probe: %s, round trip %s", stats, round_trip)
    return MediaMeasurement(
        codec=stats.codec if stats else "unknown",
        inbound=inbound,
        outbound=outbound,
        rtt_ms=stats.rtt_ms if stats else None,
        round_trip=round_trip,
        ports=ports,
        reordered_packets=stats.rx_reordered_packets if stats else 0,
        jitter_buffer_delay_ms=stats.jitter_buffer_delay_ms if stats else None,
        jitter_buffer_lost=stats.jitter_buffer_lost if stats else 0,
        setup_ms=outcome.setup_ms,
        duration_s=stats.duration_s if stats else 0.0,
        local_rtp=stats.local_rtp if stats else "",
        remote_rtp=stats.remote_rtp if stats else "",
        sampled_at_unix_s=stats.sampled_at_unix_s if stats else time.time(),
    )


def _with_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_media(ctx: CheckContext) -> CheckResult:
    """Check ``network.media`` (see the module docstring)."""
    profile = profile_of(ctx)
    if profile is None:
        return needs_profile(CHECK_ID)
    if not profile.echo_extension:
        return CheckResult(
            CHECK_ID, Status.SKIP, "not checked: the profile names no echo extension to call",
            remedy="set checks.echo_extension in the profile to a number that answers and sends your audio back",
        )  # fmt: skip
    return assess_media(probe_media(profile))


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m diagnostics.network.media --profile FILE [--json] [-v]``: this one check."""
    parser = argparse.ArgumentParser(prog="python -m diagnostics.network.media", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, required=True, help="account profile (TOML)")
    parser.add_argument("--json", action="store_true", help="print only the JSON report on stdout")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs on stderr")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s", force=True)  # fmt: skip
    ctx = CheckContext(profile=args.profile, interactive=False)
    try:
        result = run_one(CheckSpec(CHECK_ID, "Media path (RTP)", check_media), ctx)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    report = Report(checks=(result,))
    if args.json:
        from diagnostics.render import render_json

        render_json(report, sys.stdout)
    else:
        from rich.console import Console

        from diagnostics.render import render_text

        render_text(report, Console())
    return exit_code([result.status])


if __name__ == "__main__":
    sys.exit(main())
