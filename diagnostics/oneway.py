"""One-way audio: which leg of a call is broken, and the most likely cause, ranked by evidence.

"They can't hear me" (outbound) and "I can't hear them" (inbound) have a
handful of causes. The pjsip docs' manual recipe: read the call's RTP counts
(~50 packets/s each way is normal, 0 received means a firewall or NAT), compare
the peer's address in the SDP with where its RTP really comes from. Here the
evidence is gathered by a test call to an echo (``diagnostics.oneway_probe``)
plus the microphone, STUN, the SIP ALG check and this machine's firewall rules,
and judged by the table :data:`CAUSES`: every row whose test finds evidence
scores, the best score is the verdict, the others are listed after it.

Pure: evidence in, check results out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from diagnostics.report import CheckResult, Status

__all__ = [
    "CAUSES",
    "Cause",
    "Evidence",
    "Finding",
    "MicEvidence",
    "NetEvidence",
    "RtpEvidence",
    "assess",
    "rank",
]

EXPECTED_PPS = 50.0
"""RTP packets per second of a 20 ms packetisation: what each direction should carry."""
FLOWING_FRACTION = 0.6
"""A direction flows when it carries at least this share of :data:`EXPECTED_PPS` (the first packets start late)."""
SILENT_MIC_DBFS = -70.0
"""Below this RMS the microphone delivers nothing a listener would hear (the test bed's noise floor is −70)."""
SPEAKER_SILENT_DBFS = -60.0


@dataclass(frozen=True)
class MicEvidence:
    device: str
    level_dbfs: float | None
    """RMS of what the microphone delivered during the test call; None without a microphone."""
    peak_dbfs: float | None
    digital_silence: bool
    """Every sample exactly zero: nothing is connected or the OS mutes it."""
    os_muted: bool | None
    """The sound server's mute flag of the input; None when the OS does not say."""


@dataclass(frozen=True)
class RtpEvidence:
    target: str
    answered: bool
    code: int
    reason: str
    codec: str = ""
    seconds: float = 0.0
    tx_packets: int = 0
    rx_packets: int = 0
    local_sdp: str = ""
    """Our RTP address as our SDP offered it (``c=``/``m=``)."""
    remote_sdp: str = ""
    """The far end's RTP address from its SDP: where we send."""
    rx_source: str = ""
    """Where the RTP we received really came from."""
    far_end_reports: int = 0
    """RTCP receiver reports from the far end: it receives our RTP (or at least our RTCP)."""
    far_end_lost_packets: int | None = None
    echo_detected: bool = False
    """The signal we sent came back: our RTP reached the far end and its RTP reached us."""
    echo_correlation: float = 0.0
    round_trip_ms: float | None = None
    on_hold: bool = False
    remote_hold: bool = False
    muted: bool = False
    speaker_level_dbfs: float | None = None
    """Loudest 20 ms frame handed to the speaker during the call; None without an output device."""
    series: Mapping[str, list[float]] = field(default_factory=dict)
    """Statistics over the call (t_s, rx_pps, tx_pps, rx_loss_percent, rx_jitter_ms) for the report's plot."""

    def pps(self, packets: int) -> float:
        return packets / self.seconds if self.seconds > 0 else 0.0

    @property
    def rx_flowing(self) -> bool:
        return self.pps(self.rx_packets) >= FLOWING_FRACTION * EXPECTED_PPS

    @property
    def tx_flowing(self) -> bool:
        return self.pps(self.tx_packets) >= FLOWING_FRACTION * EXPECTED_PPS


@dataclass(frozen=True)
class NetEvidence:
    mapped_address: str | None = None
    """Our address as the STUN server saw it (``ip:port``); None without a STUN answer."""
    stun_note: str = ""
    sip_alg: str | None = None
    """Status of the ``network.sip_alg`` check (``fail``: a middlebox rewrote our SIP), None if not run."""
    sip_alg_summary: str = ""
    firewall_known: bool = False
    firewall_inbound: tuple[str, ...] = ()
    """This machine's rules dropping UDP to our RTP port."""
    firewall_outbound: tuple[str, ...] = ()
    firewall_note: str = ""


@dataclass(frozen=True)
class Evidence:
    mic: MicEvidence | None
    rtp: RtpEvidence
    net: NetEvidence


def _ip(hostport: str) -> str:
    host = hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 or hostport.startswith("[") else hostport
    return host.strip("[]")


def _private(hostport: str) -> bool:
    try:
        return ipaddress.ip_address(_ip(hostport)).is_private
    except ValueError:
        return False


def _sdp_behind_nat(e: Evidence) -> bool:
    """Our SDP offers an address the world does not see us at (STUN's mapped address differs)."""
    mapped, local = e.net.mapped_address, e.rtp.local_sdp
    return bool(mapped and local and _ip(mapped) != _ip(local))


# --------------------------------------------------------------------------- the causes

Score = Callable[[Evidence], float]


@dataclass(frozen=True)
class Cause:
    id: str
    direction: str
    """``outbound`` (they can't hear you), ``inbound`` (you can't hear them) or ``both``."""
    score: Score
    """0 when the evidence does not point here; up to 1 when it proves it."""
    summary: str
    """What is wrong, in words; ``{…}`` fields come from :func:`_values`."""
    remedy: str
    status: Status = Status.FAIL
    """``warn`` for a fault the call survived (the far end worked around it)."""


def _mic_muted(e: Evidence) -> float:
    return 0.95 if e.mic is not None and e.mic.os_muted else 0.0


def _mic_dead(e: Evidence) -> float:
    if e.mic is None or e.mic.os_muted:
        return 0.0
    if e.mic.digital_silence:
        return 0.9
    return 0.7 if e.mic.level_dbfs is not None and e.mic.level_dbfs < SILENT_MIC_DBFS else 0.0


def _no_call(e: Evidence) -> float:
    return 1.0 if not e.rtp.answered else 0.0


def _held(e: Evidence) -> float:
    return 0.9 if e.rtp.answered and (e.rtp.on_hold or e.rtp.remote_hold) else 0.0


def _muted_call(e: Evidence) -> float:
    return 0.9 if e.rtp.answered and e.rtp.muted else 0.0


def _inbound_missing(e: Evidence) -> bool:
    return e.rtp.answered and not e.rtp.rx_flowing and e.rtp.tx_flowing


def _firewall_in(e: Evidence) -> float:
    return 0.95 if _inbound_missing(e) and e.net.firewall_inbound else 0.0


def _alg(e: Evidence) -> float:
    return 0.9 if _inbound_missing(e) and e.net.sip_alg == "fail" else 0.0


def _alg_survived(e: Evidence) -> float:
    """An ALG rewrote our SDP, yet audio flows: the far end latched onto where our RTP comes from."""
    return 0.4 if e.rtp.answered and e.rtp.rx_flowing and e.net.sip_alg == "fail" else 0.0


def _nat_sdp(e: Evidence) -> float:
    return 0.85 if _inbound_missing(e) and _sdp_behind_nat(e) else 0.0


def _inbound_blocked(e: Evidence) -> float:
    return 0.5 if _inbound_missing(e) else 0.0


def _outbound_missing(e: Evidence) -> bool:
    """Audio comes in, but what we send does not come back and the far end reports nothing from us."""
    return e.rtp.answered and e.rtp.rx_flowing and not e.rtp.echo_detected and not e.rtp.muted


def _firewall_out(e: Evidence) -> float:
    return 0.95 if e.rtp.answered and not e.rtp.echo_detected and e.net.firewall_outbound else 0.0


def _outbound_lost(e: Evidence) -> float:
    if not _outbound_missing(e):
        return 0.0
    return 0.8 if e.rtp.far_end_reports == 0 else 0.6


def _speaker(e: Evidence) -> float:
    level = e.rtp.speaker_level_dbfs
    if not e.rtp.echo_detected or level is None:
        return 0.0
    return 0.7 if level < SPEAKER_SILENT_DBFS else 0.0


CAUSES: tuple[Cause, ...] = (
    Cause("call-failed", "both", _no_call, "the test call to {target} failed: {code} {reason}",
          "run 'phonekit check sip' for the cause (registration, DNS, the echo extension)"),
    Cause("mic-muted", "outbound", _mic_muted, "the microphone '{mic}' is muted in the sound settings",
          "unmute the input in the sound settings (or the mute key on the headset) and call again"),
    Cause("mic-dead", "outbound", _mic_dead, "the microphone '{mic}' delivers no signal ({mic_level})",
          "check the headset plug or switch, pick the right input with --input, raise its input level"),
    Cause("call-muted", "outbound", _muted_call, "the phone has the call muted",
          "unmute the call ('unmute' in the terminal phone)"),
    Cause("on-hold", "both", _held, "the call is on hold", "resume the call"),
    Cause("firewall-inbound", "inbound", _firewall_in,
          "this machine's firewall drops incoming RTP to port {local_port}: {firewall_in}",
          "allow incoming UDP to the phone's RTP ports ({local_port} …) in this machine's firewall"),
    Cause("sip-alg", "inbound", _alg,
          "a SIP ALG on the way rewrites our SIP and SDP ({alg}), so the far end sends RTP to the wrong place",
          "turn off 'SIP ALG' / 'SIP helper' in the router or firewall, or use SIP over TLS so it cannot rewrite"),
    Cause("sip-alg-latched", "inbound", _alg_survived,
          "a SIP ALG on the way rewrites our SIP and SDP ({alg}); audio flows only because the far end sends "
          "RTP to where ours comes from: with one that follows the SDP, you would not hear them",
          "turn off 'SIP ALG' / 'SIP helper' in the router or firewall, or use SIP over TLS so it cannot rewrite",
          Status.WARN),
    Cause("nat-private-sdp", "inbound", _nat_sdp,
          "behind NAT our SDP offers {local_sdp} but the world sees us at {mapped}: the far end sends RTP to "
          "the private address and the NAT drops it (no symmetric RTP / rport handling on the far side)",
          "let the server handle NAT (symmetric RTP / media relay, rtpengine), or configure the phone's public "
          "address (STUN) so that the SDP carries it"),
    Cause("inbound-blocked", "inbound", _inbound_blocked,
          "no RTP arrives ({rx_packets} packets in {seconds:.1f} s) while ours goes out ({tx_packets})",
          "a firewall or NAT between here and {remote_sdp} drops incoming UDP: open the RTP ports or use a media "
          "relay; compare with 'phonekit check network'"),
    Cause("firewall-outbound", "outbound", _firewall_out,
          "this machine's firewall drops outgoing RTP from port {local_port}: {firewall_out}",
          "allow outgoing UDP from the phone's RTP ports in this machine's firewall"),
    Cause("outbound-lost", "outbound", _outbound_lost,
          "our RTP does not reach the far end: {rx_packets} packets came in, but not our signal "
          "(correlation {correlation:.2f}), and the far end reported {reports} RTCP receiver reports",
          "a firewall on the way drops outgoing UDP to {remote_sdp}, or the far end listens elsewhere than its SDP "
          "says: check outgoing UDP rules and the far end's NAT"),
    Cause("speaker-silent", "inbound", _speaker,
          "the far end's audio arrives but reaches the speaker '{speaker}' at only {speaker_level}",
          "check the speaker volume and mute, and that --output names the device you listen on"),
)  # fmt: skip

DIRECTION_WORDS = {
    "outbound": "outbound (they can't hear you)",
    "inbound": "inbound (you can't hear them)",
    "both": "both directions",
}


@dataclass(frozen=True)
class Finding:
    cause: Cause
    score: float
    text: str
    remedy: str


def _db(value: float | None) -> str:
    return "no level" if value is None else f"{value:.1f} dBFS"


def _values(e: Evidence) -> dict[str, Any]:
    local = e.rtp.local_sdp
    return {
        "target": e.rtp.target,
        "code": e.rtp.code,
        "reason": e.rtp.reason,
        "mic": e.mic.device if e.mic else "-",
        "mic_level": _db(e.mic.level_dbfs if e.mic else None),
        "local_sdp": local or "?",
        "local_port": local.rsplit(":", 1)[-1] if local else "?",
        "remote_sdp": e.rtp.remote_sdp or "the far end",
        "mapped": e.net.mapped_address or "?",
        "alg": e.net.sip_alg_summary or "network.sip_alg failed",
        "firewall_in": "; ".join(e.net.firewall_inbound),
        "firewall_out": "; ".join(e.net.firewall_outbound),
        "rx_packets": e.rtp.rx_packets,
        "tx_packets": e.rtp.tx_packets,
        "seconds": e.rtp.seconds,
        "correlation": e.rtp.echo_correlation,
        "reports": e.rtp.far_end_reports,
        "speaker": "the output",
        "speaker_level": _db(e.rtp.speaker_level_dbfs),
    }


def rank(e: Evidence) -> list[Finding]:
    """Every cause with evidence, best first."""
    values = _values(e)
    found = [(cause, cause.score(e)) for cause in CAUSES]
    ranked = sorted(((c, s) for c, s in found if s > 0), key=lambda cs: -cs[1])
    return [Finding(c, s, c.summary.format(**values), c.remedy.format(**values)) for c, s in ranked]


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _rtp_plot(rtp: RtpEvidence) -> dict[str, Any]:
    s = rtp.series
    if not s.get("t_s"):
        return {}
    return {"rtp_over_time": {
        "kind": "line", "title": "RTP during the test call", "x_label": "s", "y_label": "packets/s",
        "series": [{"name": "received", "x": s["t_s"], "y": s["rx_pps"]},
                   {"name": "sent", "x": s["t_s"], "y": s["tx_pps"]}],
        "hlines": [{"y": EXPECTED_PPS, "label": "expected (20 ms packets)"}], "vlines": [], "y_range": None,
    }}  # fmt: skip


def assess(e: Evidence) -> tuple[CheckResult, ...]:
    """Each leg as a check result, then the verdict ``diagnose.one_way`` naming the direction and the cause."""
    rtp, net = e.rtp, e.net
    legs: list[CheckResult] = []
    if e.mic is not None:
        mic_ok = not (e.mic.digital_silence or e.mic.os_muted
                      or (e.mic.level_dbfs is not None and e.mic.level_dbfs < SILENT_MIC_DBFS))  # fmt: skip
        legs.append(CheckResult(
            "diagnose.mic", Status.PASS if mic_ok else Status.FAIL,
            f"microphone '{e.mic.device}': {_db(e.mic.level_dbfs)}"
            + (", muted in the OS" if e.mic.os_muted else "") + (", digital silence" if e.mic.digital_silence else ""),
            {"level_dbfs": _round(e.mic.level_dbfs), "peak_dbfs": _round(e.mic.peak_dbfs),
             "digital_silence": e.mic.digital_silence, "os_muted": e.mic.os_muted},
            remedy=None if mic_ok else "unmute or fix the microphone (see diagnose.one_way)",
        ))  # fmt: skip
    rtp_m = {
        "target": rtp.target, "answered": rtp.answered, "sip_code": rtp.code, "codec": rtp.codec,
        "seconds": _round(rtp.seconds, 2), "tx_packets": rtp.tx_packets, "tx_pps": _round(rtp.pps(rtp.tx_packets)),
        "rx_packets": rtp.rx_packets, "rx_pps": _round(rtp.pps(rtp.rx_packets)), "local_sdp": rtp.local_sdp,
        "remote_sdp": rtp.remote_sdp, "rx_source": rtp.rx_source, "far_end_reports": rtp.far_end_reports,
        "far_end_lost_packets": rtp.far_end_lost_packets, "echo_detected": rtp.echo_detected,
        "echo_correlation": _round(rtp.echo_correlation, 3), "round_trip_ms": _round(rtp.round_trip_ms),
        "on_hold": rtp.on_hold, "remote_hold": rtp.remote_hold, "muted": rtp.muted,
        "mapped_address": net.mapped_address, "sip_alg": net.sip_alg, "firewall_known": net.firewall_known,
        "firewall_inbound": list(net.firewall_inbound), "firewall_outbound": list(net.firewall_outbound),
    }  # fmt: skip
    if rtp.answered:
        out_ok = rtp.echo_detected
        legs.append(CheckResult(
            "diagnose.outbound", Status.PASS if out_ok else Status.FAIL,
            f"sent {rtp.tx_packets} RTP packets ({rtp.pps(rtp.tx_packets):.0f}/s) to {rtp.remote_sdp}; "
            + (f"they came back as echo after {rtp.round_trip_ms:.0f} ms" if out_ok and rtp.round_trip_ms is not None
               else "the far end did not return them"),
            {k: rtp_m[k] for k in ("tx_packets", "tx_pps", "remote_sdp", "far_end_reports", "echo_detected",
                                   "echo_correlation", "round_trip_ms")},
            remedy=None if out_ok else "see diagnose.one_way for the cause",
        ))  # fmt: skip
        source = f" from {rtp.rx_source}" if rtp.rx_source else ""
        moved = rtp.rx_source and rtp.remote_sdp and rtp.rx_source != rtp.remote_sdp
        legs.append(CheckResult(
            "diagnose.inbound", Status.PASS if rtp.rx_flowing else Status.FAIL,
            f"received {rtp.rx_packets} RTP packets ({rtp.pps(rtp.rx_packets):.0f}/s){source} on {rtp.local_sdp}"
            + (f" (the SDP said {rtp.remote_sdp}: the far end is behind NAT, we answer where it sends from)"
               if moved else ""),
            {k: rtp_m[k] for k in ("rx_packets", "rx_pps", "rx_source", "remote_sdp", "local_sdp", "mapped_address")},
            remedy=None if rtp.rx_flowing else "see diagnose.one_way for the cause",
        ))  # fmt: skip
    findings = rank(e)
    m: dict[str, Any] = dict(rtp_m)
    m["causes"] = [{"id": f.cause.id, "direction": f.cause.direction, "score": round(f.score, 2), "text": f.text,
                    "remedy": f.remedy} for f in findings]  # fmt: skip
    if not findings:
        verdict = CheckResult("diagnose.one_way", Status.PASS,
                              f"both directions work: {rtp.tx_packets} packets out, {rtp.rx_packets} in, the echo "
                              f"came back after {rtp.round_trip_ms or 0:.0f} ms ({rtp.codec})", m,
                              plots=_rtp_plot(rtp))  # fmt: skip
    else:
        top = findings[0]
        others = f" (also possible: {', '.join(f.cause.id for f in findings[1:])})" if len(findings) > 1 else ""
        words = DIRECTION_WORDS[top.cause.direction] + (" at risk" if top.cause.status is Status.WARN else "")
        verdict = CheckResult("diagnose.one_way", top.cause.status, f"{words}: {top.text}{others}", m,
                              remedy=top.remedy, plots=_rtp_plot(rtp))  # fmt: skip
    return (*legs, verdict)
