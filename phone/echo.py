"""``phonekit echo-server``: answer SIP calls and send every caller's audio back.

The embedded default of ``phonekit launch`` (started on loopback as a child
process, stopped by its PID) and a tool helpdesk can run anywhere: a caller
hears themself about 40 ms later plus the network's round trip, which proves
microphone, speaker and both RTP directions at once.

Without a profile it answers calls sent straight to its address
(``sip:echo@HOST:PORT``; any user part works); with ``--profile`` it registers
as that account, so a PBX routes the account's number here. Each call gets its
own loop (:class:`phone.engine.LoopPort`): callers never hear each other. SRTP
is optional, so callers with and without it are answered. OPTIONS requests
get 200 (pjsua2 answers them itself), so ``sip.options`` can check the path.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from diagnostics.errors import MeasurementError, UsageError
from diagnostics.profile import Transport, load_profile
from phone.engine import Call, Engine, EngineConfig, LoopPort
from phone.phone import account_for

__all__ = ["EchoServer", "main", "register"]

log = logging.getLogger(__name__)

MAX_CALL_S = 600.0
"""A call longer than this is hung up: an echo test never needs ten minutes, a forgotten softphone might."""


@dataclass
class _Echo:
    call: Call
    port: LoopPort
    answered_at: float


class EchoServer:
    """An engine that answers every call with a loop; drive it with :meth:`serve` or :meth:`poll`."""

    def __init__(self, config: EngineConfig, profile: Path | None = None, user: str = "echo") -> None:
        self.config = config
        self.profile_path = profile
        self.user = user
        self.engine = Engine(config)
        self.calls_answered = 0
        self._echoes: list[_Echo] = []
        self.uri = ""

    def start(self) -> EchoServer:
        self.engine.start()
        self.engine.on_incoming = self._answer
        if self.profile_path is not None:
            profile = load_profile(self.profile_path)
            _, outcome = self.engine.register(account_for(profile))
            if not outcome.ok:
                raise MeasurementError(
                    f"registration as {profile.aor} failed: {outcome.code} {outcome.reason}",
                    remedy="run 'phonekit check sip --profile FILE' for the cause",
                )
            self.uri = profile.aor
        else:
            kind = self.config.transports[0]
            self.engine.add_local_account(self.user, kind)
            host = self.config.bound_address or "127.0.0.1"
            host = f"[{host}]" if ":" in host else host
            self.uri = f"sip:{self.user}@{host}:{self.engine.local_port(kind)}"
            if kind is not Transport.UDP:
                self.uri += f";transport={kind.value}"
        return self

    def _answer(self, call: Call) -> None:
        port = self.engine.loop_port()
        call.port = port
        call.accept()
        self.calls_answered += 1
        self._echoes.append(_Echo(call, port, time.monotonic()))
        log.info("echo: answered %s", call.remote_uri)

    def poll(self, ms: int = 20) -> None:
        self.engine.poll(ms)
        now = time.monotonic()
        for echo in list(self._echoes):
            if not echo.call.disconnected and now - echo.answered_at > MAX_CALL_S:
                echo.call.end()
            if echo.call.disconnected:
                log.info("echo: %s hung up after %.1f s (%d frames echoed)", echo.call.remote_uri,
                         now - echo.answered_at, echo.port.frames_echoed)  # fmt: skip
                self._echoes.remove(echo)
                echo.call.port = None
                self.engine.forget(echo.call)
                self.engine.drop_port(echo.port)

    def serve(self, stop: Callable[[], bool]) -> None:
        while not stop():
            self.poll(20)

    def close(self) -> None:
        self._echoes.clear()
        self.engine.close()

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("echo-server", help="answer SIP calls and send the caller's audio back")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5060, help="SIP port; 0 picks a free one (default 5060)")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="register as this account instead of answering at the address")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the ready line as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if not 0 <= args.port <= 65535:
        print(f"phonekit echo-server: error: --port must be 0..65535 (got {args.port})", file=sys.stderr)
        return 2
    config = EngineConfig(
        transports=(Transport(args.transport),),
        bound_address=args.address,
        sip_port=args.port,
        srtp="optional",
        vad=False,
        user_agent="phonekit echo",
    )
    server = EchoServer(config, args.profile)
    try:
        server.start()
        if args.json:
            print(json.dumps({"uri": server.uri, "transport": args.transport}), flush=True)
        else:
            print(f"phonekit echo service at {server.uri}; Ctrl-C stops it", flush=True)
        server.serve(lambda: stopping)
        log.info("echo service stopping after %d calls", server.calls_answered)
    except UsageError as exc:
        print(f"phonekit echo-server: error: {exc}", file=sys.stderr)
        return 2
    except MeasurementError as exc:
        print(f"phonekit echo-server: {exc} ({exc.remedy})", file=sys.stderr)
        return 3
    finally:
        server.close()
    return 0
