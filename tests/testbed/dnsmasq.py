"""dnsmasq as a DNS server on loopback with a test zone, for the product's ``sip.dns`` check.

dnsmasq (Debian ``dnsmasq-base``) answers from records given on its command
line only: ``--no-resolv --no-hosts`` keep the machine's files out, and
``--local=/pk.test/`` makes it the authority for the zone, so a name it does not
know gets NXDOMAIN, a known name without the asked type gets NODATA, and a name
outside the zone gets REFUSED (no upstream servers). It runs in the foreground
on 127.0.0.1 at a free port, with its pid file in a per-run work dir, and is
stopped by the PID the test bed started. Every query it gets is logged, so a
test can compare what the product says it asked with what the server saw.

The zone (``RECORDS``) holds one scenario per name: see :class:`Zone`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.nameserver
import dns.resolver
import pytest

from tests.testbed.procs import Process, free_port, require, serving

log = logging.getLogger(__name__)

ZONE = "pk.test"  # .test is reserved for testing (RFC 6761 §6.2)


@dataclass(frozen=True)
class Naptr:
    name: str
    order: int
    preference: int
    service: str
    replacement: str
    flags: str = "s"

    def option(self) -> str:
        fields = (self.name, self.order, self.preference, self.flags, self.service, "", self.replacement)  # "" regexp
        return "--naptr-record=" + ",".join(map(str, fields))


@dataclass(frozen=True)
class Srv:
    name: str
    target: str
    port: int
    priority: int = 0
    weight: int = 0

    def option(self) -> str:
        return f"--srv-host={self.name},{self.target},{self.port},{self.priority},{self.weight}"


@dataclass(frozen=True)
class Host:
    name: str
    ipv4: str = ""
    ipv6: str = ""

    def option(self) -> str:
        return "--host-record=" + ",".join(x for x in (self.name, self.ipv4, self.ipv6) if x)


@dataclass(frozen=True)
class Txt:
    name: str
    text: str

    def option(self) -> str:
        return f"--txt-record={self.name},{self.text}"


Record = Naptr | Srv | Host | Txt


class Zone:
    """Names of the scenarios in :data:`RECORDS` (all under ``pk.test``)."""

    NAPTR = f"naptr.{ZONE}"
    """NAPTR: SCTP (order 5, unsupported), TLS (10/10), TCP (10/20), UDP (20/10) → SRV → A (TLS also AAAA ::1)."""
    SRV = f"srv.{ZONE}"
    """No NAPTR. _sip._udp: a:5080 (10/60), b:5070 (10/10), c:5090 (20/100); _sip._tcp: t:5060."""
    PLAIN = f"plain.{ZONE}"
    """Only an A record: 127.0.3.1."""
    EMPTY = f"empty.{ZONE}"
    """Exists (a TXT record) but has no SIP or address records."""
    DANGLING = f"dangling.{ZONE}"
    """_sip._udp SRV to a host that has no address."""
    MISSING = f"missing.{ZONE}"
    """Does not exist: NXDOMAIN."""
    OUTSIDE = "outside.invalid"
    """Not in the zone: dnsmasq has no upstream and answers REFUSED."""


RECORDS: tuple[Record, ...] = (
    Naptr(Zone.NAPTR, 5, 10, "SIP+D2S", f"_sip._sctp.{Zone.NAPTR}"),
    Naptr(Zone.NAPTR, 10, 10, "SIPS+D2T", f"_sips._tcp.{Zone.NAPTR}"),
    Naptr(Zone.NAPTR, 10, 20, "SIP+D2T", f"_sip._tcp.{Zone.NAPTR}"),
    Naptr(Zone.NAPTR, 20, 10, "SIP+D2U", f"_sip._udp.{Zone.NAPTR}"),
    Srv(f"_sip._sctp.{Zone.NAPTR}", f"sctp.{Zone.NAPTR}", 5060),
    Srv(f"_sips._tcp.{Zone.NAPTR}", f"tls.{Zone.NAPTR}", 5061),
    Srv(f"_sip._tcp.{Zone.NAPTR}", f"tcp.{Zone.NAPTR}", 5060),
    Srv(f"_sip._udp.{Zone.NAPTR}", f"udp.{Zone.NAPTR}", 5060),
    Host(f"tls.{Zone.NAPTR}", "127.0.1.1", "::1"),
    Host(f"tcp.{Zone.NAPTR}", "127.0.1.2"),
    Host(f"udp.{Zone.NAPTR}", "127.0.1.3"),
    Host(f"sctp.{Zone.NAPTR}", "127.0.1.4"),
    Srv(f"_sip._udp.{Zone.SRV}", f"b.{Zone.SRV}", 5070, priority=10, weight=10),
    Srv(f"_sip._udp.{Zone.SRV}", f"a.{Zone.SRV}", 5080, priority=10, weight=60),
    Srv(f"_sip._udp.{Zone.SRV}", f"c.{Zone.SRV}", 5090, priority=20, weight=100),
    Srv(f"_sip._tcp.{Zone.SRV}", f"t.{Zone.SRV}", 5060, priority=10),
    Host(f"a.{Zone.SRV}", "127.0.2.1"),
    Host(f"b.{Zone.SRV}", "127.0.2.2"),
    Host(f"c.{Zone.SRV}", "127.0.2.3"),
    Host(f"t.{Zone.SRV}", "127.0.2.4"),
    Host(Zone.PLAIN, "127.0.3.1"),
    Txt(Zone.EMPTY, "no SIP here"),
    Srv(f"_sip._udp.{Zone.DANGLING}", f"nowhere.{Zone.DANGLING}", 5060),
)

_QUERY_LINE = re.compile(r"query\[(?P<type>[A-Z0-9]+)\] (?P<name>\S+) from ")


class DnsServer:
    """A foreground dnsmasq on ``host:port`` serving :data:`RECORDS` over UDP and TCP."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.workdir = workdir
        self.host = host
        self.port = port or free_port(host)
        self.log_path = workdir / "dnsmasq.log"
        self.process: Process | None = None

    @property
    def address(self) -> str:
        """``host:port``, as a profile's ``dns_server`` takes it."""
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> None:
        dnsmasq = require("dnsmasq")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            dnsmasq,
            "--keep-in-foreground",
            "--conf-file=/dev/null",  # no /etc/dnsmasq.conf
            "--no-resolv", "--no-hosts",  # no upstream servers, no /etc/hosts
            f"--listen-address={self.host}", "--bind-interfaces", f"--port={self.port}",
            f"--pid-file={self.workdir / 'dnsmasq.pid'}",
            f"--local=/{ZONE}/",
            "--log-queries", "--log-facility=-",
            *[record.option() for record in RECORDS],
        ]  # fmt: skip
        if os.geteuid() == 0:
            argv += ["--user=root", "--group=root"]  # keep to ourselves instead of dropping to a system user
        self.process = Process("dnsmasq", argv, self.log_path, cwd=self.workdir)
        self.process.wait_until(self._answers, timeout_s, f"DNS answer on {self.address}")
        log.info("dnsmasq up (pid %d) at %s", self.process.pid, self.address)

    def _answers(self) -> bool:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(self.host, self.port)]
        resolver.lifetime = 0.3
        try:
            resolver.resolve(f"{Zone.PLAIN}.", "A", search=False)
        except dns.exception.DNSException:
            return False
        return True

    def log_mark(self) -> int:
        """A position in the query log; pass it to :meth:`queries` to see only what came after."""
        return self.log_path.stat().st_size

    def queries(self, since: int = 0) -> list[str]:
        """The queries the server got (``"NAPTR naptr.pk.test"``), oldest first."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return [f"{m['type']} {m['name']}" for m in _QUERY_LINE.finditer(text)]

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()




@pytest.fixture(scope="session")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    """The session's DNS server (dnsmasq on 127.0.0.1, a free port); fails (never skips) if it cannot start."""
    with serving(DnsServer(tmp_path_factory.mktemp("dnsmasq")), "dnsmasq") as server:
        yield server
