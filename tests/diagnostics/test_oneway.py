"""The one-way verdict table on evidence with known answers (the scenes in test_oneway_scenes.py are the real thing)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from diagnostics.network.firewall import find_udp_drops
from diagnostics.oneway import CAUSES, Evidence, MicEvidence, NetEvidence, RtpEvidence, assess, rank
from diagnostics.report import Status

HEALTHY = Evidence(
    mic=MicEvidence("USB Headset", -22.0, -10.0, False, False),
    rtp=RtpEvidence("sip:9196@pbx", True, 200, "OK", "PCMU/8000", 3.0, tx_packets=150, rx_packets=148,
                    local_sdp="192.168.1.20:4000", remote_sdp="203.0.113.5:20000", rx_source="203.0.113.5:20000",
                    far_end_reports=0, echo_detected=True, echo_correlation=0.9, round_trip_ms=80.0,
                    speaker_level_dbfs=-21.0),
    net=NetEvidence(mapped_address="198.51.100.7:4000", sip_alg="pass", firewall_known=True),
)  # fmt: skip
NO_INBOUND = replace(HEALTHY.rtp, rx_packets=0, rx_source="", echo_detected=False, echo_correlation=0.0,
                     round_trip_ms=None, speaker_level_dbfs=None)  # fmt: skip


def top(e: Evidence) -> tuple[str, str]:
    findings = rank(e)
    return (findings[0].cause.id, findings[0].cause.direction) if findings else ("healthy", "none")


def test_healthy_call_passes_every_leg() -> None:
    results = {r.id: r for r in assess(HEALTHY)}
    assert [r.status for r in results.values()] == [Status.PASS] * 4
    assert results["diagnose.one_way"].summary.startswith("both directions work: 150 packets out, 148 in")
    assert top(HEALTHY) == ("healthy", "none")


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        (replace(HEALTHY, mic=MicEvidence("USB Headset", None, None, True, True)), ("mic-muted", "outbound")),
        (replace(HEALTHY, mic=MicEvidence("USB Headset", None, None, True, False)), ("mic-dead", "outbound")),
        (replace(HEALTHY, mic=MicEvidence("USB Headset", -85.0, -70.0, False, False)), ("mic-dead", "outbound")),
        (replace(HEALTHY, rtp=replace(HEALTHY.rtp, muted=True, echo_detected=False)), ("call-muted", "outbound")),
        (replace(HEALTHY, rtp=replace(HEALTHY.rtp, on_hold=True)), ("on-hold", "both")),
        (replace(HEALTHY, rtp=RtpEvidence("sip:9196@pbx", False, 404, "Not Found")), ("call-failed", "both")),
        (replace(HEALTHY, rtp=NO_INBOUND, net=replace(HEALTHY.net, firewall_inbound=("nft inet t input …",))),
         ("firewall-inbound", "inbound")),
        (replace(HEALTHY, rtp=NO_INBOUND, net=replace(HEALTHY.net, sip_alg="fail")), ("sip-alg", "inbound")),
        (replace(HEALTHY, rtp=NO_INBOUND), ("nat-private-sdp", "inbound")),
        (replace(HEALTHY, rtp=NO_INBOUND, net=replace(HEALTHY.net, mapped_address="192.168.1.20:4000")),
         ("inbound-blocked", "inbound")),
        (replace(HEALTHY, rtp=replace(HEALTHY.rtp, echo_detected=False, echo_correlation=0.02)),
         ("outbound-lost", "outbound")),
        (replace(HEALTHY, rtp=replace(HEALTHY.rtp, echo_detected=False),
                 net=replace(HEALTHY.net, firewall_outbound=("nft inet t output …",))),
         ("firewall-outbound", "outbound")),
        (replace(HEALTHY, rtp=replace(HEALTHY.rtp, speaker_level_dbfs=-90.0)), ("speaker-silent", "inbound")),
        (replace(HEALTHY, net=replace(HEALTHY.net, sip_alg="fail")), ("sip-alg-latched", "inbound")),
    ],
)  # fmt: skip
def test_each_fault_is_named_with_its_direction(evidence: Evidence, expected: tuple[str, str]) -> None:
    assert top(evidence) == expected
    verdict = assess(evidence)[-1]
    cause = next(c for c in CAUSES if c.id == expected[0])
    assert verdict.id == "diagnose.one_way" and verdict.status is cause.status
    assert verdict.remedy is not None and verdict.remedy.split(" ")[0] in cause.remedy
    assert verdict.measurements["causes"][0]["id"] == expected[0]


def test_other_causes_are_listed_after_the_best() -> None:
    e = replace(HEALTHY, rtp=NO_INBOUND, net=replace(HEALTHY.net, firewall_inbound=("rule",)))
    assert [f.cause.id for f in rank(e)] == ["firewall-inbound", "nat-private-sdp", "inbound-blocked"]
    assert "(also possible: nat-private-sdp, inbound-blocked)" in assess(e)[-1].summary


def test_rtp_series_becomes_a_plot() -> None:
    e = replace(HEALTHY, rtp=replace(HEALTHY.rtp, series={"t_s": [0.25, 0.5], "rx_pps": [48.0, 50.0],
                                                          "tx_pps": [50.0, 50.0]}))  # fmt: skip
    plot = assess(e)[-1].plots["rtp_over_time"]
    assert [s["name"] for s in plot["series"]] == ["received", "sent"] and plot["series"][0]["y"] == [48.0, 50.0]


DATA = Path(__file__).parent / "network" / "data"


@pytest.mark.parametrize(
    ("port", "direction", "expected"),
    [
        (4000, "inbound", ["nft inet t input handle 4: udp port 4000-4999 drop"]),
        (4002, "inbound", ["nft inet t input handle 4: udp port 4000-4999 drop",
                           "nft inet t input handle 6: udp port { 4002, 5060 } reject (and further conditions)"]),
        (3000, "inbound", []),
        (4000, "outbound", ["nft inet t output handle 7: udp port 4000 drop"]),
        (4001, "outbound", []),
    ],
)  # fmt: skip
def test_firewall_rules_from_real_nft_output(port: int, direction: str, expected: list[str]) -> None:
    """data/nft-ruleset.json is `nft -j list ruleset` of data/nft-ruleset.nft loaded in a scratch namespace."""
    ruleset = json.loads((DATA / "nft-ruleset.json").read_text())
    assert [str(r) for r in find_udp_drops(ruleset, port, direction)] == expected
