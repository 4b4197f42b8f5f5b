"""Live call quality from a call's RTP/RTCP statistics: jitter, loss, round trip and an E-model MOS.

Pure: takes a :class:`phone.engine.StreamStats` sample (duck-typed, so this
module needs no pjsua2) and rates it with ITU-T G.107 (``diagnostics.network.emodel``).
The one-way delay is half the RTCP round trip (RFC 3550 §6.4.1) plus the local
jitter buffer's mean delay; before the first RTCP round trip completes (~5 s into
a call) only the jitter buffer is known and the figure says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from diagnostics.network.emodel import codec_impairment, rate_call

__all__ = ["CallQuality", "quality_of"]


class _Stats(Protocol):
    """The fields of ``phone.engine.StreamStats`` read here (read-only)."""

    @property
    def codec(self) -> str: ...
    @property
    def rx_packets(self) -> int: ...
    @property
    def rx_loss_percent(self) -> float: ...
    @property
    def rx_jitter_ms(self) -> float | None: ...
    @property
    def tx_packets(self) -> int: ...
    @property
    def tx_loss_percent(self) -> float | None: ...
    @property
    def tx_jitter_ms(self) -> float | None: ...
    @property
    def rtt_ms(self) -> float | None: ...
    @property
    def jitter_buffer_delay_ms(self) -> float | None: ...
    @property
    def duration_s(self) -> float: ...


@dataclass(frozen=True)
class CallQuality:
    codec: str
    duration_s: float
    rx_packets: int
    tx_packets: int
    rx_loss_percent: float
    """Inbound loss measured here."""
    tx_loss_percent: float | None
    """Outbound loss as the far end reported it (RTCP); None before its first report."""
    rx_jitter_ms: float | None
    tx_jitter_ms: float | None
    rtt_ms: float | None
    one_way_delay_ms: float
    delay_from_rtcp: bool
    """False until an RTCP round trip completed: the delay is then the jitter buffer's alone."""
    mos: float | None
    """E-model MOS (G.107 Annex B) of the worse direction; None for a codec the E-model table lacks."""
    r_factor: float | None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def summary(self) -> str:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} ms"

        tx_loss = "-" if self.tx_loss_percent is None else f"{self.tx_loss_percent:.1f} %"
        mos = "-" if self.mos is None else f"{self.mos:.2f}"
        delay = f"{self.one_way_delay_ms:.0f} ms" + ("" if self.delay_from_rtcp else " (no RTCP round trip yet)")
        return (
            f"{self.codec}, {self.duration_s:.0f} s: received {self.rx_packets} packets "
            f"(loss {self.rx_loss_percent:.1f} %, jitter {ms(self.rx_jitter_ms)}), sent {self.tx_packets} "
            f"(far end: loss {tx_loss}, jitter {ms(self.tx_jitter_ms)}), RTT {ms(self.rtt_ms)}, "
            f"one-way delay {delay}, MOS {mos}"
        )


def quality_of(stats: _Stats) -> CallQuality:
    """Rate one statistics sample; the loss that counts is the worse of the two directions."""
    jitter_buffer = stats.jitter_buffer_delay_ms or 0.0
    delay = (stats.rtt_ms / 2.0 if stats.rtt_ms is not None else 0.0) + jitter_buffer
    loss = max(stats.rx_loss_percent, stats.tx_loss_percent or 0.0)
    try:
        rating = rate_call(codec_impairment(stats.codec), delay, loss)
        mos: float | None = rating.mos
        r: float | None = rating.r
    except ValueError:  # a codec without E-model values (L16): no MOS rather than a made-up one
        mos = r = None
    return CallQuality(
        codec=stats.codec,
        duration_s=stats.duration_s,
        rx_packets=stats.rx_packets,
        tx_packets=stats.tx_packets,
        rx_loss_percent=stats.rx_loss_percent,
        tx_loss_percent=stats.tx_loss_percent,
        rx_jitter_ms=stats.rx_jitter_ms,
        tx_jitter_ms=stats.tx_jitter_ms,
        rtt_ms=stats.rtt_ms,
        one_way_delay_ms=delay,
        delay_from_rtcp=stats.rtt_ms is not None,
        mos=mos,
        r_factor=r,
    )
