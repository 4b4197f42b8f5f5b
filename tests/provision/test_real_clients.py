"""The generated files in the real clients: each registers at the test bed's Kamailio with exactly what phonekit wrote.

* baresip 1.0 runs with the generated ``accounts`` (byte for byte) and ``config``; the test only appends
  a control channel (``ctrl_tcp``) to the config so it can ask baresip whether it registered.
* linphonec (Debian's linphone-cli 5.1) runs with the generated ``linphonerc``, and again with nothing but
  ``[misc] config-uri=file://…/linphone.xml``: liblinphone's own provisioning reads the XML.
* phonekit's own ``check sip`` runs on the generated profile.
* MicroSIP is Windows-only: its file is checked against the keys MicroSIP 3.20.5 reads, listed below
  from its source.

baresip and linphonec register as 1003 with a display name full of characters that need quoting;
phonekit's own check with a plain one (diagnostics/sip/message.py does not escape quotes yet).
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from diagnostics.profile import Transport
from diagnostics.secret import Secret
from provision.dialplan import load_dialplan, microsip_dial_plan
from provision.model import Client, Machine, SrtpMode
from provision.render import RenderedFile, clear_caches, parse_linphonerc, render_machine, sip_quote
from tests.testbed import procs
from tests.testbed.baresip import BaresipPeer, Registrar
from tests.testbed.kamailio import Kamailio
from tests.testbed.procs import Process, require

pytestmark = pytest.mark.testbed

REPO = Path(__file__).resolve().parents[2]
USER = "1003"
DISPLAY_NAME = 'Carol "C." <Müller>; = #'


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def clean_registrations(kamailio: Kamailio) -> Iterator[Kamailio]:
    kamailio.unregister(USER)
    yield kamailio
    kamailio.unregister(USER)


def machine_for(kamailio: Kamailio, transport: Transport = Transport.UDP, **changes: object) -> Machine:
    fields: dict[str, object] = {
        "hostname": "pc-carol",
        "user": "carol",
        "display_name": DISPLAY_NAME,
        "extension": USER,
        "domain": kamailio.domain,
        "registrar": f"{kamailio.host}:{kamailio.port(transport.value)}",  # type: ignore[arg-type]
        "password": Secret(kamailio.users[USER]),
        "transport": transport,
        "echo_extension": kamailio.echo_extension,
        "clients": tuple(Client),
    }
    fields.update(changes)
    return Machine(**fields)  # type: ignore[arg-type]


def files_of(machine: Machine, client: Client, site: Path | None = None) -> dict[str, RenderedFile]:
    return {f.path: f for f in render_machine(machine, clients=[client], site_templates=site)}


def write(path: Path, file: RenderedFile) -> Path:
    """As the output stage writes: 0600 for secret files, bytes from encode()."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if file.secret else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(file.encode())
    return path


def site_block(tmp_path: Path, template: str, block: str, text: str) -> Path:
    """A site folder whose ``template`` extends the packaged one, replacing ``block`` (e.g. to add a CA file)."""
    folder = tmp_path / "site"
    path = folder / template
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'{{% extends "builtin:{template}" %}}\n{{% block {block} %}}\n{text}{{% endblock %}}\n')
    return folder


# --------------------------------------------------------------------------------------------- baresip


class GeneratedBaresip(BaresipPeer):
    """baresip on phonekit's generated ``accounts`` and ``config``; the test appends only its control channel."""

    def __init__(self, workdir: Path, files: dict[str, RenderedFile], registrar: Registrar) -> None:
        super().__init__(workdir, name="generated-baresip", registrar=registrar)
        self.files = files

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        write(self.config_dir / "accounts", self.files["baresip/accounts"])
        config = self.files["baresip/config"].content + (
            "# appended by the test: a control channel to ask baresip for its registration\n"
            "module_app ctrl_tcp.so\n"
            f"ctrl_tcp_listen {self.host}:{self.ctrl_port}\n"
        )
        (self.config_dir / "config").write_text(config)
        (self.config_dir / "uuid").write_text("a0d4ff6f-6a8a-4c3e-9d7e-0b1f2d3c4e5f")  # no newline (NOTES.md)


@pytest.mark.parametrize("transport", [Transport.UDP, Transport.TLS])
def test_baresip_registers_with_the_generated_files(
    clean_registrations: Kamailio, tmp_path: Path, transport: Transport
) -> None:
    kamailio = clean_registrations
    site = None
    if transport is Transport.TLS:  # the test CA, as a site would add its own
        site = site_block(tmp_path, "baresip/config.j2", "extra", f"sip_cafile {kamailio.ca_path}\n")
    machine = machine_for(kamailio, transport, srtp=SrtpMode.OPTIONAL, codecs=("G722", "PCMA", "PCMU", "opus"))
    files = files_of(machine, Client.BARESIP, site)
    registrar = Registrar(kamailio.host, kamailio.port(transport.value), USER, "(in the generated accounts)",
                          transport.value)  # fmt: skip
    with GeneratedBaresip(tmp_path / "baresip", files, registrar) as peer:
        accounts = peer.config_dir / "accounts"
        assert accounts.read_bytes() == files["baresip/accounts"].encode()
        assert oct(accounts.stat().st_mode & 0o777) == "0o600"
        peer.wait_registered(timeout_s=10.0)
        assert kamailio.registered(USER)
        info = peer.command("reginfo")
        assert f"sip:{USER}@{kamailio.domain}" in info
        assert "audio codec not found" not in peer.log_tail(200)
        assert f"{USER}@{kamailio.domain}: Using media encryption 'srtp'" in peer.log_tail(200)


# ------------------------------------------------------------------------------------------- linphonec


def run_linphonec(workdir: Path, rc: Path, timeout_s: float = 15.0) -> str:
    """Start linphonec on ``rc`` (its home in ``workdir``), ask until it is registered, quit; return its output.

    No sound card is needed to register: liblinphone logs that it finds none and goes on. It needs
    ``~/.local/share/linphone`` to exist (its database lives there): without it 5.1 never registers.
    """
    home = workdir / "home"
    (home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
    out = workdir / "linphonec.out"
    env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    argv = [require("linphonec"), "-c", str(rc), "-d", "4", "-l", str(workdir / "linphonec.log")]
    process = Process("linphonec", argv, out, env=env, cwd=workdir, stdin=subprocess.PIPE)
    stdin = process.popen.stdin
    assert stdin is not None
    try:
        deadline = time.monotonic() + timeout_s
        while "registered, identity=" not in out.read_text(errors="replace"):
            if time.monotonic() > deadline or not process.alive():
                raise process.fail(f"not registered within {timeout_s:g} s (see {workdir / 'linphonec.log'})")
            stdin.write(b"status register\n")
            stdin.flush()
            time.sleep(0.3)
        stdin.write(b"quit\n")
        stdin.flush()
        process.popen.wait(10.0)  # quitting unregisters and writes the configuration back
    finally:
        process.stop()
    return out.read_text(errors="replace")


def test_linphonec_registers_with_the_generated_linphonerc(clean_registrations: Kamailio, tmp_path: Path) -> None:
    kamailio = clean_registrations
    machine = machine_for(kamailio, codecs=("PCMU", "G722", "opus"))
    files = files_of(machine, Client.LINPHONE)
    rc = write(tmp_path / "linphonerc", files["linphonerc"])
    output = run_linphonec(tmp_path, rc)
    identity = f"{sip_quote(DISPLAY_NAME)} <sip:{USER}@{kamailio.domain}>"
    assert f"registered, identity={identity} duration=600" in output
    # linphonec wrote back the configuration it ran with: our identity and only our codecs, in our order.
    used = {name: dict(entries) for name, entries in parse_linphonerc(rc.read_text())}
    assert used["proxy_0"]["reg_identity"] == identity
    codecs = [used[s]["mime"] for s in sorted(used) if s.startswith("audio_codec_")]
    assert codecs == ["PCMU", "G722", "opus"]


def test_linphonec_registers_from_the_generated_provisioning_xml(clean_registrations: Kamailio, tmp_path: Path) -> None:
    kamailio = clean_registrations
    files = files_of(machine_for(kamailio), Client.LINPHONE)
    xml = write(tmp_path / "linphone.xml", files["linphone.xml"])
    rc = tmp_path / "linphonerc"
    rc.write_text(f"[misc]\nconfig-uri=file://{xml}\n")  # liblinphone's remote provisioning from a local file
    output = run_linphonec(tmp_path, rc)
    assert f"registered, identity={sip_quote(DISPLAY_NAME)} <sip:{USER}@{kamailio.domain}> duration=600" in output


# ---------------------------------------------------------------------------------------------- phonekit


def check_sip(profile: Path) -> dict[str, dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "provision.cli", "check", "sip", "--profile", str(profile), "--json"],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )  # fmt: skip
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise procs.TestbedError(f"phonekit check sip exited {done.returncode}:\n{done.stdout}\n{done.stderr}") from exc
    return {c["id"]: c for c in report["checks"]}


@pytest.mark.parametrize("transport", [Transport.UDP, Transport.TLS])
def test_phonekit_check_sip_registers_with_the_generated_profile(
    kamailio: Kamailio, tmp_path: Path, transport: Transport
) -> None:
    site = None
    if transport is Transport.TLS:
        site = site_block(tmp_path, "phonekit/profile.toml.j2", "tls",
                          f'\n[tls]\nca_file = "{kamailio.ca_path}"\nverify = true\n')  # fmt: skip
    # A display name without quotes: diagnostics/sip/message.py does not escape them yet (400 Invalid From Header).
    machine = machine_for(kamailio, transport, display_name="Carol Müller")
    profile = write(tmp_path / "phonekit.toml", files_of(machine, Client.PHONEKIT, site)["phonekit.toml"])
    checks = check_sip(profile)
    register = checks["sip.register"]
    assert register["status"] == "pass", register
    measured = register["measurements"]
    assert isinstance(measured, dict)
    assert measured["target"] == f"{transport.value}:{machine.registrar}"
    assert (measured["aor"], measured["unregistered"]) == (f"sip:{USER}@{kamailio.domain}", True)
    assert checks["sip.options"]["status"] == "pass"


# ---------------------------------------------------------------------------------------------- MicroSIP

# What MicroSIP 3.20.5 reads (litkinger/MicroSIP-3.20.5 at aa9afb2, settings.cpp): every
# GetPrivateProfileString key of AccountSettings::Init ([Settings]) and AccountSettings::AccountLoad ([AccountN]).
MICROSIP_SETTINGS_KEYS = frozenset({
    "AA", "AC", "DND", "DTMFMethod", "EC", "EM", "STUN", "VAD", "accountId", "activeTab", "alwaysOnTop",
    "audioCodecs", "audioInputDevice", "audioOutputDevice", "audioRingDevice", "autoAnswer", "autoAnswerDelay",
    "autoAnswerNumber", "autoHangUpTime", "autoRecording", "bringToFrontOnIncoming", "callWaiting", "callsWidth0",
    "callsWidth1", "callsWidth2", "callsWidth3", "callsWidth4", "callsWidth5", "checkUpdatesTime", "cmdCallAnswer",
    "cmdCallBusy", "cmdCallEnd", "cmdCallRing", "cmdCallStart", "cmdIncomingCall", "cmdOutgoingCall",
    "contactsWidth0", "contactsWidth1", "contactsWidth2", "defaultAction", "denyIncoming", "disableMessaging",
    "disableVideo", "dnsSrv", "dnsSrvNs", "enableLocalAccount", "enableLog", "enableMediaButtons", "enableSTUN",
    "enableShortcuts", "forceCodec", "headsetSupport", "lastCallHasVideo", "lastCallNumber", "localDTMF", "mainH",
    "mainW", "mainX", "mainY", "maxConcurrentCalls", "messagesH", "messagesW", "messagesX", "messagesY",
    "micAmplification", "noIgnoreCall", "noResize", "opusStereo", "portKnockerHost", "portKnockerPorts",
    "randomAnswerBox", "recordingButton", "recordingFormat", "recordingPath", "ringinX", "ringinY", "ringingSound",
    "rport", "rtpPortMax", "rtpPortMin", "shortcutsBottom", "silent", "singleMode", "sourcePort",
    "swLevelAdjustment", "updatesInterval", "userAgent", "usersDirectory", "videoBitrate", "videoCaptureDevice",
    "videoCodec", "videoH263", "videoH264", "videoVP8", "volumeInput", "volumeOutput", "volumeRing",
})  # fmt: skip
MICROSIP_ACCOUNT_KEYS = frozenset({
    "AVPF", "ICE", "SRTP", "allowRewrite", "authID", "dialPlan", "dialingPrefix", "disableSessionTimer",
    "displayName", "domain", "hideCID", "keepAlive", "label", "password", "passwordSize", "proxy", "publicAddr",
    "publish", "registerRefresh", "server", "transport", "username", "voicemailNumber",
})  # fmt: skip
# Values MicroSIP understands: AccountDlg.cpp (transportItems, the SRTP combo box), mainDlg.cpp (codec list).
MICROSIP_TRANSPORTS = {"udp", "tcp", "tls", ""}
MICROSIP_SRTP = {"", "optional", "mandatory"}
MICROSIP_CODECS = {
    "opus/48000/2", "PCMA/8000/1", "PCMU/8000/1", "G722/16000/1", "G7221/16000/1", "G7221/32000/1", "G723/8000/1",
    "G729/8000/1", "GSM/8000/1", "GSM-EFR/8000/1", "AMR/8000/1", "AMR-WB/16000/1", "iLBC/8000/1",
    "speex/32000/1", "speex/16000/1", "speex/8000/1", "SILK/24000/1", "SILK/16000/1", "SILK/12000/1",
    "SILK/8000/1", "L16/8000/1", "L16/8000/2", "L16/16000/1", "L16/16000/2", "L16/44100/1", "L16/44100/2",
    "L16/48000/1", "L16/48000/2",
}  # fmt: skip


def read_microsip_ini(file: RenderedFile) -> configparser.ConfigParser:
    data = file.encode()
    assert data[:2] == b"\xff\xfe", "MicroSIP reads UTF-16LE with a BOM; anything else as ANSI"
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",), comment_prefixes=(";",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys as written
    parser.read_string(data[2:].decode("utf-16-le"))
    return parser


# A small plan of a site's own (a file, not a built-in name), with a per-user exception to its barring.
SMALL_PLAN = """name = "de-small"
[[barring.rule]]
name = "premium-0900"
description = "premium-rate 0900 numbers"
prefixes = ["0900"]
[[barring.rule]]
name = "abroad"
description = "calls abroad but to Austria"
prefixes = ["00"]
except = ["0043"]
"""


@pytest.mark.parametrize("full", [True, False])
def test_microsip_ini_writes_only_keys_and_values_microsip_reads(
    kamailio: Kamailio, tmp_path: Path, full: bool
) -> None:
    plan = tmp_path / "de-small.toml"
    plan.write_text(SMALL_PLAN)
    changes: dict[str, object] = {"srtp": SrtpMode.MANDATORY, "transport": Transport.TLS, "auth_user": "c1003",
                                  "stun_server": "stun.example.com:3478", "input_device": "Mikrofon (Jabra)",
                                  "output_device": "Lautsprecher (Jabra)", "codecs": ("opus", "iLBC", "speex/16000"),
                                  "allow_numbers": ("+4990012345",)}  # fmt: skip
    changes |= {"dial_profile": str(plan), "barring_profile": str(plan)}
    if not full:  # the built-in plan, no display name, no options
        changes = {"display_name": "", "transport": Transport.UDP}
        plan = Path("de-default")
    machine = machine_for(kamailio, **changes)
    ini = read_microsip_ini(files_of(machine, Client.MICROSIP)["MicroSIP.ini"])
    assert ini.sections() == ["Settings", "Account1"]
    assert set(ini["Settings"]) <= MICROSIP_SETTINGS_KEYS
    assert set(ini["Account1"]) <= MICROSIP_ACCOUNT_KEYS
    assert ini["Settings"]["accountId"] == "1"  # selects [Account1]
    # AccountLoad gives up on an account without a domain; registering needs server, username, password.
    for key in ("server", "domain", "username", "password"):
        assert ini["Account1"][key], key
    assert ini["Account1"]["transport"] in MICROSIP_TRANSPORTS
    assert ini["Account1"]["SRTP"] in MICROSIP_SRTP
    assert set(ini["Settings"]["audioCodecs"].split(" ")) <= MICROSIP_CODECS
    assert int(ini["Account1"]["registerRefresh"]) >= 10  # AccountLoad raises lower values to 10
    if full:
        assert (ini["Account1"]["transport"], ini["Account1"]["SRTP"]) == ("tls", "mandatory")
        assert ini["Account1"]["authID"] == "c1003"
        assert (ini["Settings"]["STUN"], ini["Settings"]["enableSTUN"]) == ("stun.example.com:3478", "1")
        assert ini["Settings"]["audioCodecs"] == "opus/48000/2 iLBC/8000/1 speex/16000/1"
        assert ini["Settings"]["audioInputDevice"] == "Mikrofon (Jabra)"
        assert ini["Account1"]["displayName"] == DISPLAY_NAME.replace('"', '\\"')
    # The machine's plan with its barring profile and allow list, as provision.dialplan renders it for MicroSIP.
    rendered = microsip_dial_plan(load_dialplan(str(plan), barring=str(plan)), machine.allow_numbers)
    assert ini["Account1"]["dialPlan"] == rendered and len(rendered) <= 255
    assert ("90012345" in rendered) is full
