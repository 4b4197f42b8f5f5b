"""``network.media``: the verdict on synthetic numbers, the measurements on synthetic signals, and the real
probe against Kamailio's echo extension: on loopback, across an impaired path whose every packet's fate
is known, and behind a firewall that drops inbound RTP.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from diagnostics.checks import CheckContext
from diagnostics.network.emodel import codec_impairment, rate_call
from diagnostics.network.media import (
    MOS_BANDS,
    DirectionStats,
    MediaMeasurement,
    PortScan,
    RoundTrip,
    assess_media,
    check_media,
    main,
    measure_round_trip,
    probe_signal,
    scan_rtp_ports,
)
from diagnostics.report import Status
from tests.testbed.impair import Impairer, Impairment, receiver_truth, reports_about
from tests.testbed.kamailio import Kamailio
from tests.testbed.kamailio_ns import MediaBed, write_profile
from tests.testbed.netns import CLIENT_IP

RATE = 16000
NS_RTP_PORTS = (4000, 4999)


# --------------------------------------------------------------------------- the verdict, on synthetic numbers


def measurement(**changes: Any) -> MediaMeasurement:
    """A healthy path (0.5 % loss each way, 80 ms audio round trip), changed by ``changes``."""
    base = MediaMeasurement(
        codec="PCMU/8000",
        inbound=DirectionStats(250, 1, 0.4, 2.0),
        outbound=DirectionStats(250, 1, 0.4, 3.0),
        rtt_ms=20.0,
        round_trip=RoundTrip(True, 80.0, 0.9),
        ports=PortScan("10.0.0.2", 4000, 4999, 1000, (), True, 500),
        remote_rtp="192.0.2.10:20000",
    )
    return replace(base, **changes)


def test_healthy_path_passes_with_the_g107_mos() -> None:
    result = assess_media(measurement())
    m = result.measurements
    assert result.status is Status.PASS and result.remedy is None
    expected = rate_call(codec_impairment("PCMU"), 40.0, 0.4).mos
    assert m["mos"] == m["mos_inbound"] == m["mos_outbound"] == round(expected, 3)
    assert m["one_way_delay_ms"] == 40.0 and m["delay_source"] == "half the audio round trip through the echo"
    assert result.summary.startswith("call quality good (G.109: users satisfied): MOS 4.3")
    codecs = {row["codec"]: row for row in m["codec_ratings"]}
    assert set(codecs) >= {"PCMU/8000", "PCMA/8000", "G722/16000", "GSM/8000", "iLBC/8000", "speex/8000"}
    assert codecs["GSM/8000"]["mos_inbound"] < codecs["PCMU/8000"]["mos_inbound"]
    assert codecs["G722/16000"]["estimated"] and not codecs["PCMU/8000"]["estimated"]


@pytest.mark.parametrize("loss_percent", [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0])
def test_status_follows_the_mos_table(loss_percent: float) -> None:
    m = measurement(inbound=DirectionStats(250, 10, loss_percent, 5.0))
    result = assess_media(m)
    mos = rate_call(codec_impairment("PCMU"), 40.0, loss_percent).mos
    band = next(b for b in MOS_BANDS if mos >= b.min_mos)
    assert result.status is band.status
    assert result.measurements["mos"] == round(min(mos, rate_call(codec_impairment("PCMU"), 40.0, 0.4).mos), 3)
    if band.status is not Status.PASS:
        assert result.remedy is not None and f"{loss_percent:.1f} % of packets are lost inbound" in result.remedy


def test_long_delay_is_blamed_on_delay() -> None:
    result = assess_media(measurement(round_trip=RoundTrip(True, 700.0, 0.8),
                                      inbound=DirectionStats(250, 0, 0.0, 1.0)))  # fmt: skip
    assert result.status is Status.FAIL
    assert result.remedy is not None and "mouth-to-ear delay (≈ 350 ms) is too long" in result.remedy


def test_no_inbound_rtp_fails_as_blocked() -> None:
    result = assess_media(measurement(inbound=DirectionStats(0, 0, 0.0, None), round_trip=RoundTrip(False, None, 0.0)))
    assert result.status is Status.FAIL
    assert result.summary.startswith("one-way or no audio: inbound RTP blocked (firewall/NAT)")
    assert result.remedy is not None and "allow inbound UDP to ports 4000–4999" in result.remedy
    assert result.measurements["mos_inbound"] is None


def test_outbound_blocked_fails_as_one_way() -> None:
    silent = assess_media(
        measurement(round_trip=RoundTrip(False, None, 0.05), outbound=DirectionStats(250, None, None, None))
    )
    assert silent.status is Status.FAIL
    assert "one-way audio: outbound RTP does not reach the far end (the echo sent back silence)" in silent.summary
    lost = assess_media(measurement(outbound=DirectionStats(250, 245, 98.0, None)))
    assert lost.status is Status.FAIL and "the far end reports 98 % of our packets lost" in lost.summary


def test_ports_in_use() -> None:
    some = assess_media(measurement(ports=PortScan("10.0.0.2", 4000, 4999, 1000, (4000, 4001, 4500), True, 498)))
    assert some.status is Status.WARN
    assert "3 RTP ports in 4000–4999 are held by other programs (4000, 4001, 4500)" in some.summary
    assert some.measurements["rtp_ports_in_use"] == [4000, 4001, 4500]
    busy = tuple(range(4000, 4010))
    none_free = assess_media(measurement(ports=PortScan("10.0.0.2", 4000, 4009, 10, busy, True, 0)))
    assert none_free.status is Status.FAIL
    assert none_free.summary.startswith("no free RTP port pair in 4000–4009: 10 ports in use")
    # The failure leads the summary, the (good) quality verdict follows it.
    assert "; call quality good (G.109: users satisfied): MOS 4.3" in none_free.summary
    # Without a free pair the probe places no call: the ports are the whole verdict.
    nothing = DirectionStats(None, None, None, None)
    no_call = assess_media(
        MediaMeasurement("none", nothing, nothing, None, RoundTrip(False, None, 0.0),
                         PortScan("10.0.0.2", 4000, 4000, 1, (4000,), True, 0), call_placed=False)
    )  # fmt: skip
    assert no_call.status is Status.FAIL
    assert no_call.summary == "no free RTP port pair in 4000–4000: 1 port in use (4000)"
    odd = assess_media(
        MediaMeasurement("none", nothing, nothing, None, RoundTrip(False, None, 0.0),
                         PortScan("10.0.0.2", 4001, 4001, 1, (), True, 0), call_placed=False)
    )  # fmt: skip
    assert odd.status is Status.FAIL and "the range holds no even RTP port with its RTCP port above it" in odd.summary


def test_without_far_end_report_rates_inbound_only() -> None:
    result = assess_media(measurement(outbound=DirectionStats(250, None, None, None)))
    assert result.status is Status.PASS
    assert "out not reported" in result.summary and result.measurements["mos_outbound"] is None


# --------------------------------------------------------------------------- measurements, on synthetic signals


def test_round_trip_of_a_lossy_echo() -> None:
    sent = probe_signal(RATE, 4.0)
    delay = 0.1234
    received = np.zeros(len(sent))
    shift = round(delay * RATE)
    received[shift:] = 0.5 * sent[: len(sent) - shift]
    frames = np.random.default_rng(2).random(len(sent) // 320) < 0.05  # 5 % of 20 ms frames lost
    for k in np.flatnonzero(frames):
        received[k * 320 : (k + 1) * 320] = 0.0
    received += 1e-3 * np.random.default_rng(3).standard_normal(len(sent))
    rt = measure_round_trip(sent, received, RATE)
    assert rt.detected and rt.delay_ms == pytest.approx(1000.0 * shift / RATE, abs=0.1)
    assert rt.correlation > 0.8
    assert not measure_round_trip(sent, np.zeros(len(sent)), RATE).detected
    for seed in range(90, 100):
        unrelated = measure_round_trip(sent, probe_signal(RATE, 4.0, seed=seed), RATE)
        assert not unrelated.detected and unrelated.correlation < 0.1


def test_probe_signal_is_speech_like() -> None:
    x = probe_signal(RATE, 8.0)
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)
    active = np.sqrt(np.mean(frames**2, axis=1)) > 10 ** (-40 / 20)
    assert 0.45 < active.mean() < 0.8  # talk spurts and pauses
    level = 10 * np.log10(np.mean(frames[active] ** 2))
    assert level == pytest.approx(-20.0, abs=1.0)


def test_scan_finds_ports_held_by_others() -> None:
    held = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        first = probe.getsockname()[1] // 2 * 2
    try:
        for port in (first, first + 3):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                pytest.skip(f"port {port} taken meanwhile")  # another process: not a fault of the scan
            held.append(sock)
        scan = scan_rtp_ports("127.0.0.1", first, first + 9)
        assert scan.in_use == (first, first + 3) and scan.complete and scan.checked == 10
        assert scan.free_pairs == 3  # 5 pairs, one with each held port
        sampled = scan_rtp_ports("127.0.0.1", first, first + 99, limit=20)
        assert not sampled.complete and sampled.free_pairs is None and sampled.checked <= 20
        assert first in sampled.in_use and first + 99 - 1 not in sampled.in_use
    finally:
        for sock in held:
            sock.close()


def test_skips_without_profile_or_echo_extension(tmp_path: Path) -> None:
    assert check_media(CheckContext()).status is Status.SKIP
    profile = tmp_path / "p.toml"
    profile.write_text('[account]\nuser = "1001"\ndomain = "example.com"\npassword_env = "HOME"\n')
    result = check_media(CheckContext(profile=profile))
    assert (result.status, result.summary) == (Status.SKIP, "not checked: the profile names no echo extension to call")


def test_cli_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--profile", str(tmp_path / "missing.toml"), "--json"]) == 2
    assert "no such profile file" in capsys.readouterr().err
    assert main([]) == 2


# --------------------------------------------------------------------------- real probes


@pytest.mark.timeout(40)
def test_probe_on_loopback_passes(kamailio: Kamailio, tmp_path: Path) -> None:
    profile = write_profile(tmp_path, "1003", kamailio.users["1003"], kamailio.host, (31000, 31099))
    result = check_media(CheckContext(profile=profile, interactive=False))
    m = result.measurements
    assert result.status is Status.PASS, (result.summary, result.remedy)
    assert m["codec"] == "PCMU/8000" and m["local_rtp"].startswith("127.0.0.1:310")
    assert m["inbound_lost_packets"] == 0 and m["outbound_lost_packets"] == 0
    assert m["inbound_packets"] > 140 and m["rtp_ports_in_use_count"] == 0
    # RTCP's RTT needs our sender report to reach the far end before its first report (a race in
    # a 5 s call); on loopback it is tens of µs, so 0 in RTCP's 1/65536 s steps is right too.
    assert m["rtt_ms"] is None or 0.0 <= m["rtt_ms"] < 20.0
    assert 20.0 < m["round_trip_ms"] < 250.0  # both jitter buffers and the echo's own buffer
    assert m["mos"] >= 4.3
    assert 3.0 <= m["probe_duration_s"] <= 8.5


@pytest.fixture(scope="module")
def media_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaBed]:
    """client — router — server namespaces, Kamailio and its echo in ``server`` on the server's address."""
    with MediaBed(tmp_path_factory.mktemp("media-bed"), NS_RTP_PORTS) as bed:
        yield bed


def within(measured: float, truth: float, rel: float = 0.10) -> bool:
    return abs(measured - truth) <= rel * abs(truth)


def assert_mos_is_g107(m: dict[str, Any]) -> None:
    """The reported MOS is G.107's for the reported delay and loss (inputs are rounded in the report)."""
    codec = codec_impairment(m["codec"])
    for direction in ("inbound", "outbound"):
        expected = rate_call(codec, m["one_way_delay_ms"], m[f"{direction}_loss_percent"])
        assert m[f"mos_{direction}"] == pytest.approx(expected.mos, abs=0.002), direction
        assert m[f"r_{direction}"] == pytest.approx(expected.r, abs=0.02), direction
    assert m["mos"] == min(m["mos_inbound"], m["mos_outbound"])


IMPAIRED = Impairment(loss_percent=5.0, delay_ms=40.0, jitter_ms=30.0, seed=11)


@pytest.mark.timeout(60)
def test_impaired_path_is_measured_against_ground_truth(media_bed: MediaBed, tmp_path: Path) -> None:
    """5 % loss and 40 ± 30 ms delay (uniform, so packets overtake each other) both ways."""
    with Impairer(media_bed.topology, IMPAIRED, media_bed.port_ranges, tmp_path) as impairer:
        code, check = media_bed.run_probe()
        records = impairer.records()
    m = check["measurements"]
    assert m["codec"] == "PCMU/8000" and m["local_rtp"] == f"{CLIENT_IP}:4000"
    inbound, outbound = media_bed.directions(records)
    until = m["sampled_at_unix_s"]
    # Inbound: loss as counted here against what an RFC 3550 receiver must count at that moment.
    truth_in = receiver_truth(records, inbound, 8000, until=until)
    assert truth_in.lost > 5 and truth_in.dropped_in_window > 5
    assert within(m["inbound_lost_packets"], truth_in.lost), (m["inbound_lost_packets"], truth_in)
    assert within(m["inbound_loss_percent"], truth_in.loss_percent)
    # Inbound jitter: pjmedia computes RFC 3550's estimator over in-sequence packets only, so on a
    # reordering path it matches that, and reads below the RFC's J over every packet.
    assert m["inbound_reordered_packets"] > 0
    assert truth_in.in_sequence_jitter_ms is not None
    assert within(m["inbound_jitter_ms"], truth_in.in_sequence_jitter_ms), (m["inbound_jitter_ms"], truth_in)
    assert m["inbound_jitter_ms"] < truth_in.jitter_ms
    # Outbound: the far end's (baresip's) receiver report against the truth when it wrote it.
    report = reports_about(records, outbound, until=until)[-1]
    truth_out = receiver_truth(records, outbound, 8000, until=report.t_in)
    assert truth_out.lost > 5
    assert m["outbound_lost_packets"] == report.block.cumulative_lost
    assert within(m["outbound_lost_packets"], truth_out.lost), (m["outbound_lost_packets"], truth_out)
    assert within(m["outbound_loss_percent"], truth_out.loss_percent)
    assert within(m["outbound_jitter_ms"], truth_out.jitter_ms), (m["outbound_jitter_ms"], truth_out)
    # Delay: the echo's round trip is at least twice the injected mean; the RTT saw the delays too.
    assert m["one_way_delay_ms"] >= 40.0 and (m["rtt_ms"] is None or m["rtt_ms"] >= 20.0)
    assert_mos_is_g107(m)
    status = Status(check["status"])
    band = next(b for b in MOS_BANDS if m["mos"] >= b.min_mos)
    assert status is band.status and code == (1 if status is Status.FAIL else 0)


@pytest.mark.timeout(60)
def test_jitter_without_reordering_is_rfc3550_jitter(media_bed: MediaBed, tmp_path: Path) -> None:
    """Delay spread through a FIFO (no overtaking, as on a congested link): both directions' J is RFC 3550's."""
    fifo = replace(IMPAIRED, loss_percent=2.0, reorder=False, seed=12)
    with Impairer(media_bed.topology, fifo, media_bed.port_ranges, tmp_path) as impairer:
        _, check = media_bed.run_probe()
        records = impairer.records()
    m = check["measurements"]
    inbound, outbound = media_bed.directions(records)
    truth_in = receiver_truth(records, inbound, 8000, until=m["sampled_at_unix_s"])
    assert m["inbound_reordered_packets"] == 0
    assert within(m["inbound_jitter_ms"], truth_in.jitter_ms), (m["inbound_jitter_ms"], truth_in)
    assert m["inbound_lost_packets"] == truth_in.lost
    report = reports_about(records, outbound, until=m["sampled_at_unix_s"])[-1]
    truth_out = receiver_truth(records, outbound, 8000, until=report.t_in)
    assert within(m["outbound_jitter_ms"], truth_out.jitter_ms), (m["outbound_jitter_ms"], truth_out)
    assert m["outbound_lost_packets"] == truth_out.lost
    assert_mos_is_g107(m)


@pytest.mark.timeout(60)
def test_firewall_dropping_inbound_rtp_fails(media_bed: MediaBed, tmp_path: Path) -> None:
    table = "phonekit_media_test"
    rules = tmp_path / "drop-rtp.nft"
    rules.write_text(
        f"table inet {table} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n"
        f"    udp dport {NS_RTP_PORTS[0]}-{NS_RTP_PORTS[1]} counter drop\n  }}\n}}\n"
    )
    net = media_bed.topology
    net.run("client", ["nft", "-f", str(rules)])
    try:
        code, check = media_bed.run_probe()
        listed = net.run("client", ["nft", "list", "table", "inet", table]).stdout
    finally:
        net.run("client", ["nft", "delete", "table", "inet", table], check=False)
    assert code == 1 and check["status"] == "fail"
    assert check["summary"].startswith("one-way or no audio: inbound RTP blocked (firewall/NAT)")
    assert "allow inbound UDP to ports 4000–4999" in check["remedy"]
    m = check["measurements"]
    assert m["inbound_packets"] == 0 and m["outbound_packets"] > 100
    assert m["probe_duration_s"] < 4.5  # nothing arrives, so it does not wait for RTCP
    dropped = int(listed.split("counter packets ")[1].split()[0])
    assert dropped > 100  # the firewall, not something else, ate the echo's RTP


@pytest.mark.parametrize("name", ["diagnostics.network.media", "diagnostics.network.emodel"])
def test_public_api_is_exactly_all(name: str) -> None:
    import importlib
    import inspect

    module = importlib.import_module(name)
    exported = set(module.__all__)
    assert all(hasattr(module, item) for item in exported)
    defined = {
        item for item, value in vars(module).items()
        if not item.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    }  # fmt: skip
    assert defined <= exported, f"public but not in __all__: {sorted(defined - exported)}"
