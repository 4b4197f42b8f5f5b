"""Live call quality against ITU-T G.107 computed directly from the same inputs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from diagnostics.network.emodel import codec_impairment, rate_call
from phone.quality import quality_of


@dataclass(frozen=True)
class Stats:
    codec: str = "PCMU/8000"
    rx_packets: int = 500
    rx_loss_percent: float = 1.0
    rx_jitter_ms: float | None = 3.0
    tx_packets: int = 500
    tx_loss_percent: float | None = 4.0
    tx_jitter_ms: float | None = 2.0
    rtt_ms: float | None = 120.0
    jitter_buffer_delay_ms: float | None = 40.0
    duration_s: float = 10.0


def test_mos_is_g107_for_half_the_rtt_plus_the_jitter_buffer_and_the_worse_loss() -> None:
    q = quality_of(Stats())
    expected = rate_call(codec_impairment("PCMU/8000"), 60.0 + 40.0, 4.0)
    assert q.one_way_delay_ms == pytest.approx(100.0, abs=1e-9) and q.delay_from_rtcp
    assert q.mos == pytest.approx(expected.mos, abs=1e-9) and q.r_factor == pytest.approx(expected.r, abs=1e-9)


def test_before_the_first_rtcp_round_trip_only_the_jitter_buffer_counts() -> None:
    q = quality_of(Stats(rtt_ms=None, tx_loss_percent=None, rx_loss_percent=2.5))
    assert q.one_way_delay_ms == 40.0 and not q.delay_from_rtcp
    assert q.mos == pytest.approx(rate_call(codec_impairment("PCMU"), 40.0, 2.5).mos, abs=1e-9)
    assert "no RTCP round trip yet" in q.summary()


def test_a_codec_without_e_model_values_gets_no_mos() -> None:
    q = quality_of(Stats(codec="L16/16000"))
    assert q.mos is None and q.r_factor is None and "MOS -" in q.summary()
