"""The G.107 E-model against the standard's own anchor, independent simplifications and its shape."""

from __future__ import annotations

import itertools
import math

import pytest

from diagnostics.network.emodel import (
    CODECS,
    Connection,
    codec_impairment,
    mos_from_r,
    r_from_mos,
    rate,
    rate_call,
)

G711 = codec_impairment("PCMU")


def test_defaults_give_the_standard_rating() -> None:
    # G.107 §7.7: with all Table 3 defaults, R = 93.2 (Ro 94.77, Is 1.41), MOS 4.41.
    rating = rate()
    assert rating.r == pytest.approx(93.2, abs=0.05)
    assert rating.ro == pytest.approx(94.77, abs=0.01)
    assert rating.is_ == pytest.approx(1.41, abs=0.01)
    assert rating.mos == pytest.approx(4.41, abs=0.005)
    assert rating.idd == 0.0 and rating.ie_eff == 0.0


def test_mos_mapping_annex_b() -> None:
    assert mos_from_r(-5.0) == 1.0
    assert mos_from_r(0.0) == 1.0
    assert mos_from_r(100.0) == 4.5
    assert mos_from_r(120.0) == 4.5
    # B-4 by hand: 1 + 0.035·80 + 80·20·20·7e-6 = 4.024
    assert mos_from_r(80.0) == pytest.approx(4.024, abs=1e-9)
    assert mos_from_r(50.0) == pytest.approx(1.0 + 1.75 + 50 * -10 * 50 * 7e-6, abs=1e-9)
    # The verdict edges in R: G.109's category limits (80 "satisfied", 70 "some users dissatisfied").
    assert r_from_mos(4.0) == pytest.approx(79.37, abs=0.01)
    assert r_from_mos(3.6) == pytest.approx(70.06, abs=0.01)
    for mos in (1.5, 2.6, 3.1, 3.6, 4.0, 4.3):
        assert mos_from_r(r_from_mos(mos)) == pytest.approx(mos, abs=1e-9)


def test_ie_eff_equation_7_29() -> None:
    # Ie,eff = Ie + (95 − Ie)·Ppl/(Ppl/BurstR + Bpl): G.711 with PLC (Bpl 25.1) at 1 % random loss.
    rating = rate(Connection(ie=0.0, bpl=25.1, ppl_percent=1.0))
    assert rating.ie_eff == pytest.approx(95.0 * 1.0 / (1.0 + 25.1), abs=1e-9)
    # Bursty loss hurts more than random loss at the same rate.
    bursty = rate(Connection(ie=0.0, bpl=25.1, ppl_percent=2.0, burst_r=2.0))
    random = rate(Connection(ie=0.0, bpl=25.1, ppl_percent=2.0, burst_r=1.0))
    assert bursty.ie_eff > random.ie_eff
    # Total loss leaves nothing: Ie,eff → 95 as Ppl → 100 with BurstR 1 and small Bpl.
    assert rate(Connection(ppl_percent=100.0, bpl=1e-9)).ie_eff == pytest.approx(95.0, abs=1e-6)


def test_absolute_delay_equation_7_28() -> None:
    # X = log2(Ta/100): Ta = 200 ms gives X = 1, Ta = 400 ms gives X = 2 (by hand from eq. 7-28).
    def idd(x: float) -> float:
        return float(25.0 * ((1 + x**6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2))

    assert rate(Connection(ta_ms=100.0)).idd == 0.0
    assert rate(Connection(ta_ms=200.0)).idd == pytest.approx(idd(1.0), abs=1e-9)
    assert rate(Connection(ta_ms=400.0)).idd == pytest.approx(idd(2.0), abs=1e-9)
    assert rate(Connection(ta_ms=400.0)).idd == pytest.approx(24.07, abs=0.01)


@pytest.mark.parametrize("delay_ms", [0, 50, 100, 150, 200, 250, 300])
def test_delay_impairment_matches_cole_rosenbluth(delay_ms: float) -> None:
    # Cole & Rosenbluth (ACM CCR 31(2), 2001) fitted G.107's Id with default parameters as
    # Id = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3); our full Id (T = Ta = d, Tr = 2d) must follow
    # that fit within 0.6 R up to 300 ms (their fit is stated for that range).
    ours = rate_call(G711, delay_ms, 0.0).id_ - rate_call(G711, 0.0, 0.0).id_
    fit = 0.024 * delay_ms + 0.11 * max(0.0, delay_ms - 177.3)
    assert ours == pytest.approx(fit, abs=0.6)


@pytest.mark.parametrize(
    ("rtt_ms", "jitter_ms", "loss_percent"),
    [(20, 2, 0.0), (60, 5, 0.5), (100, 10, 1.0), (120, 10, 1.0), (100, 10, 2.0), (120, 10, 2.0)],
)
def test_close_to_the_simplified_twilio_form(rtt_ms: float, jitter_ms: float, loss_percent: float) -> None:
    # twilio-video.js preflight/mos.js: EL = RTT + 2·jitter + 10; R = 94.768 − EL/40 (EL < 160)
    # else 94.768 − (EL − 120)/10; R −= 2.5·loss. A linear simplification of G.711 with PLC: the
    # full model, fed the one-way delay EL/2 and the same loss, agrees within 3 R (0.1 MOS) on its
    # linear branch (EL < 160 ms) up to 2 % loss. Beyond, they part on purpose: the simplification
    # charges 2.5 R per % loss where G.107 with Bpl 25.1 charges 3.1–3.6, and its knee is at EL 160.
    effective = rtt_ms + 2 * jitter_ms + 10
    simple_r = 94.768 - (effective / 40 if effective < 160 else (effective - 120) / 10) - 2.5 * loss_percent
    full = rate_call(G711, effective / 2.0, loss_percent)
    assert full.r == pytest.approx(simple_r, abs=3.0)
    assert full.mos == pytest.approx(mos_from_r(simple_r), abs=0.1)


def test_monotonic_in_delay_and_loss() -> None:
    for codec in CODECS:
        by_delay = [rate_call(codec, d, 1.0).r for d in range(0, 801, 20)]
        by_loss = [rate_call(codec, 80.0, p / 2).r for p in range(0, 41)]
        assert all(a >= b for a, b in itertools.pairwise(by_delay)), codec.key
        assert all(a > b for a, b in itertools.pairwise(by_loss)), codec.key
        assert by_delay[0] - by_delay[-1] > 30.0  # 800 ms one way is a bad call with any codec
    # A codec that bears loss better (higher Bpl) loses less R at the same loss.
    assert rate_call(codec_impairment("PCMU"), 50.0, 5.0).r > rate_call(codec_impairment("GSM"), 50.0, 5.0).r


def test_codec_table_lookup_and_sources() -> None:
    assert codec_impairment("pcmu").key == "PCMU/8000"
    assert codec_impairment("speex/16000/1").clock_rate_hz == 16000
    assert codec_impairment("speex").clock_rate_hz == 8000
    assert codec_impairment("G722/16000").estimated
    assert not codec_impairment("PCMA/8000").estimated
    # G.113 Appendix I figures the brief names: G.711 Ie 0, Bpl 25.1 with PLC.
    assert (codec_impairment("PCMU").ie, codec_impairment("PCMU").bpl) == (0.0, 25.1)
    assert codec_impairment("GSM").ie == 20.0
    for codec in CODECS:
        assert codec.source and ("estimated" in codec.source) == codec.estimated, codec.key
    with pytest.raises(ValueError, match=r"no E-model impairment values for codec 'opus' \(known: PCMU/8000"):
        codec_impairment("opus")


def test_invalid_connections_are_refused_with_the_value() -> None:
    with pytest.raises(ValueError, match=r"ta_ms must be >= 0 \(got -1.0\)"):
        Connection(ta_ms=-1.0)
    with pytest.raises(ValueError, match=r"ppl_percent must be 0..100 \(got 101.0\)"):
        Connection(ppl_percent=101.0)
    with pytest.raises(ValueError, match=r"must be > 0"):
        Connection(bpl=0.0)
    with pytest.raises(ValueError, match=r"MOS must be between 1 and 4.5 exclusive \(got 4.5\)"):
        r_from_mos(4.5)


def test_low_sidetone_raises_talker_echo_tolerance() -> None:
    # Eq. 7-23: below STMR 9 dB, TERV grows by Ist/2, which changes Idte (and nothing explodes).
    normal = rate(Connection(t_ms=150.0, tr_ms=300.0, ta_ms=150.0))
    low = rate(Connection(t_ms=150.0, tr_ms=300.0, ta_ms=150.0, stmr_db=7.0))
    assert math.isfinite(low.r) and low.idte != normal.idte
