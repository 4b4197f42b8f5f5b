"""Call setup time through Kamailio on loopback: phonekit's engine against baresip calling the same peer.

Starts the call test bed (bench/callbed.py: Kamailio on free ports, a baresip
registered as 1002 that auto-answers), phonekit's :class:`phone.engine.Engine` in
a child process registered as 1001 (default engine configuration: every codec
pjsua2 has, VAD on) and a baresip registered as 1003 (PCMU, PCMA, G.722). Each
caller then calls ``sip:1002@127.0.0.1:<port>`` N times, alternating, hangs up
at once and waits for the peer to close the call. Two figures per call:

* **wire**: kernel timestamps of the SIP packets on ``lo`` (AF_PACKET capture in a
  process of its own, the machinery of bench/sip_rtt.py; needs root), from the
  caller's first INVITE to its ACK of the first 200 for that Call-ID: the 407
  proxy challenge, the authenticated INVITE, routing, the peer's answer and the
  caller's ACK, as an observer neither tool owns sees them;
* **self**: each tool's own figure: phonekit's ``CallOutcome.setup_ms`` (``makeCall``
  to the call's CONFIRMED state); baresip has none of its own, so it is the time
  from sending ``dial`` on its ctrl_tcp to receiving the ``CALL_ESTABLISHED``
  event (that adds the control connection's latency and baresip's event code).

Prints medians (and the range), the ratio phonekit / baresip and the issue #6
target "ratio ≤ 1.0" on the wire figure. Run: ``python -m bench.call_setup [--runs 20]``.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.callbed import CallBed, PhonekitProcess, baresip_call, call_bed
from bench.sip_rtt import _CALL_ID, _CSEQ, _Capture, lo_capture_socket
from tests.testbed.baresip import BaresipPeer

TARGET_RATIO = 1.0
AGENTS = ("phonekit", "baresip")


@dataclass(frozen=True)
class Setup:
    """One call's setup as seen on ``lo`` (ms from the caller's first INVITE)."""

    agent: str
    invite_bytes: int
    """Size of the caller's first INVITE (SIP message, UDP payload)."""
    total_ms: float
    """First INVITE → the caller's ACK of the 200."""
    challenge_ms: float
    """The caller's turnaround on the proxy challenge: 407 received → authenticated INVITE sent."""
    answer_ms: float
    """The caller's turnaround on the answer: 200 received → ACK sent."""

    @property
    def rest_ms(self) -> float:
        """Everything that is not the caller's: Kamailio, the callee, the kernel."""
        return self.total_ms - self.challenge_ms - self.answer_ms


class _SetupCapture(_Capture):
    """sip_rtt's capture loop, noting per Call-ID when each step of an authenticated INVITE crossed ``lo``."""

    def __init__(self, ports: set[int]) -> None:
        super().__init__(ports)
        self.calls: dict[bytes, dict[str, float]] = {}
        self.sizes: dict[bytes, int] = {}

    def packet(self, ip: bytes, at: float) -> None:
        header, proto = (ip[0] & 0x0F) * 4, ip[9]
        if proto != 17:  # the bench calls over UDP
            return
        sport, dport = int.from_bytes(ip[header : header + 2]), int.from_bytes(ip[header + 2 : header + 4])
        payload = ip[header + 8 :]
        if not {sport, dport} & self.ports or (call := _CALL_ID.search(payload)) is None:
            return
        call_id = call.group(1)
        steps = self.calls.setdefault(call_id, {})
        if "ack" in steps:
            return
        if payload.startswith(b"INVITE "):
            if "invite" not in steps:
                steps["invite"] = at
                self.sizes[call_id] = len(payload)
                self.agent[call_id] = "phonekit" if b"\nUser-Agent: phonekit" in payload else "baresip"
            elif b"\nProxy-Authorization:" in payload:
                steps.setdefault("auth_invite", at)  # the caller's; Kamailio's copy to the callee comes after
        elif payload.startswith(b"SIP/2.0 407"):
            steps.setdefault("challenge", at)
        elif payload.startswith(b"SIP/2.0 200") and (cseq := _CSEQ.search(payload)) and cseq.group(1) == b"INVITE":
            steps["answer"] = at  # the last one before the ACK: Kamailio's copy to the caller
        elif payload.startswith(b"ACK ") and "answer" in steps:
            steps["ack"] = at

    def take(self) -> list[Setup]:  # type: ignore[override]
        out = []
        for call_id, t in self.calls.items():
            if {"invite", "challenge", "auth_invite", "answer", "ack"} <= t.keys():
                ms = {step: (at - t["invite"]) * 1000.0 for step, at in t.items()}
                out.append(Setup(self.agent[call_id], self.sizes[call_id], ms["ack"],
                                 ms["auth_invite"] - ms["challenge"], ms["ack"] - ms["answer"]))  # fmt: skip
        self.calls.clear()
        self.sizes.clear()
        self.agent.clear()
        return out


class SetupClock:
    """INVITE-to-ACK times from kernel timestamps on ``lo``, read in a separate process (as sip_rtt's WireClock)."""

    def __init__(self, ports: set[int]) -> None:
        sock = lo_capture_socket()
        self._control, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("fork").Process(
            target=_SetupCapture(ports).run, args=(sock, child), daemon=True
        )
        self._process.start()
        sock.close()

    def take(self) -> list[Setup]:
        """The call setups seen since the last call, then forget them."""
        time.sleep(0.1)  # let the capture catch up with the last packets
        self._control.send("take")
        result: list[Setup] = self._control.recv()
        return result

    def close(self) -> None:
        self._control.send("stop")
        self._process.join(2.0)


def phonekit_call(bed: CallBed, agent: PhonekitProcess) -> float:
    assert bed.callee is not None
    mark = bed.callee.mark()
    agent.send("call", uri=bed.uri(), seconds=0.2, tone_hz=440, dbfs=-20)
    agent.expect("media", 10.0)
    done = agent.expect("called", 10.0)
    if done["code"] != 200:
        raise agent.fail(f"call to {bed.uri()} failed: {done['code']} {done['reason']}")
    bed.wait_callee_idle(mark)
    return float(done["setup_ms"])


def baresip_caller_call(bed: CallBed, caller: BaresipPeer) -> float:
    assert bed.callee is not None
    mark, caller_mark = bed.callee.mark(), caller.mark()
    self_ms = baresip_call(caller, bed.uri())
    time.sleep(0.2)
    caller.hangup()
    caller.wait_event("CALL_CLOSED", 10.0, since=caller_mark)
    bed.wait_callee_idle(mark)
    return self_ms


def _stats(values: Sequence[float]) -> str:
    if not values:
        return f"{'-':>24}"
    return f"{statistics.median(values):8.2f} ({min(values):6.2f}–{max(values):6.2f})"


def _row(name: str, mine: Sequence[float], theirs: Sequence[float]) -> float | None:
    ratio = statistics.median(mine) / statistics.median(theirs) if mine and theirs else None
    print(f"{name:<24}{_stats(mine):>24}{_stats(theirs):>25}{'-' if ratio is None else f'{ratio:.2f}':>9}")
    return ratio


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="calls per caller (default 20)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    self_ms: dict[str, list[float]] = {agent: [] for agent in AGENTS}
    setups: list[Setup] = []
    with call_bed("call-setup-") as bed:
        phonekit = bed.phonekit()
        baresip = bed.baresip_caller()
        try:
            wire: SetupClock | None = SetupClock({bed.server.udp_port})
        except PermissionError:
            wire = None
            print("(no wire figures: capturing on lo needs root)")
        try:
            for _ in range(2):  # warm-up: first calls, Kamailio's workers, the peer's first answer
                phonekit_call(bed, phonekit)
                baresip_caller_call(bed, baresip)
            if wire is not None:
                wire.take()
            for _ in range(args.runs):
                self_ms["phonekit"].append(phonekit_call(bed, phonekit))
                self_ms["baresip"].append(baresip_caller_call(bed, baresip))
            if wire is not None:
                setups = wire.take()
        finally:
            if wire is not None:
                wire.close()
        port = bed.server.udp_port

    print(f"Kamailio on 127.0.0.1 udp {port}; callee baresip 1002 (auto-answer); callers phonekit 1001 "
          f"(child process) and baresip 1003, {args.runs} calls each, alternating")  # fmt: skip
    print(f"median (min–max) in ms{'phonekit':>22}{'baresip':>25}{'ratio':>9}")
    wire_ms = {agent: [s.total_ms for s in setups if s.agent == agent] for agent in AGENTS}
    ratio = _row("wire INVITE → ACK", wire_ms["phonekit"], wire_ms["baresip"])
    for name, part in (("  caller: 407 → INVITE", "challenge_ms"), ("  caller: 200 → ACK", "answer_ms"),
                       ("  server, callee, kernel", "rest_ms")):  # fmt: skip
        _row(name, *([getattr(s, part) for s in setups if s.agent == agent] for agent in AGENTS))
    self_ratio = _row("self", self_ms["phonekit"], self_ms["baresip"])
    sizes = {agent: sorted({s.invite_bytes for s in setups if s.agent == agent}) for agent in AGENTS}
    if setups:
        print(f"first INVITE: phonekit {min(sizes['phonekit'])}–{max(sizes['phonekit'])} bytes, "
              f"baresip {min(sizes['baresip'])}–{max(sizes['baresip'])} bytes")
    judged = "wire"
    if ratio is None:
        judged, ratio = "self", self_ratio
    assert ratio is not None
    verdict = "PASS" if ratio <= TARGET_RATIO else "MISS"
    print(f"target: setup time phonekit / baresip ≤ {TARGET_RATIO:.1f} ({judged}): {ratio:.2f} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
