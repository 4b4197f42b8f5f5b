"""Kamailio 5.6 registrar/proxy on loopback, with TLS and an echo extension.

The product's SIP checks need a real server to register and call through, over
UDP, TCP and TLS, and tests need to see what did (or did not) reach it.  This
module renders ``kamailio.cfg.tmpl`` into a per-run work dir with per-run
passwords and a per-run test CA, runs Kamailio in the foreground (so the test
bed owns its PID), and runs a headless baresip with its ``echo`` module behind
the echo extension, so a call to it hears its own audio back.
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from tests.testbed.procs import Process, TestbedError, free_port, require, serving, tcp_listening

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).with_name("kamailio.cfg.tmpl")
MODULE_PATH = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
BARESIP_MODULE_PATH = "/usr/lib/baresip/modules"

DEFAULT_USERS: tuple[str, ...] = ("1001", "1002", "1003", "1004")
DEFAULT_ECHO_EXTENSION = "9196"
# OPTIONS/MESSAGE to this user come back as "200 Reflected" with the request,
# exactly as it arrived, as the body (SIP ALG detection compares the two).
DEFAULT_REFLECTOR_USER = "reflect"

CertVariant = Literal["good", "expired", "wrong_host"]
Transport = Literal["udp", "tcp", "tls"]


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TlsFiles:
    """A test CA and a server certificate/key signed by it (PEM files)."""

    ca_path: Path
    cert_path: Path
    key_path: Path
    variant: CertVariant


def _openssl(args: Sequence[str], cwd: Path) -> None:
    """Run the openssl CLI; fail with its own output (a broken CA is a broken test bed)."""
    done = subprocess.run([require("openssl"), *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise TestbedError(f"openssl {' '.join(args[:2])} failed ({done.returncode}):\n{done.stderr}")


def make_test_pki(directory: Path, variant: CertVariant = "good", host: str = "127.0.0.1") -> TlsFiles:
    """Create a fresh test CA and a server certificate for ``host``.

    ``variant`` exists so later tests can ask for a server that a careful client
    must refuse: ``"expired"`` (validity ended before it began, i.e. in the
    past) or ``"wrong_host"`` (names only ``wrong-host.invalid``).  ``"good"``
    carries SAN IP:``host`` and DNS:localhost.  EC P-256 keys keep this fast.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_pem = directory / "ca.key", directory / "ca.pem"
    key, csr, pem = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        [
            "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_pem), "-days", "30",
            "-subj", f"/CN=phonekit test CA {secrets.token_hex(4)}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
        directory,
    )  # fmt: skip
    san = "DNS:wrong-host.invalid" if variant == "wrong_host" else f"IP:{host},DNS:localhost"
    cn = "wrong-host.invalid" if variant == "wrong_host" else "localhost"
    ext = directory / "server.ext"
    ext.write_text(
        f"subjectAltName={san}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    _openssl(["req", "-new", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}"], directory)
    # -days -1 puts notAfter one day before notBefore (= now): already expired.
    days = "-1" if variant == "expired" else "30"
    _openssl(
        [
            "x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(pem), "-days", days, "-extfile", str(ext),
        ],
        directory,
    )  # fmt: skip
    return TlsFiles(ca_path=ca_pem, cert_path=pem, key_path=key, variant=variant)


# --------------------------------------------------------------------------- SIP probes


def sip_options(
    host: str, port: int, transport: Transport = "udp", timeout_s: float = 2.0, ca_path: Path | None = None
) -> int:
    """Send one OPTIONS to the server itself and return the reply's status code.

    A raw probe rather than a SIP stack: it answers fast (no Timer F), and it is
    independent of the code under test.  Fails with TestbedError on no answer.
    """
    local_ip = "127.0.0.1"
    tag, branch, call_id = secrets.token_hex(4), "z9hG4bK" + secrets.token_hex(6), secrets.token_hex(8)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as raw:
        raw.settimeout(timeout_s)
        raw.bind((local_ip, 0))
        lport = raw.getsockname()[1]
        try:
            raw.connect((host, port))
        except OSError as exc:
            raise TestbedError(f"cannot reach {transport}:{host}:{port}: {exc}") from exc
        sock: socket.socket = raw
        if transport == "tls":
            ctx = ssl.create_default_context(cafile=str(ca_path) if ca_path else None)
            sock = ctx.wrap_socket(raw, server_hostname=host)
        message = (
            f"OPTIONS sip:{host}:{port};transport={transport} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport.upper()} {local_ip}:{lport};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{local_ip}>;tag={tag}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {call_id}@{local_ip}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            f"Contact: <sip:probe@{local_ip}:{lport};transport={transport}>\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        try:
            sock.sendall(message.encode())
            reply = sock.recv(65535).decode(errors="replace")
        except OSError as exc:
            raise TestbedError(f"no answer to OPTIONS at {transport}:{host}:{port}: {exc}") from exc
        finally:
            if sock is not raw:
                sock.close()
    match = re.match(r"SIP/2\.0 (\d{3}) ", reply)
    if not match:
        raise TestbedError(f"not a SIP reply from {transport}:{host}:{port}: {reply[:200]!r}")
    return int(match.group(1))


# --------------------------------------------------------------------------- echo service


class EchoService:
    """A headless baresip whose ``echo`` module answers every call and loops audio back.

    Why baresip: its echo module decodes the caller's RTP and sends the audio
    back encoded (through the ``aubridge`` pseudo device), like a real phone
    would, and it handles the whole dialog (re-INVITE, BYE) correctly.  It
    listens at a static address that Kamailio routes the echo extension to, so
    it needs no registration.  Codecs: PCMU, PCMA, G.722 (no resampling:
    baresip 1.0's resampler cuts 8<->16 kHz audio above ~1.3 kHz).
    """

    def __init__(self, workdir: Path, extension: str, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.workdir = workdir
        self.extension = extension
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.log_path = workdir / "echo-baresip.log"
        self.process: Process | None = None

    @property
    def uri(self) -> str:
        return f"sip:{self.extension}@{self.host}:{self.port}"

    def _write_config(self) -> Path:
        confdir = self.workdir / "echo-baresip"
        confdir.mkdir(parents=True, exist_ok=True)
        (confdir / "config").write_text(
            "# baresip echo service for the phonekit test bed (generated)\n"
            "poll_method\t\tepoll\n"
            f"sip_listen\t\t{self.host}:{self.port}\n"
            # 'lo' as an interface name fails in baresip 1.0: use the address.
            f"net_interface\t\t{self.host}\n"
            # The echo module names one aubridge device per call for both
            # directions: what the player gets, the source sends back.
            "audio_player\t\taubridge,nil\n"
            "audio_source\t\taubridge,nil\n"
            "audio_alert\t\taubridge,nil\n"
            # Small buffers: a short, steady echo delay (measured 68-88 ms
            # round trip from pjsua2 with G.722; defaults 20-160/5-10 gave 128).
            "audio_buffer\t\t20-60\n"
            "jitter_buffer_delay\t2-4\n"
            "rtp_ports\t\t20000-20999\n"
            f"module_path\t\t{BARESIP_MODULE_PATH}\n"
            "module\t\t\tg711.so\n"
            "module\t\t\tg722.so\n"
            "module\t\t\taubridge.so\n"
            "module_app\t\taccount.so\n"
            "module_app\t\techo.so\n"
        )
        # No registration: Kamailio sends the echo extension here directly.
        (confdir / "accounts").write_text(f"<{self.uri}>;regint=0\n")
        (confdir / "contacts").write_text("")
        # A trailing newline in uuid breaks baresip 1.0's Contact header.
        (confdir / "uuid").write_text(str(uuid.uuid4()))
        return confdir

    def start(self, timeout_s: float = 10.0) -> None:
        confdir = self._write_config()
        self.process = Process("echo baresip", [require("baresip"), "-f", str(confdir)], self.log_path)
        self.process.wait_until(lambda: tcp_listening(self.host, self.port), timeout_s, f"SIP listener on {self.port}")
        log.info("echo service %s up (pid %d)", self.uri, self.process.pid)

    def stop(self) -> None:
        """Stop by PID; baresip 1.0 sometimes ignores the first SIGTERM, Process.stop escalates."""
        if self.process is not None:
            self.process.stop(timeout_s=3.0)
            self.process = None


# --------------------------------------------------------------------------- Kamailio


@dataclass(frozen=True)
class LoggedRequest:
    """One request as Kamailio logged it on arrival (the PHONEKIT-REQ line)."""

    method: str
    ruri: str
    from_user: str
    src_ip: str
    src_port: int
    transport: str
    call_id: str


_REQ_LINE = re.compile(
    r"PHONEKIT-REQ method=(?P<method>\S+) ruri=(?P<ruri>\S+) from_user=(?P<from_user>\S+) "
    r"src=(?P<src_ip>[^\s]+):(?P<src_port>\d+) proto=(?P<transport>\S+) call_id=(?P<call_id>\S*)"
)


def render_config(template: str, values: Mapping[str, str]) -> str:
    """Replace every ``{{NAME}}``; fail if one is unknown (a typo must not reach Kamailio)."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise TestbedError(f"{TEMPLATE.name}: no value for {{{{{name}}}}}")
        return values[name]

    return re.sub(r"\{\{([A-Z_]+)\}\}", one, template)


class Kamailio:
    """A Kamailio registrar/proxy for the tests, plus its echo service.

    Attributes tests use: ``domain``/``host`` (``127.0.0.1``), ``udp_port``,
    ``tcp_port``, ``tls_port``, ``users`` (user -> per-run password),
    ``echo_extension``, ``reflector_user``, ``ca_path``, ``tls`` (all TLS files),
    ``log_path``, ``workdir``, ``echo`` (the :class:`EchoService`).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        udp_port: int = 5060,
        tcp_port: int = 5060,
        tls_port: int = 5061,
        users: Sequence[str] = DEFAULT_USERS,
        echo_extension: str = DEFAULT_ECHO_EXTENSION,
        cert_variant: CertVariant = "good",
        host: str = "127.0.0.1",
        reflector_user: str = DEFAULT_REFLECTOR_USER,
    ) -> None:
        self.workdir = workdir
        self.host = host
        self.domain = host
        self.udp_port = udp_port
        self.tcp_port = tcp_port
        self.tls_port = tls_port
        self.users: dict[str, str] = {user: secrets.token_urlsafe(12) for user in users}
        self.echo_extension = echo_extension
        self.reflector_user = reflector_user
        self.cert_variant: CertVariant = cert_variant
        self.log_path = workdir / "kamailio.log"
        self.config_path = workdir / "kamailio.cfg"
        self.ctl_socket = workdir / "kamailio_ctl"
        self.echo = EchoService(workdir, echo_extension, host=host)
        self.tls: TlsFiles | None = None
        self.process: Process | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def ca_path(self) -> Path:
        if self.tls is None:
            raise TestbedError("Kamailio not started: no test CA yet")
        return self.tls.ca_path

    def _check_ports_free(self) -> None:
        """Fail early and clearly if another server (a system Kamailio?) holds our ports."""
        busy = []
        for kind, port in ((socket.SOCK_DGRAM, self.udp_port), (socket.SOCK_STREAM, self.tcp_port),
                           (socket.SOCK_STREAM, self.tls_port)):  # fmt: skip
            with socket.socket(socket.AF_INET, kind) as sock:
                if kind == socket.SOCK_STREAM:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((self.host, port))
                except OSError as exc:
                    busy.append(f"{'udp' if kind == socket.SOCK_DGRAM else 'tcp'}/{port} ({exc.strerror})")
        if busy:
            raise TestbedError(
                f"Kamailio ports busy on {self.host}: {', '.join(busy)}; see 'ss -lunpt' "
                "(another test run or a system kamailio service?)"
            )

    def render(self) -> str:
        assert self.tls is not None
        cases = "\n".join(
            f'\t\tcase "{user}":\n\t\t\t$var(password) = "{password}";\n\t\t\tbreak;'
            for user, password in self.users.items()
        )
        return render_config(
            TEMPLATE.read_text(),
            {
                "UDP_PORT": str(self.udp_port),
                "TCP_PORT": str(self.tcp_port),
                "TLS_PORT": str(self.tls_port),
                "MODULE_PATH": MODULE_PATH,
                "CTL_SOCKET": str(self.ctl_socket),
                "TLS_CERT": str(self.tls.cert_path),
                "TLS_KEY": str(self.tls.key_path),
                "TLS_CA": str(self.tls.ca_path),
                "REALM": self.domain,
                "PASSWORD_CASES": cases,
                "UNKNOWN_USER_PASSWORD": secrets.token_urlsafe(24),
                "ECHO_EXTENSION": self.echo_extension,
                "ECHO_HOST": self.echo.host,
                "ECHO_PORT": str(self.echo.port),
                "REFLECTOR_USER": self.reflector_user,
            },
        )

    def start(self, timeout_s: float = 15.0) -> None:
        """Start the echo service and Kamailio; fail with the logs if either does not come up."""
        kamailio = require("kamailio")
        require("kamcmd")
        self._check_ports_free()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = make_test_pki(self.workdir / "tls", self.cert_variant, host=self.host)
        self.config_path.write_text(self.render())
        check = subprocess.run(
            [kamailio, "-c", "-f", str(self.config_path)], capture_output=True, text=True, timeout=30, check=False
        )
        if check.returncode != 0:
            raise TestbedError(f"Kamailio rejects {self.config_path}:\n{check.stdout}{check.stderr}")
        self.echo.start()
        # -DD: no daemon, the main process stays our child (we own its PID) and
        # forks its workers; -E: log to stderr, i.e. to our log file.
        # -Y: runtime dir in the work dir; small shared/private memory.
        argv = [
            kamailio, "-DD", "-E", "-f", str(self.config_path), "-Y", str(self.workdir),
            "-w", str(self.workdir), "-m", "64", "-M", "8",
        ]  # fmt: skip
        self.process = Process("kamailio", argv, self.log_path, cwd=self.workdir)
        self.process.wait_until(self._ready, timeout_s, "answer to OPTIONS on UDP, TCP and TLS")
        log.info("kamailio up (pid %d) udp/%d tcp/%d tls/%d", self.process.pid, self.udp_port, self.tcp_port,
                 self.tls_port)  # fmt: skip

    def _ready(self) -> bool:
        if not (tcp_listening(self.host, self.tcp_port) and tcp_listening(self.host, self.tls_port)):
            return False
        if not self.ctl_socket.exists():
            return False
        try:
            return sip_options(self.host, self.udp_port, "udp", timeout_s=0.3) == 200
        except TestbedError:
            return False

    def stop(self) -> None:
        """Stop Kamailio (its workers follow their main process) and the echo service, by PID."""
        try:
            if self.process is not None:
                self.process.stop()
                self.process = None
        finally:
            self.echo.stop()

    def __enter__(self) -> Kamailio:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- addresses

    def port(self, transport: Transport) -> int:
        return {"udp": self.udp_port, "tcp": self.tcp_port, "tls": self.tls_port}[transport]

    def registrar_uri(self, transport: Transport = "udp") -> str:
        """The URI a client registers to, e.g. ``sip:127.0.0.1:5061;transport=tls``."""
        return f"sip:{self.host}:{self.port(transport)};transport={transport}"

    def aor(self, user: str) -> str:
        return f"sip:{user}@{self.domain}"

    @property
    def reflector_uri(self) -> str:
        """Request URI of the reflector: OPTIONS/MESSAGE to it are answered with themselves as received."""
        return f"sip:{self.reflector_user}@{self.domain}"

    # ----------------------------------------------------------------- inspection

    def rpc(self, *args: str, timeout_s: float = 5.0) -> subprocess.CompletedProcess[str]:
        """Run one kamcmd RPC command against this instance's own control socket."""
        return subprocess.run(
            [require("kamcmd"), "-s", f"unix:{self.ctl_socket}", *args],
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )  # fmt: skip

    def contacts(self, user: str) -> list[str]:
        """Contact URIs registered for ``user`` now (empty if none)."""
        # "s:" makes kamcmd pass a numeric user as a string.
        done = self.rpc("ul.lookup", "location", f"s:{user}@{self.domain}")
        if done.returncode != 0:
            if "404" in done.stdout + done.stderr:
                return []
            raise TestbedError(f"kamcmd ul.lookup failed ({done.returncode}): {done.stdout}{done.stderr}")
        return re.findall(r"Address:\s*(\S+)", done.stdout)

    def registered(self, user: str) -> bool:
        """Whether ``user`` has at least one registered contact."""
        return bool(self.contacts(user))

    def unregister(self, user: str) -> None:
        """Drop every contact of ``user`` (tests clean up after themselves)."""
        done = self.rpc("ul.rm", "location", f"s:{user}@{self.domain}")
        if done.returncode != 0 and "404" not in done.stdout + done.stderr:
            raise TestbedError(f"kamcmd ul.rm failed ({done.returncode}): {done.stdout}{done.stderr}")

    def log_position(self) -> int:
        """A mark in the log; pass it to :meth:`requests` to see only what came after."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0) -> str:
        with open(self.log_path, "rb") as fh:
            fh.seek(since)
            return fh.read().decode(errors="replace")

    def requests(self, since: int = 0, method: str | None = None) -> list[LoggedRequest]:
        """Requests that reached Kamailio (after ``since``), optionally of one method."""
        found = []
        for match in _REQ_LINE.finditer(self.log_text(since)):
            fields = match.groupdict()
            request = LoggedRequest(
                method=fields["method"],
                ruri=fields["ruri"],
                from_user=fields["from_user"],
                src_ip=fields["src_ip"],
                src_port=int(fields["src_port"]),
                transport=fields["transport"],
                call_id=fields["call_id"],
            )
            if method is None or request.method == method:
                found.append(request)
        return found

    def wait_for_request(self, method: str, since: int = 0, timeout_s: float = 5.0) -> LoggedRequest:
        """Wait until a request of ``method`` is logged (log lines land a moment after the fact)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.requests(since, method)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise TestbedError(f"no {method} reached Kamailio within {timeout_s} s")
            time.sleep(0.05)


# --------------------------------------------------------------------------- fixture




@pytest.fixture(scope="session")
def kamailio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kamailio]:
    """The session's Kamailio (UDP/TCP 5060, TLS 5061) with its echo service.

    A component that cannot start fails the test with the reason (never skips).
    """
    with serving(Kamailio(tmp_path_factory.mktemp("kamailio")), "Kamailio") as server:
        yield server
