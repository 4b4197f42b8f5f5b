"""SIP round trips on loopback: phonekit's OPTIONS probe and registration against sipsak, on one Kamailio.

Starts a test-bed Kamailio on free ports, then runs each probe N times, alternating
tools so that both see the same server state, and prints medians and the ratio
phonekit / sipsak (target ≤ 1.5).

Three figures per probe:

* **wire**: the exchange as an independent observer sees it: kernel timestamps of
  the packets on ``lo`` (an AF_PACKET socket, needs root), from the first request
  to the first final 2xx of that Call-ID. For OPTIONS that is mostly the server's
  time; for REGISTER it includes the client's work between the 401 and its answer;
* **self**: what each tool reports: phonekit's ``rtt_ms`` (OPTIONS) or ``duration_ms``
  (REGISTER → 401 → REGISTER → 200), sipsak's "reply received after" / "received last
  message … after first request" (sipsak's UDP figure is unreliable: it reports
  0.003 ms at times);
* **wall**: the whole call as a user waits for it: phonekit's function call in this
  process (socket, TLS, removing the binding again) against the sipsak process
  (including its start-up).

sipsak 0.9.8 fails TLS against Kamailio here ("select returned error"), so TLS is
measured for phonekit alone. Run: ``python -m bench.sip_rtt [--runs 50]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from diagnostics.profile import Transport
from diagnostics.secret import Secret
from diagnostics.sip.options import probe_options
from diagnostics.sip.register import RegisterParams, register
from tests.testbed.kamailio import Kamailio
from tests.testbed.procs import require

USER = "1001"
_SIPSAK_OPTIONS = re.compile(r"reply received after ([\d.]+) ms")
_SIPSAK_REGISTER = re.compile(r"received last message ([\d.]+) ms after first request")


@dataclass
class Series:
    self_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)
    wire_ms: list[float] = field(default_factory=list)

    def add(self, self_ms: float, wall_ms: float) -> None:
        self.self_ms.append(self_ms)
        self.wall_ms.append(wall_ms)


_PACKET_OUTGOING = 4  # each loopback packet is seen going out and coming in: count it once
_SO_TIMESTAMPNS = 35
_CALL_ID = re.compile(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
_CSEQ = re.compile(rb"^CSeq[ \t]*:[ \t]*\d+ (\w+)", re.IGNORECASE | re.MULTILINE)


class _Capture:
    """Runs in its own process (no GIL shared with the tools it times): reads ``lo``, answers ``take``."""

    def __init__(self, ports: set[int]) -> None:
        self.ports = ports
        self.first_request: dict[bytes, float] = {}
        self.first_ok: dict[bytes, float] = {}
        self.agent: dict[bytes, str] = {}

    def run(self, sock: socket.socket, control: Connection) -> None:
        while True:
            if control.poll():
                if control.recv() != "take":
                    return
                control.send(self.take())
            try:
                frame, ancillary, _, address = sock.recvmsg(65535, 64)
            except TimeoutError:
                continue
            if address[2] != _PACKET_OUTGOING or len(frame) < 34 or frame[12:14] != b"\x08\x00":
                continue
            stamp = next((struct.unpack("qq", data[:16]) for level, kind, data in ancillary
                          if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS), None)  # fmt: skip
            if stamp is not None:
                self.packet(frame[14:], stamp[0] + stamp[1] / 1e9)

    def packet(self, ip: bytes, at: float) -> None:
        header, proto = (ip[0] & 0x0F) * 4, ip[9]
        if proto not in (6, 17):
            return
        sport, dport = struct.unpack("!HH", ip[header : header + 4])
        payload = ip[header + 8 :] if proto == 17 else ip[header + (ip[header + 12] >> 4) * 4 :]
        if not payload or not {sport, dport} & self.ports:
            return
        call = _CALL_ID.search(payload)
        if call is None:
            return  # a TLS record, or a keepalive
        call_id = call.group(1)
        if payload.startswith(b"SIP/2.0 2"):
            self.first_ok.setdefault(call_id, at)
        elif not payload.startswith(b"SIP/2.0") and call_id not in self.first_request:
            self.first_request[call_id] = at
            self.agent[call_id] = "phonekit" if b"User-Agent: phonekit/" in payload else "sipsak"

    def take(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"phonekit": [], "sipsak": []}
        for call_id, start in self.first_request.items():
            if call_id in self.first_ok:
                out[self.agent[call_id]].append((self.first_ok[call_id] - start) * 1000.0)
        self.first_request.clear()
        self.first_ok.clear()
        self.agent.clear()
        return out


def lo_capture_socket() -> socket.socket:
    """An AF_PACKET socket on ``lo`` (every protocol, root only) with kernel receive timestamps, 50 ms reads."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL
    sock.bind(("lo", 0))
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    sock.settimeout(0.05)
    return sock


class WireClock:
    """Kernel timestamps of the SIP packets to and from the server's ports on ``lo``: a clock neither tool owns.

    An AF_PACKET socket (root only) read by a separate process, so that capturing
    does not compete with phonekit for this process's interpreter lock.
    """

    def __init__(self, ports: set[int]) -> None:
        sock = lo_capture_socket()
        self._control, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("fork").Process(
            target=_Capture(ports).run, args=(sock, child), daemon=True
        )
        self._process.start()
        sock.close()

    def take(self) -> dict[str, list[float]]:
        """Request-to-first-2xx times per tool (ms) since the last call, then forget them."""
        time.sleep(0.1)  # let the capture catch up with the last packets
        self._control.send("take")
        result: dict[str, list[float]] = self._control.recv()
        return result

    def close(self) -> None:
        self._control.send("stop")
        self._process.join(2.0)


def _free_short_port(start: int) -> int:
    """A port below 10000 free for UDP and TCP: sipsak 0.9.8 cuts a 5-digit port in the URI to 4 digits."""
    for port in range(start, 10000):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
                udp.bind(("127.0.0.1", port))
                tcp.bind(("127.0.0.1", port))
                return port
        except OSError:
            continue
    raise RuntimeError(f"no free port in {start}..9999 on 127.0.0.1")


Probe = Callable[[Kamailio, Transport], float]
"""Run one probe; return the duration the tool itself reports (ms)."""


def _timed(probe: Probe, server: Kamailio, transport: Transport) -> tuple[float, float]:
    start = time.perf_counter()
    self_ms = probe(server, transport)
    return self_ms, (time.perf_counter() - start) * 1000.0


def _sipsak(argv: Sequence[str], pattern: re.Pattern[str]) -> float:
    done = subprocess.run([require("sipsak"), "-vv", *argv], capture_output=True, text=True, timeout=30, check=False)
    match = pattern.search(done.stdout + done.stderr)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"sipsak {' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return float(match.group(1))


def phonekit_options(server: Kamailio, transport: Transport) -> float:
    result = probe_options(server.host, server.port(transport.value), transport,  # type: ignore[arg-type]
                           tls_ca_file=server.ca_path)  # fmt: skip
    if result.rtt_ms is None or result.status != 200:
        raise RuntimeError(f"phonekit OPTIONS failed: {result}")
    return result.rtt_ms


def phonekit_register(server: Kamailio, transport: Transport) -> float:
    params = RegisterParams(server.host, server.port(transport.value), transport, USER,  # type: ignore[arg-type]
                            server.domain, Secret(server.users[USER]), tls_ca_file=server.ca_path)  # fmt: skip
    result = register(params)
    if not result.registered or result.duration_ms is None:
        raise RuntimeError(f"phonekit REGISTER failed: {result.outcome} {result.detail}")
    return result.duration_ms


def sipsak_options(server: Kamailio, transport: Transport) -> float:
    port = server.port(transport.value)  # type: ignore[arg-type]
    return _sipsak(["-E", transport.value, "-s", f"sip:{server.host}:{port}"], _SIPSAK_OPTIONS)


def sipsak_register(server: Kamailio, transport: Transport) -> float:
    port = server.port(transport.value)  # type: ignore[arg-type]
    argv = ["-E", transport.value, "-U", "-x", "60", "-a", server.users[USER], "-s", f"sip:{USER}@{server.host}:{port}"]
    return _sipsak(argv, _SIPSAK_REGISTER)


def _median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):8.3f}" if values else f"{'-':>8}"


def _ratio(mine: Sequence[float], other: Sequence[float]) -> str:
    return f"{statistics.median(mine) / statistics.median(other):6.2f}" if mine and other else f"{'-':>6}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)

    probes: list[tuple[str, Transport, Probe, Probe | None]] = [
        ("OPTIONS", Transport.UDP, phonekit_options, sipsak_options),
        ("OPTIONS", Transport.TCP, phonekit_options, sipsak_options),
        ("OPTIONS", Transport.TLS, phonekit_options, None),
        ("REGISTER", Transport.UDP, phonekit_register, sipsak_register),
        ("REGISTER", Transport.TCP, phonekit_register, sipsak_register),
        ("REGISTER", Transport.TLS, phonekit_register, None),
    ]
    with tempfile.TemporaryDirectory(prefix="sip-rtt-") as workdir:
        port = _free_short_port(7060)
        server = Kamailio(Path(workdir), udp_port=port, tcp_port=port, tls_port=_free_short_port(port + 1))
        server.start()
        try:
            wire: WireClock | None = WireClock({server.udp_port, server.tcp_port})
        except PermissionError:
            wire = None
            print("(no wire figures: capturing on lo needs root)")
        try:
            print(f"Kamailio on 127.0.0.1 udp/tcp {server.udp_port}, tls {server.tls_port}; {args.runs} runs each; "
                  "medians in ms, ratio = phonekit / sipsak")  # fmt: skip
            print(f"{'':<14}{'---------- wire ----------':>28}{'---------- self ----------':>28}"
                  f"{'---------- wall ----------':>28}")  # fmt: skip
            print(f"{'probe':<14}" + f"{'phonekit':>10}{'sipsak':>10}{'ratio':>8}" * 3)
            for method, transport, ours, theirs in probes:
                mine, other = Series(), Series()
                for _ in range(3):  # warm-up: imports, first connections, Kamailio's workers
                    ours(server, transport)
                    if theirs is not None:
                        theirs(server, transport)
                server.unregister(USER)
                if wire is not None:
                    wire.take()
                for _ in range(args.runs):
                    mine.add(*_timed(ours, server, transport))
                    if theirs is not None:
                        other.add(*_timed(theirs, server, transport))
                    server.unregister(USER)  # sipsak leaves its binding
                if wire is not None:
                    seen = wire.take()
                    mine.wire_ms, other.wire_ms = seen["phonekit"], seen["sipsak"]
                row = f"{method + ' ' + transport.value:<14}"
                for a, b in ((mine.wire_ms, other.wire_ms), (mine.self_ms, other.self_ms),
                             (mine.wall_ms, other.wall_ms)):  # fmt: skip
                    row += f"{_median(a):>10}{_median(b):>10}{_ratio(a, b):>8}"
                print(row)
        finally:
            if wire is not None:
                wire.close()
            server.stop()
    print("TLS: wire shows only encrypted records; sipsak 0.9.8 cannot do TLS against this Kamailio.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
