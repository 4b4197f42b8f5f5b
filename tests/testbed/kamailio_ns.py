"""The test bed's Kamailio and its echo service inside a network namespace, on that namespace's address.

A media test across an impaired path needs the server on the far side of the
router: :class:`NamespaceKamailio` runs the unchanged :class:`~tests.testbed.kamailio.Kamailio`
(registrar, proxy, echo extension served by baresip) in a namespace, e.g. the
server of a :class:`tests.testbed.netns.Topology`. It does so without changing
that class: every call into it goes through one long-lived worker thread that
has entered the namespace (:class:`NetnsThread`), so its sockets (port checks,
readiness probes) and its child processes (Kamailio, baresip, openssl, kamcmd)
all live there. The only difference is the configuration's ``listen`` lines,
which name the namespace's address instead of 127.0.0.1.

Why a long-lived thread and not :func:`tests.testbed.netns.in_netns` (a thread
per call): the test bed's processes ask for SIGTERM when the thread that
started them ends (``PR_SET_PDEATHSIG``), so Kamailio and baresip must be
started, and stopped, by a thread that outlives them.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from tests.testbed.impair import PacketRecord, streams
from tests.testbed.kamailio import Kamailio
from tests.testbed.netns import CLIENT_IP, SERVER_IP, Topology
from tests.testbed.procs import TestbedError

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000  # <linux/sched.h>


def _enter_netns(name: str) -> None:
    """Move the calling thread (only it) into network namespace ``name``."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise TestbedError(f"setns into {name}: {os.strerror(code)}")
    finally:
        os.close(fd)


class NetnsThread:
    """One worker thread that lives in a network namespace; :meth:`run` executes a function there.

    Sockets and child processes created by the function belong to that
    namespace (a child inherits the namespace of the thread that forks it).
    Keep this object open while such children run (see the module docstring).
    """

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"netns-{netns}", initializer=_enter_netns,
                                        initargs=(netns,))  # fmt: skip

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self._pool.submit(fn, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


_LISTEN = re.compile(r"^(listen=[a-z]+:)127\.0\.0\.1(:)", re.MULTILINE)


class _AddressedKamailio(Kamailio):
    """Kamailio whose listen addresses are ``host`` (the template hard-codes 127.0.0.1)."""

    def render(self) -> str:
        text = _LISTEN.sub(rf"\g<1>{self.host}\g<2>", super().render())
        if f"listen=udp:{self.host}:" not in text:
            raise TestbedError(f"kamailio.cfg.tmpl: found no 'listen=udp:127.0.0.1:' line to move to {self.host}")
        return text


class NamespaceKamailio:
    """Kamailio + echo service in network namespace ``netns``, listening on ``host`` (an address there).

    Attributes mirror :class:`Kamailio` through :attr:`server` (``users``,
    ``echo_extension``, ``udp_port``, ``echo.host`` …); methods that touch the
    network or processes run in the namespace via :meth:`call`.
    """

    def __init__(self, netns: str, host: str, workdir: Path, **kwargs: Any) -> None:
        self.netns = netns
        self.thread = NetnsThread(netns)
        try:
            self.server: Kamailio = self.thread.run(_AddressedKamailio, workdir, host=host, **kwargs)
        except BaseException:
            self.thread.close()
            raise

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``server.<method>(...)`` inside the namespace."""
        return self.thread.run(getattr(self.server, method), *args, **kwargs)

    def start(self) -> NamespaceKamailio:
        self.call("start")
        return self

    def stop(self) -> None:
        """Stop Kamailio and baresip (by PID, from the thread that started them), then the thread."""
        try:
            self.call("stop")
        finally:
            self.thread.close()

    def __enter__(self) -> NamespaceKamailio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- a media test bed


def write_profile(
    directory: Path, user: str, password: str, host: str, rtp_ports: tuple[int, int], echo_extension: str = "9196"
) -> Path:
    """An account profile for the test bed's Kamailio at ``host:5060`` (UDP), its password in a 0600 file."""
    directory.mkdir(parents=True, exist_ok=True)
    secret = directory / f"{user}.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    profile = directory / "profile.toml"
    profile.write_text(
        f'[account]\nuser = "{user}"\ndomain = "{host}"\nregistrar = "{host}:5060"\n'
        f'password_file = "{secret.name}"\n\n[network]\nrtp_ports = [{rtp_ports[0]}, {rtp_ports[1]}]\n\n'
        f'[checks]\necho_extension = "{echo_extension}"\n'
    )
    return profile


ECHO_RTP_PORTS = (20000, 20999)
"""Where the test bed's echo service (baresip) takes its RTP ports (tests/testbed/kamailio.py)."""


class MediaBed:
    """A client — router — server topology with Kamailio and its echo in ``server``, and a profile for user 1001.

    :meth:`run_probe` runs ``python -m diagnostics.network.media --json`` in the
    client namespace; an :class:`~tests.testbed.impair.Impairer` on :attr:`topology`
    with :attr:`port_ranges` impairs the media both ways.
    """

    def __init__(self, workdir: Path, rtp_ports: tuple[int, int] = (4000, 4999)) -> None:
        self.workdir = workdir
        self.rtp_ports = rtp_ports
        self.topology = Topology(workdir / "netns")
        self.kamailio: NamespaceKamailio | None = None
        self.profile = workdir / "profile" / "profile.toml"

    @property
    def port_ranges(self) -> list[tuple[int, int]]:
        """Both ends' RTP ranges: what to impair."""
        return [self.rtp_ports, ECHO_RTP_PORTS]

    def start(self) -> MediaBed:
        self.topology.__enter__()
        try:
            self.kamailio = NamespaceKamailio(self.topology.netns("server"), SERVER_IP, self.workdir / "kamailio")
            self.kamailio.start()
            write_profile(self.profile.parent, "1001", self.kamailio.server.users["1001"], SERVER_IP, self.rtp_ports)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            if self.kamailio is not None:
                self.kamailio.stop()
                self.kamailio = None
        finally:
            self.topology.down()

    def __enter__(self) -> MediaBed:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run_probe(self, timeout_s: float = 30.0) -> tuple[int, dict[str, Any]]:
        """The media check in the client namespace: its exit code and its check result (JSON form)."""
        argv = [sys.executable, "-m", "diagnostics.network.media", "--profile", str(self.profile), "--json"]
        done = self.topology.run("client", argv, timeout_s=timeout_s, check=False)
        try:
            report = json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise TestbedError(f"media check printed no JSON (exit {done.returncode}):\n{done.stdout}\n"
                               f"{done.stderr}") from exc  # fmt: skip
        check: dict[str, Any] = report["checks"][0]
        return done.returncode, check

    @staticmethod
    def directions(records: Sequence[PacketRecord]) -> tuple[int, int]:
        """SSRC of the inbound (echo → client) and the outbound (client → echo) RTP stream."""
        found = streams(records)
        inbound = [s for s, (_, dst) in found.items() if dst.startswith(CLIENT_IP + ":")]
        outbound = [s for s, (src, _) in found.items() if src.startswith(CLIENT_IP + ":")]
        if len(inbound) != 1 or len(outbound) != 1:
            raise TestbedError(f"expected one RTP stream each way through the impairer (got {found})")
        return inbound[0], outbound[0]
