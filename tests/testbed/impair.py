"""A userspace network impairer: packet loss and delay with jitter, with exact ground truth.

``tc netem`` does not exist on the kernels this project runs on, so the test bed
impairs traffic itself: a small forwarder reads packets from a TUN device in the
router namespace of a :class:`tests.testbed.netns.Topology`, drops or delays
them, and writes them back. Policy routing sends only the traffic to impair
through the TUN device::

    client ns                       router ns                               server ns
    eth0 10.200.1.2  <──>  to-client 10.200.1.1   [tun-imp]   to-server 10.200.2.1  <──>  eth0 10.200.2.2
                           ip rule 1770: iif to-client|to-server ipproto udp dport <range> lookup 177
                           table 177: default dev tun-imp            (everything else: main table)

A packet matched by a rule is routed into the TUN device; the forwarder reads
it, decides its fate from a seeded RNG, and writes it back at its release time;
the kernel then receives it on the TUN device and forwards it on by the main
table. The forwarder turns ``rp_filter`` off in the router namespace (the
packets come back in on the TUN device with sources reached over a veth),
keeps to one CPU (a TUN write is queued on the writing CPU's backlog: a
forwarder that migrates could have the kernel reorder what it sent in order)
at real-time priority (so that release times stay on plan under load),
removes its rules when it exits, and its TUN device (not persistent) and the
route into it vanish with it.

What is impaired, and why:

* Only UDP to the configured destination port ranges goes through the TUN
  device (the RTP/RTCP ranges of both ends), in both directions alike: SIP
  never touches it, so call set-up is not disturbed.
* RTP packets get loss (Bernoulli, probability ``loss_percent``) and delay
  (``delay_ms`` plus jitter, see :class:`Impairment`). By default every packet
  gets its own delay, so packets overtake each other as with netem (reordering);
  ``reorder=False`` queues them instead (jitter without reordering, as a
  congested link's FIFO).
* RTCP packets (RFC 5761 §4: second byte 192–223) get the same delay but are
  never dropped: a probe of a few seconds sees only one or two reports, and
  losing one would leave nothing to measure.
* The first ``warmup_packets`` RTP packets of every stream pass unimpaired, so
  that the receivers' start-up rules (RFC 3550 A.1 probation, pjmedia's
  ignoring of the first 25 packets for jitter) do not blur the comparison.

Every packet's fate is recorded (a JSON line per packet, see :class:`PacketRecord`):
arrival and release times on the wall clock, whether it was dropped, and the
RTP/RTCP header fields (report blocks included). :func:`receiver_truth` turns
the records into what a correct RFC 3550 receiver of a stream must report at a
given moment: the ground truth the tests compare phonekit's measurements with.

Use::

    with impaired_path(Impairment(loss_percent=5, delay_ms=40, jitter_ms=30),
                       [(4000, 4999), (20000, 20999)], tmp_path) as (net, impairer):
        net.run("client", [...])                     # anything across the impaired path
        records = impairer.records()

or, on a topology you already have, ``with Impairer(net, impairment, ranges, workdir) as impairer``.
``python -m tests.testbed.impair serve --config FILE`` is the forwarder itself;
:class:`Impairer` starts it in the router namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import heapq
import json
import logging
import os
import random
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Literal

from tests.testbed.netns import ROUTER_CLIENT_IF, ROUTER_SERVER_IF, Topology
from tests.testbed.procs import Process, TestbedError, require

log = logging.getLogger(__name__)

ROUTE_TABLE = 177
"""Routing table in the router namespace whose only route leads into the TUN device."""
RULE_PRIORITY = 1770

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000

Distribution = Literal["uniform", "normal"]


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Impairment:
    """What happens to an RTP packet on the impaired path (both directions alike)."""

    loss_percent: float = 0.0
    """Probability that an RTP packet is dropped (independently of every other: Bernoulli)."""
    delay_ms: float = 0.0
    """Mean one-way delay added to every RTP and RTCP packet."""
    jitter_ms: float = 0.0
    """Spread of the delay: ``uniform`` draws from delay ± jitter (like netem's ``delay D J``),
    ``normal`` uses jitter as the standard deviation. Delays below 0 are clipped to 0."""
    distribution: Distribution = "uniform"
    seed: int = 1
    warmup_packets: int = 10
    """RTP packets per stream (SSRC) that pass unimpaired before loss and delay begin."""
    reorder: bool = True
    """True: every packet gets its own delay, so a later one may overtake an earlier one (netem's
    behaviour). False: a packet never leaves before the one ahead of it in the same flow (a FIFO
    queue, as on a congested link): jitter without reordering."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss_percent <= 100.0:
            raise ValueError(f"loss_percent must be 0..100 (got {self.loss_percent!r})")
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError(f"delay_ms and jitter_ms must be >= 0 (got {self.delay_ms!r}, {self.jitter_ms!r})")
        if self.distribution not in ("uniform", "normal"):
            raise ValueError(f"distribution must be 'uniform' or 'normal' (got {self.distribution!r})")


class Decider:
    """The fate of each packet, from a seeded RNG: the same seed and packets give the same decisions."""

    def __init__(self, impairment: Impairment) -> None:
        self.impairment = impairment
        self._rng = random.Random(impairment.seed)
        self._seen: dict[int, int] = {}

    def delay_s(self) -> float:
        imp = self.impairment
        if imp.jitter_ms == 0.0:
            spread = 0.0
        elif imp.distribution == "uniform":
            spread = self._rng.uniform(-imp.jitter_ms, imp.jitter_ms)
        else:
            spread = self._rng.gauss(0.0, imp.jitter_ms)
        return max(0.0, imp.delay_ms + spread) / 1000.0

    def rtp(self, ssrc: int) -> float | None:
        """Release delay in seconds for an RTP packet of ``ssrc``, or None to drop it."""
        count = self._seen.get(ssrc, 0)
        self._seen[ssrc] = count + 1
        if count < self.impairment.warmup_packets:
            return 0.0
        # Draw the loss decision first and always draw a delay, so that the loss
        # pattern does not depend on the delay distribution.
        lost = self._rng.random() * 100.0 < self.impairment.loss_percent
        delay = self.delay_s()
        return None if lost else delay

    def rtcp(self) -> float:
        return self.delay_s()


# --------------------------------------------------------------------------- packets


@dataclass(frozen=True)
class ReportBlock:
    """One RTCP reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    """The source this block reports on."""
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    """Extended highest sequence number received."""
    jitter: int
    """Interarrival jitter in RTP timestamp units."""
    lsr: int
    dlsr: int


@dataclass(frozen=True)
class PacketRecord:
    """The fate of one packet that went through the impairer."""

    index: int
    t_in: float
    """Wall-clock time (s) the forwarder read it from the TUN device."""
    t_out: float | None
    """Wall-clock time (s) it was written back (None: dropped)."""
    kind: str
    """``rtp``, ``rtcp``, ``udp`` (anything else in the port ranges) or ``ip6`` (dropped)."""
    src: str
    dst: str
    ssrc: int | None = None
    seq: int | None = None
    rtp_ts: int | None = None
    payload_type: int | None = None
    planned_delay_s: float | None = None
    reports: tuple[ReportBlock, ...] = ()
    reporter_ssrc: int | None = None

    @property
    def dropped(self) -> bool:
        return self.t_out is None

    def to_json(self) -> str:
        data = asdict(self)
        data["reports"] = [asdict(r) for r in self.reports]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> PacketRecord:
        data = json.loads(line)
        data["reports"] = tuple(ReportBlock(**r) for r in data["reports"])
        return cls(**data)


def _parse_rtcp(payload: bytes) -> tuple[int | None, tuple[ReportBlock, ...]]:
    """Reporter SSRC and report blocks of a compound RTCP packet (SR 200 / RR 201; others skipped)."""
    blocks: list[ReportBlock] = []
    reporter: int | None = None
    pos = 0
    while pos + 4 <= len(payload):
        first, pt, length = struct.unpack_from("!BBH", payload, pos)
        end = pos + 4 * (length + 1)
        count = first & 0x1F
        if pt in (200, 201) and end <= len(payload):
            sender = struct.unpack_from("!I", payload, pos + 4)[0]
            reporter = reporter if reporter is not None else sender
            at = pos + (28 if pt == 200 else 8)
            for _ in range(count):
                if at + 24 > end:
                    break
                ssrc, word, highest, jitter, lsr, dlsr = struct.unpack_from("!IIIIII", payload, at)
                lost = word & 0xFFFFFF
                if lost & 0x800000:  # signed 24-bit (RFC 3550 §6.4.1)
                    lost -= 0x1000000
                blocks.append(ReportBlock(ssrc, word >> 24, lost, highest, jitter, lsr, dlsr))
                at += 24
        pos = end
    return reporter, tuple(blocks)


def classify_packet(packet: bytes, index: int, t_in: float) -> PacketRecord:
    """A record (without fate) for a packet read from the TUN device.

    ``kind`` is ``ip6`` for anything that is not IPv4: the kernel's own IPv6
    chatter on the new TUN device (router solicitations), which is not forwarded.
    """
    if packet[0] >> 4 != 4:
        return PacketRecord(index, t_in, None, "ip6", "", "")
    ihl = (packet[0] & 0x0F) * 4
    proto = packet[9]
    src_ip = ".".join(str(b) for b in packet[12:16])
    dst_ip = ".".join(str(b) for b in packet[16:20])
    fragment = struct.unpack_from("!H", packet, 6)[0] & 0x1FFF
    if proto != 17 or fragment or len(packet) < ihl + 8:
        return PacketRecord(index, t_in, None, "udp", src_ip, dst_ip)
    sport, dport = struct.unpack_from("!HH", packet, ihl)
    src, dst = f"{src_ip}:{sport}", f"{dst_ip}:{dport}"
    payload = packet[ihl + 8 :]
    if len(payload) >= 8 and payload[0] >> 6 == 2:
        if 192 <= payload[1] <= 223:
            reporter, blocks = _parse_rtcp(payload)
            return PacketRecord(index, t_in, None, "rtcp", src, dst, reports=blocks, reporter_ssrc=reporter)
        if len(payload) >= 12:
            seq, rtp_ts, ssrc = struct.unpack_from("!HII", payload, 2)
            return PacketRecord(index, t_in, None, "rtp", src, dst, ssrc=ssrc, seq=seq, rtp_ts=rtp_ts,
                                payload_type=payload[1] & 0x7F)  # fmt: skip
    return PacketRecord(index, t_in, None, "udp", src, dst)


# --------------------------------------------------------------------------- the forwarder


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([require("ip"), *args], capture_output=True, text=True, timeout=10, check=False)
    if check and done.returncode != 0:
        raise TestbedError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class ForwarderConfig:
    """What ``python -m tests.testbed.impair serve`` needs (written as JSON by :class:`Impairer`)."""

    impairment: Impairment
    tun_name: str
    ingress: tuple[str, ...]
    """Router interfaces whose matching traffic is diverted into the TUN device."""
    port_ranges: tuple[tuple[int, int], ...]
    records_path: str
    ready_path: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ForwarderConfig:
        data = json.loads(text)
        return cls(
            impairment=Impairment(**data["impairment"]),
            tun_name=data["tun_name"],
            ingress=tuple(data["ingress"]),
            port_ranges=tuple((int(a), int(b)) for a, b in data["port_ranges"]),
            records_path=data["records_path"],
            ready_path=data["ready_path"],
        )


def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def _rules(config: ForwarderConfig) -> list[list[str]]:
    return [
        ["rule", "add", "priority", str(RULE_PRIORITY), "iif", iface, "ipproto", "udp", "dport", f"{first}-{last}",
         "lookup", str(ROUTE_TABLE)]
        for iface in config.ingress
        for first, last in config.port_ranges
    ]  # fmt: skip


def serve(config: ForwarderConfig) -> None:
    """Run the forwarder until SIGTERM/SIGINT; called inside the router namespace.

    The TUN device is not persistent: it disappears with this process, and its
    route with it; the policy rules are removed on the way out.
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # One CPU: a packet written to a TUN device is queued on the writing CPU's backlog, so a
    # forwarder that migrates between two writes can have the kernel reorder what it sent in order.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    # Real-time priority (it sleeps in select() between packets): release times stay on plan even
    # while a probe, Kamailio and baresip keep the CPUs busy. Without the privilege, best effort.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except PermissionError:
        log.warning("no real-time priority for the forwarder: release times may lag under load")
    fd = _open_tun(config.tun_name)
    added: list[list[str]] = []
    # Packets come back in on the TUN device with sources the router reaches over a veth:
    # reverse path filtering would drop them (these are the router namespace's own sysctls).
    for conf in ("all", "default", config.tun_name):
        Path(f"/proc/sys/net/ipv4/conf/{conf}/rp_filter").write_text("0\n")
    records = open(config.records_path, "w", buffering=1)  # noqa: SIM115 - closed below
    try:
        _ip("link", "set", "dev", config.tun_name, "up")
        _ip("route", "replace", "default", "dev", config.tun_name, "table", str(ROUTE_TABLE))
        for rule in _rules(config):
            _ip(*rule)
            added.append(rule)
        # Read the wall clock once and count on the monotonic clock from there:
        # release times stay exact even if the wall clock is adjusted meanwhile.
        wall_offset = time.time() - time.monotonic()
        decider = Decider(config.impairment)
        queue: list[tuple[float, int, bytes, PacketRecord]] = []
        last_release: dict[tuple[str, str], float] = {}
        index = 0
        Path(config.ready_path).write_text(str(os.getpid()))
        while not stop.is_set():
            timeout = 0.2 if not queue else max(0.0, queue[0][0] - time.monotonic())
            try:
                readable, _, _ = select.select([fd], [], [], timeout)
            except InterruptedError:
                continue
            if readable:
                while True:
                    try:
                        packet = os.read(fd, 65535)
                    except BlockingIOError:
                        break
                    now = time.monotonic()
                    record = classify_packet(packet, index, now + wall_offset)
                    index += 1
                    if record.kind == "rtp":
                        assert record.ssrc is not None
                        delay = decider.rtp(record.ssrc)
                    elif record.kind == "rtcp":
                        delay = decider.rtcp()
                    elif record.kind == "ip6":
                        continue
                    else:
                        delay = 0.0
                    if delay is None:
                        records.write(record.to_json() + "\n")
                        continue
                    release = now + delay
                    if not config.impairment.reorder:
                        flow = (record.src, record.dst)
                        release = max(release, last_release.get(flow, 0.0))
                        last_release[flow] = release
                    heapq.heappush(queue, (release, record.index, packet, _planned(record, release - now)))
            now = time.monotonic()
            while queue and queue[0][0] <= now:
                _, _, packet, record = heapq.heappop(queue)
                try:
                    os.write(fd, packet)
                except OSError as exc:  # the kernel refused one packet: record it as lost, keep going
                    log.warning("could not forward packet %d: %s", record.index, exc)
                    records.write(record.to_json() + "\n")
                    continue
                sent = time.monotonic() + wall_offset
                records.write(_released(record, sent).to_json() + "\n")
                now = time.monotonic()
    finally:
        for rule in added:
            _ip(*["rule", "del", *rule[2:]], check=False)
        records.close()
        os.close(fd)


def _planned(record: PacketRecord, delay_s: float) -> PacketRecord:
    return PacketRecord(**{**record.__dict__, "planned_delay_s": delay_s})


def _released(record: PacketRecord, t_out: float) -> PacketRecord:
    return PacketRecord(**{**record.__dict__, "t_out": t_out})


# --------------------------------------------------------------------------- the impairer process


class Impairer:
    """The forwarder running in the topology's router namespace, started and stopped by PID.

    Diverted (see the module docstring): UDP arriving at the router from the
    client or the server side with a destination port in ``port_ranges``.
    """

    def __init__(
        self,
        topology: Topology,
        impairment: Impairment,
        port_ranges: Sequence[tuple[int, int]],
        workdir: Path,
        tun_name: str = "tun-imp",
    ) -> None:
        self.topology = topology
        self.impairment = impairment
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.records_path = workdir / "impairer-records.jsonl"
        self.config = ForwarderConfig(
            impairment=impairment,
            tun_name=tun_name,
            ingress=(ROUTER_CLIENT_IF, ROUTER_SERVER_IF),
            port_ranges=tuple(port_ranges),
            records_path=str(self.records_path),
            ready_path=str(workdir / "impairer.ready"),
        )
        self.process: Process | None = None

    def start(self, timeout_s: float = 10.0) -> Impairer:
        ready = Path(self.config.ready_path)
        ready.unlink(missing_ok=True)
        config_path = self.workdir / "impairer.json"
        config_path.write_text(self.config.to_json())
        argv = [sys.executable, "-m", "tests.testbed.impair", "serve", "--config", str(config_path)]
        # Through the topology, so that its teardown stops the forwarder too should a test not.
        self.process = self.topology.popen("router", argv, self.workdir / "impairer.log", name="impairer",
                                           cwd=Path(__file__).parents[2])  # fmt: skip
        self.process.wait_until(ready.exists, timeout_s, "TUN device and policy rules")
        log.info("impairer up (pid %d) in %s: %s", self.process.pid, self.topology.netns("router"), self.impairment)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout_s=5.0)
            self.process = None

    def records(self) -> list[PacketRecord]:
        """Every packet's fate so far (complete lines only: the forwarder may be writing)."""
        return load_records(self.records_path)

    def __enter__(self) -> Impairer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def load_records(path: Path) -> list[PacketRecord]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [PacketRecord.from_json(line) for line in text.splitlines() if line.endswith("}")]


# --------------------------------------------------------------------------- ground truth


def rfc3550_jitter_ms(arrival_s: Sequence[float], rtp_ts: Sequence[int], clock_rate_hz: int) -> list[float]:
    """Interarrival jitter J after each packet, in ms (RFC 3550 §6.4.1, A.8), packets in arrival order.

    D(i−1, i) = (R_i − R_{i−1}) − (S_i − S_{i−1}); J += (|D| − J)/16. J starts at 0
    with the second packet; the first value returned belongs to the second packet.
    """
    out: list[float] = []
    j = 0.0
    for i in range(1, len(arrival_s)):
        # RTP timestamps wrap at 2^32: take the signed 32-bit difference.
        ts_step = ((rtp_ts[i] - rtp_ts[i - 1] + 2**31) % 2**32) - 2**31
        d = (arrival_s[i] - arrival_s[i - 1]) - ts_step / clock_rate_hz
        j += (abs(d) - j) / 16.0
        out.append(j * 1000.0)
    return out


_MAX_DROPOUT, _MAX_MISORDER, _SEQ_MOD = 3000, 100, 1 << 16


def in_sequence_jitter_ms(
    arrivals: Sequence[tuple[float, int, int]], clock_rate_hz: int, ignore_first: int = 25
) -> list[float]:
    """J as pjmedia 2.15 computes it (rtcp.c ``pjmedia_rtcp_rx_rtp2``): RFC 3550 A.8's estimator, but
    only over packets that directly follow the highest sequence number so far (``diff == 1``).

    ``arrivals``: (arrival time s, sequence number, RTP timestamp) in arrival order. A late
    (reordered) packet, and the first packet after a gap, leave J and the transit reference
    untouched; the first ``ignore_first`` packets after RFC 3550 A.1 probation only set the
    reference. Returns J (ms) after each update. With no reordering and no loss this is exactly
    :func:`rfc3550_jitter_ms`; with reordering it reads lower, since the pairs it skips are
    the ones with the largest transit differences.
    """
    out: list[float] = []
    max_seq: int | None = None
    probation = 2
    received = 0
    transit: float | None = None
    jitter = 0.0
    last_ts: int | None = None
    for t, seq, ts in arrivals:
        if max_seq is None:
            max_seq = (seq - 1) % _SEQ_MOD
        udelta = (seq - max_seq) % _SEQ_MOD
        diff, in_probation, bad = 0, probation > 0, False
        if probation:
            if udelta == 1:
                diff, probation, max_seq = 1, probation - 1, seq
            else:
                bad, probation, max_seq = True, 1, seq
        elif 0 < udelta < _MAX_DROPOUT:
            diff, max_seq = udelta, seq
        elif _MAX_DROPOUT <= udelta <= _SEQ_MOD - _MAX_MISORDER:
            bad = True
        if bad:
            continue
        if not in_probation:
            received += 1
        if diff == 1 and ts != last_ts:
            now = t * clock_rate_hz - ts
            if transit is None or received < ignore_first:
                transit = now
            else:
                jitter += (abs(now - transit) - jitter) / 16.0
                transit = now
                out.append(1000.0 * jitter / clock_rate_hz)
        last_ts = ts
    return out


@dataclass(frozen=True)
class StreamTruth:
    """What a correct RFC 3550 receiver of one RTP stream should report at a given moment."""

    ssrc: int
    src: str
    dst: str
    received: int
    """Packets that arrived (released by the impairer) by then."""
    lost: int
    """RFC 3550 A.3: expected − received, expected = highest − lowest sequence number received + 1."""
    dropped_in_window: int
    """Packets the impairer dropped with a sequence number in [first, highest]: must equal ``lost``."""
    dropped_total: int
    highest_seq: int
    """Extended highest sequence number received."""
    jitter_ms: float
    """RFC 3550 J at the last arrival, from the impairer's release times and the RTP timestamps."""
    jitter_mean_ms: float
    """Mean of J over the packets after the first ``skip`` arrivals (pjmedia reports such a mean too)."""
    in_sequence_jitter_ms: float | None
    """J over in-sequence packets only, as pjmedia computes it (:func:`in_sequence_jitter_ms`)."""
    delays_ms: tuple[float, ...] = field(repr=False, default=())
    """Actual delay of every packet released (release − arrival at the impairer)."""

    @property
    def loss_percent(self) -> float:
        expected = self.received + self.lost
        return 100.0 * self.lost / expected if expected else 0.0


def _unwrap(seqs: Iterable[int]) -> list[int]:
    out: list[int] = []
    for seq in seqs:
        if not out:
            out.append(seq)
            continue
        prev = out[-1]
        step = ((seq - prev + 2**15) % 2**16) - 2**15
        out.append(prev + step)
    return out


def streams(records: Sequence[PacketRecord]) -> dict[int, tuple[str, str]]:
    """SSRC → (source, destination) of every RTP stream in the records."""
    found: dict[int, tuple[str, str]] = {}
    for r in records:
        if r.kind == "rtp" and r.ssrc is not None:
            found.setdefault(r.ssrc, (r.src, r.dst))
    return found


def receiver_truth(
    records: Sequence[PacketRecord], ssrc: int, clock_rate_hz: int, until: float | None = None, skip: int = 25
) -> StreamTruth:
    """Ground truth for stream ``ssrc`` as its receiver sees it at wall-clock time ``until`` (None: at the end).

    Packets count as received when the impairer released them by ``until``
    (the last hop is a veth: microseconds). ``skip`` arrivals are left out of
    ``jitter_mean_ms``, as pjmedia ignores the first 25 packets for jitter.
    """
    mine = [r for r in records if r.kind == "rtp" and r.ssrc == ssrc]
    if not mine:
        raise TestbedError(f"no RTP packets with SSRC {ssrc:#010x} went through the impairer")
    mine.sort(key=lambda r: r.index)
    ext = dict(zip((r.index for r in mine), _unwrap(r.seq or 0 for r in mine), strict=True))
    arrived = sorted(
        (r for r in mine if r.t_out is not None and (until is None or r.t_out <= until)), key=lambda r: r.t_out or 0.0
    )
    if not arrived:
        raise TestbedError(f"no RTP packet of SSRC {ssrc:#010x} was released by {until}")
    seqs = [ext[r.index] for r in arrived]
    first, highest = min(seqs), max(seqs)
    received = len(set(seqs))
    dropped = [ext[r.index] for r in mine if r.t_out is None]
    series = rfc3550_jitter_ms([r.t_out or 0.0 for r in arrived], [r.rtp_ts or 0 for r in arrived], clock_rate_hz)
    tail = series[max(0, skip - 1) :] or series
    in_seq = in_sequence_jitter_ms(
        [(r.t_out or 0.0, r.seq or 0, r.rtp_ts or 0) for r in arrived], clock_rate_hz, ignore_first=skip
    )
    return StreamTruth(
        ssrc=ssrc,
        src=mine[0].src,
        dst=mine[0].dst,
        received=received,
        lost=(highest - first + 1) - received,
        dropped_in_window=sum(1 for s in dropped if first <= s <= highest),
        dropped_total=len(dropped),
        highest_seq=highest,
        jitter_ms=series[-1] if series else 0.0,
        jitter_mean_ms=sum(tail) / len(tail) if tail else 0.0,
        in_sequence_jitter_ms=in_seq[-1] if in_seq else None,
        delays_ms=tuple(1000.0 * ((r.t_out or 0.0) - r.t_in) for r in arrived),
    )


@dataclass(frozen=True)
class ReportSeen:
    """An RTCP report block the impairer forwarded, and when."""

    t_in: float
    t_out: float
    reporter_ssrc: int | None
    block: ReportBlock


def reports_about(records: Sequence[PacketRecord], ssrc: int, until: float | None = None) -> list[ReportSeen]:
    """Report blocks about stream ``ssrc`` that were released by ``until``, oldest first."""
    seen = [
        ReportSeen(r.t_in, r.t_out, r.reporter_ssrc, block)
        for r in records
        if r.kind == "rtcp" and r.t_out is not None and (until is None or r.t_out <= until)
        for block in r.reports
        if block.ssrc == ssrc
    ]
    return sorted(seen, key=lambda s: s.t_out)


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed.impair")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="run the forwarder (inside the router namespace)")
    run.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    config = ForwarderConfig.from_json(args.config.read_text())
    try:
        serve(config)
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            log.error("no permission for /dev/net/tun or ip rules (run as root): %s", exc)
            return 3
        raise
    return 0


@contextlib.contextmanager
def impaired_path(
    impairment: Impairment, port_ranges: Sequence[tuple[int, int]], workdir: Path
) -> Iterator[tuple[Topology, Impairer]]:
    """A client — router — server topology with a running impairer; all of it torn down on the way out."""
    with Topology(workdir / "netns") as topology, Impairer(topology, impairment, port_ranges, workdir) as impairer:
        yield topology, impairer


if __name__ == "__main__":
    sys.exit(main())
