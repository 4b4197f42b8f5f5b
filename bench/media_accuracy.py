"""``network.media`` against ground truth: injected loss and jitter versus what the probe measures.

One test-bed path (client — router — server namespaces, Kamailio and its baresip
echo in the server namespace, tests/testbed/kamailio_ns.py); for each setting the
userspace impairer (tests/testbed/impair.py) drops and delays RTP both ways and
records every packet's fate, and ``python -m diagnostics.network.media --json``
runs in the client namespace. Per direction it prints:

* loss: the impairer's own count of packets it dropped inside the receiver's
  window, what an RFC 3550 A.3 receiver must count at the moment the probe read
  its statistics (``truth``: drops plus packets still in flight behind a later
  one), what phonekit measured, and measured / truth;
* jitter: RFC 3550 J computed from the impairer's release times and the RTP
  timestamps, over all packets in arrival order (``rfc``) and over in-sequence
  packets only (``in-seq``: what pjmedia implements), what phonekit measured,
  and measured / rfc. Inbound J is pjmedia's (this end); outbound J is the far
  end's (baresip's) RTCP report.

Needs root (namespaces, a TUN device). Run: ``python -m bench.media_accuracy``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.testbed.impair import Impairer, Impairment, StreamTruth, receiver_truth, reports_about
from tests.testbed.kamailio_ns import MediaBed


@dataclass(frozen=True)
class Setting:
    name: str
    impairment: Impairment


SETTINGS = (
    Setting("clean path", Impairment(seed=20)),
    Setting("1 % loss, 20 ± 10 ms", Impairment(loss_percent=1.0, delay_ms=20.0, jitter_ms=10.0, seed=21)),
    Setting("5 % loss, 40 ± 30 ms", Impairment(loss_percent=5.0, delay_ms=40.0, jitter_ms=30.0, seed=22)),
    Setting("10 % loss, 40 ± 30 ms", Impairment(loss_percent=10.0, delay_ms=40.0, jitter_ms=30.0, seed=23)),
    Setting("5 % loss, 40 ± 30 ms, FIFO", Impairment(5.0, 40.0, 30.0, seed=24, reorder=False)),
    Setting("2 % loss, 80 ± 60 ms, FIFO", Impairment(2.0, 80.0, 60.0, seed=25, reorder=False)),
)


def _ratio(measured: float | None, truth: float | None) -> str:
    if measured is None or truth is None:
        return "—"
    if truth == 0:
        return "exact" if measured == 0 else "∞"
    return f"{measured / truth:.3f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _row(direction: str, truth: StreamTruth, m: dict[str, Any], prefix: str, in_seq: bool) -> str:
    lost, jitter = m[f"{prefix}_lost_packets"], m[f"{prefix}_jitter_ms"]
    in_sequence = _num(truth.in_sequence_jitter_ms) if in_seq else "—"
    return (
        f"  {direction:<9}{truth.dropped_in_window:>7}{truth.lost:>7}{_num(lost, 0):>7}{_ratio(lost, truth.lost):>8}"
        f"{_num(truth.loss_percent):>8}{_num(m[f'{prefix}_loss_percent']):>8}"
        f"{_num(truth.jitter_ms):>9}{in_sequence:>9}{_num(jitter):>9}{_ratio(jitter, truth.jitter_ms):>8}"
    )


def run(bed: MediaBed, setting: Setting, workdir: Path) -> None:
    with Impairer(bed.topology, setting.impairment, bed.port_ranges, workdir) as impairer:
        code, check = bed.run_probe()
        records = impairer.records()
    m = check["measurements"]
    inbound, outbound = bed.directions(records)
    until = m["sampled_at_unix_s"]
    truth_in = receiver_truth(records, inbound, 8000, until=until)
    reports = reports_about(records, outbound, until=until)
    print(
        f"{setting.name}: {check['status']} (exit {code}), MOS {m['mos']}, one-way delay {m['one_way_delay_ms']} ms "
        f"({m['delay_source']}), RTT {m['rtt_ms']} ms, {m['inbound_reordered_packets']} reordered inbound"
    )
    print(_row("inbound", truth_in, m, "inbound", in_seq=True))
    if reports:
        truth_out = receiver_truth(records, outbound, 8000, until=reports[-1].t_in)
        print(_row("outbound", truth_out, m, "outbound", in_seq=False))
    else:
        print("  outbound: no RTCP report from the far end before the probe ended")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", type=int, default=len(SETTINGS), help="run only the first N settings")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print("loss in packets (dropped: the impairer's count in the window; truth: RFC 3550 A.3 at the sample) and %;")
    print("jitter J in ms (rfc: all packets in arrival order; in-seq: in-sequence packets only, as pjmedia)")
    print(f"  {'':<9}{'dropped':>7}{'truth':>7}{'meas.':>7}{'ratio':>8}{'truth%':>8}{'meas.%':>8}"
          f"{'J rfc':>9}{'J in-seq':>9}{'J meas.':>9}{'ratio':>8}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="media-accuracy-") as tmp:
        workdir = Path(tmp)
        with MediaBed(workdir / "bed") as bed:
            for index, setting in enumerate(SETTINGS[: args.settings]):
                run(bed, setting, workdir / f"setting{index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
