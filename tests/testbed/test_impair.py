"""The impairer: its decisions, its packet parsing, its ground truth, and a real path through a TUN device."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.testbed.impair import (
    Decider,
    Impairment,
    PacketRecord,
    classify_packet,
    impaired_path,
    in_sequence_jitter_ms,
    load_records,
    receiver_truth,
    rfc3550_jitter_ms,
)
from tests.testbed.netns import CLIENT_IP, SERVER_IP

# --------------------------------------------------------------------------- pure parts


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4/UDP packet as the TUN device delivers it (checksums are not looked at)."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))  # fmt: skip
    return header + struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def rtp(seq: int, ts: int, ssrc: int, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + bytes(160)


def test_decider_is_seeded_and_loses_at_the_asked_rate() -> None:
    imp = Impairment(loss_percent=5.0, delay_ms=40.0, jitter_ms=30.0, seed=3, warmup_packets=10)
    a, b = Decider(imp), Decider(imp)
    fates_a = [a.rtp(7) for _ in range(20_000)]
    fates_b = [b.rtp(7) for _ in range(20_000)]
    assert fates_a == fates_b  # same seed, same fates
    assert all(f == 0.0 for f in fates_a[:10])  # warm-up passes untouched
    impaired = fates_a[10:]
    lost = sum(f is None for f in impaired) / len(impaired)
    assert lost == pytest.approx(0.05, abs=0.005)  # 3.5 σ of a binomial with n = 20 000
    delays = [f for f in impaired if f is not None]
    assert min(delays) >= 0.010 - 1e-9 and max(delays) <= 0.070 + 1e-9
    assert sum(delays) / len(delays) == pytest.approx(0.040, abs=0.001)


def test_impairment_is_validated() -> None:
    with pytest.raises(ValueError, match=r"loss_percent must be 0..100 \(got 120\)"):
        Impairment(loss_percent=120)
    with pytest.raises(ValueError, match=r"distribution must be 'uniform' or 'normal' \(got 'pareto'\)"):
        Impairment(distribution="pareto")  # type: ignore[arg-type]


def test_classifies_rtp_rtcp_and_other() -> None:
    record = classify_packet(ipv4_udp("10.0.1.2", "10.0.2.2", 4000, 20000, rtp(65535, 1234, 0xCAFE)), 5, 1.5)
    assert (record.kind, record.src, record.dst, record.seq, record.rtp_ts, record.ssrc) == (
        "rtp", "10.0.1.2:4000", "10.0.2.2:20000", 65535, 1234, 0xCAFE
    )  # fmt: skip
    # An RTCP receiver report with one block: cumulative loss is a signed 24-bit field.
    block = struct.pack("!IIIIII", 0xCAFE, (3 << 24) | 0xFFFFFF, 70_000, 160, 0x11, 0x22)
    rr = struct.pack("!BBHI", 0x81, 201, 7, 0xBEEF) + block
    record = classify_packet(ipv4_udp("10.0.2.2", "10.0.1.2", 20001, 4001, rr), 6, 1.6)
    assert record.kind == "rtcp" and record.reporter_ssrc == 0xBEEF
    assert record.reports[0].ssrc == 0xCAFE and record.reports[0].cumulative_lost == -1
    block0 = record.reports[0]
    assert (block0.fraction_lost, block0.highest_seq, block0.jitter) == (3, 70_000, 160)
    assert classify_packet(ipv4_udp("10.0.1.2", "10.0.2.2", 5, 6, b"hello"), 7, 1.7).kind == "udp"
    assert classify_packet(b"\x60" + bytes(60), 8, 1.8).kind == "ip6"
    again = PacketRecord.from_json(record.to_json())
    assert again == record


def test_rfc3550_jitter_by_hand() -> None:
    # Constant transit: J stays 0. One packet 16 ms late: |D| = 16 ms twice → J = 1, then 1.9375 ms.
    arrival = [0.000, 0.020, 0.040 + 0.016, 0.060]
    ts = [0, 160, 320, 480]
    assert rfc3550_jitter_ms(arrival, ts, 8000) == pytest.approx([0.0, 1.0, 1.0 + (16.0 - 1.0) / 16.0])
    # RTP timestamps wrap at 2^32.
    assert rfc3550_jitter_ms([0.0, 0.02], [2**32 - 80, 80], 8000) == [0.0]


def test_in_sequence_jitter_is_rfc_jitter_without_reordering_and_lower_with_it() -> None:
    import random

    rng = random.Random(1)
    seqs = list(range(300))
    send = [i * 0.020 for i in seqs]
    delays = [rng.uniform(0.010, 0.070) for _ in seqs]
    fifo: list[tuple[float, int, int]] = []
    arrive = 0.0
    for s, d in zip(send, delays, strict=True):
        arrive = max(arrive, s + d)
        fifo.append((arrive, seqs[len(fifo)], 160 * len(fifo)))
    in_order = [a for a, _, _ in fifo]
    rfc = rfc3550_jitter_ms(in_order, [t for _, _, t in fifo], 8000)
    assert in_sequence_jitter_ms(fifo, 8000, ignore_first=0)[-1] == pytest.approx(rfc[-1], rel=1e-9)
    reordered = sorted((s + d, i, 160 * i) for i, (s, d) in enumerate(zip(send, delays, strict=True)))
    rfc_r = rfc3550_jitter_ms([a for a, _, _ in reordered], [t for _, _, t in reordered], 8000)
    assert in_sequence_jitter_ms(reordered, 8000)[-1] < 0.9 * rfc_r[-1]


def test_receiver_truth_counts_like_rfc3550_a3() -> None:
    def rec(i: int, seq: int, t_out: float | None) -> PacketRecord:
        return PacketRecord(i, float(i), t_out, "rtp", "a:1", "b:2", ssrc=9, seq=seq, rtp_ts=seq * 160)

    # seq 65534 … 3 across the wrap: 65535 dropped, 1 arrives late (after 2), 3 still in flight at t = 10.
    records = [rec(0, 65534, 1.0), rec(1, 65535, None), rec(2, 0, 3.0), rec(3, 1, 5.5), rec(4, 2, 5.0),
               rec(5, 3, 11.0)]  # fmt: skip
    truth = receiver_truth(records, 9, 8000, until=10.0, skip=0)
    assert (truth.received, truth.lost, truth.dropped_in_window, truth.dropped_total) == (4, 1, 1, 1)
    assert truth.highest_seq == 65536 + 2
    assert receiver_truth(records, 9, 8000, skip=0).received == 5


# --------------------------------------------------------------------------- a real impaired path


PACKETS = 150
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # <asm-generic/socket.h>


@pytest.mark.timeout(30)
def test_real_path_through_the_tun_device(tmp_path: Path) -> None:
    impairment = Impairment(loss_percent=10.0, delay_ms=30.0, jitter_ms=20.0, seed=5, warmup_packets=0)
    with impaired_path(impairment, [(4000, 4999)], tmp_path) as (net, impairer):
        rx_rtp = net.call("server", _udp_socket, SERVER_IP, 4000)
        rx_sip = net.call("server", _udp_socket, SERVER_IP, 5060)
        tx = net.call("client", _udp_socket, CLIENT_IP, 0)
        with ThreadPoolExecutor(2) as receiving:
            got_future = receiving.submit(_drain, rx_rtp, 1.0)
            sip_future = receiving.submit(_drain, rx_sip, 1.0)
            sent_at = {}
            for seq in range(PACKETS):
                sent_at[seq] = time.time()
                tx.sendto(rtp(seq, seq * 160, 0xABC), (SERVER_IP, 4000))
                if seq % 15 == 0:
                    tx.sendto(b"OPTIONS sip:x SIP/2.0\r\n\r\n", (SERVER_IP, 5060))
                time.sleep(0.01)
            got, sip = got_future.result(), sip_future.result()
        for sock in (rx_rtp, rx_sip, tx):
            sock.close()
        records = impairer.records()
        rules = net.run("router", ["ip", "rule", "show"]).stdout
        names = list(net.names.values())
    # Only the RTP port range went through the impairer; SIP (5060) passed by it, every packet.
    assert "iif to-client ipproto udp dport 4000-4999 lookup 177" in rules
    assert len(sip) == 10 and all(r.kind == "rtp" for r in records)
    dropped = {r.seq for r in records if r.dropped}
    received = {struct.unpack_from("!H", data, 2)[0]: t for data, t in got}
    assert len(records) == PACKETS and set(received) == set(range(PACKETS)) - dropped
    assert 3 <= len(dropped) <= 28  # 10 % of 150 is 15 ± 3.7: 3.3 σ either way
    # Packets arrive when the impairer says it released them (kernel receive timestamps; the ground
    # truth rests on these release times), and the forwarder reads them as they come.
    by_seq = {r.seq: r for r in records if not r.dropped}
    after_release = sorted(abs(t - (by_seq[seq].t_out or 0.0)) for seq, t in received.items())
    assert after_release[len(after_release) * 95 // 100] < 0.0005 and after_release[-1] < 0.002
    read_late = sorted(by_seq[seq].t_in - sent_at[seq] for seq in received)
    assert read_late[len(read_late) // 2] < 0.001
    actual = [1000.0 * ((r.t_out or 0.0) - r.t_in) for r in by_seq.values()]
    assert min(actual) > 9.0 and max(actual) < 55.0  # 30 ± 20 ms, plus at most a few ms of scheduling
    truth = receiver_truth(records, 0xABC, 8000, skip=0)
    window = [s for s in dropped if min(received) <= s <= max(received)]
    assert truth.lost == truth.dropped_in_window == len(window)
    # Everything the path needed is gone: namespaces (with their links, the TUN device and the rules).
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(name in listed for name in names)
    assert load_records(tmp_path / "impairer-records.jsonl") == records


def _udp_socket(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    return sock


def _drain(sock: socket.socket, quiet_s: float) -> list[tuple[bytes, float]]:
    """Everything that arrives until nothing has for ``quiet_s``, with the kernel's arrival times
    (SO_TIMESTAMPNS: independent of when this thread gets to run)."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    out: list[tuple[bytes, float]] = []
    sock.settimeout(quiet_s)
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(2048, socket.CMSG_SPACE(16))
        except TimeoutError:
            return out
        stamp = next((c for level, kind, c in ancillary if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS), None)
        if stamp is None:
            out.append((data, time.time()))
        else:
            seconds, nanoseconds = struct.unpack("qq", stamp[:16])
            out.append((data, seconds + nanoseconds / 1e9))
