"""``phonekit diagnose one-way`` in fault scenes it must name: on loopback and in the tests' own namespaces.

Each scene is built here with its ground truth (which leg is broken and why);
the diagnosis runs as its own process, as helpdesk would run it, inside a
PulseAudio scene (and, for the network faults, inside the client namespace).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.diagnostics.sip.alg_box import AlgBox
from tests.testbed.coturn import Coturn
from tests.testbed.kamailio import Kamailio
from tests.testbed.kamailio_ns import MediaBed
from tests.testbed.netns import ROUTER_SERVER_IF, SERVER_IP
from tests.testbed.pulse import PulseScene

NS_RTP_PORTS = (4000, 4999)
TABLE = "phonekit_oneway_test"


def write_profile(folder: Path, user: str, password: str, registrar: str, domain: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / f"{user}.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    profile = folder / f"{user}.toml"
    profile.write_text(f'[account]\nuser = "{user}"\ndomain = "{domain}"\nregistrar = "{registrar}"\n'
                       f'password_file = "{secret.name}"\n[checks]\necho_extension = "9196"\n{extra}')  # fmt: skip
    return profile


def parse(stdout: str, stderr: str, code: int) -> dict[str, Any]:
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON report (exit {code}):\n{stdout}\n{stderr}") from None
    checks = {c["id"]: c for c in report["checks"]}
    verdict = checks["diagnose.one_way"]
    verdict["legs"] = {k: v["status"] for k, v in checks.items()}
    verdict["exit_code"] = code
    return verdict


def diagnose(scene: PulseScene, profile: Path, *extra: str) -> dict[str, Any]:
    import subprocess

    argv = [sys.executable, "-m", "provision.cli", "diagnose", "one-way", "--profile", str(profile), "--json", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, env=scene.env, timeout=60, check=False)
    return parse(done.stdout, done.stderr, done.returncode)


def top_cause(verdict: dict[str, Any]) -> tuple[str, str]:
    causes = verdict["measurements"]["causes"]
    return (causes[0]["id"], causes[0]["direction"]) if causes else ("healthy", "none")


# --------------------------------------------------------------------------- loopback scenes


@pytest.fixture
def loopback_profile(kamailio: Kamailio, tmp_path: Path) -> Path:
    return write_profile(tmp_path, "1001", kamailio.users["1001"], f"{kamailio.host}:{kamailio.udp_port}",
                         kamailio.domain)  # fmt: skip


@pytest.mark.timeout(60)
def test_healthy_call(headset_scene: PulseScene, loopback_profile: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    verdict = diagnose(headset_scene, loopback_profile, "--html", str(tmp_path / "ticket.html"))
    wall_s = time.perf_counter() - started
    assert verdict["status"] == "pass", verdict["summary"]
    assert verdict["legs"] == {"diagnose.mic": "pass", "diagnose.outbound": "pass", "diagnose.inbound": "pass",
                               "diagnose.one_way": "pass"}  # fmt: skip
    m = verdict["measurements"]
    assert m["rx_pps"] > 40 and m["tx_pps"] > 40 and m["echo_detected"]
    assert verdict["plots"]["rtp_over_time"]["series"][0]["name"] == "received"
    page = (tmp_path / "ticket.html").read_text()
    assert "diagnose.one_way" in page and "RTP during the test call" in page and "<svg" in page
    print(f"healthy verdict in {wall_s:.1f} s")


@pytest.mark.timeout(60)
def test_dead_microphone(dead_mic_scene: PulseScene, loopback_profile: Path) -> None:
    verdict = diagnose(dead_mic_scene, loopback_profile)
    assert top_cause(verdict) == ("mic-dead", "outbound"), verdict["summary"]
    assert verdict["summary"].startswith("outbound (they can't hear you): the microphone")
    # The network legs are fine: the probe signal went out and came back.
    assert verdict["legs"]["diagnose.outbound"] == "pass" and verdict["legs"]["diagnose.inbound"] == "pass"
    assert verdict["exit_code"] == 1


@pytest.mark.timeout(60)
def test_muted_microphone(headset_scene: PulseScene, loopback_profile: Path) -> None:
    assert headset_scene.mic is not None
    headset_scene.pactl("set-source-mute", headset_scene.mic, "1")
    try:
        verdict = diagnose(headset_scene, loopback_profile)
    finally:
        headset_scene.pactl("set-source-mute", headset_scene.mic, "0")
    assert top_cause(verdict) == ("mic-muted", "outbound"), verdict["summary"]
    assert "muted in the sound settings" in verdict["summary"]


@pytest.mark.timeout(60)
def test_sip_alg_rewriting_the_sdp(headset_scene: PulseScene, kamailio: Kamailio, tmp_path: Path) -> None:
    """A consumer-router ALG between us and Kamailio rewrites Contact and SDP (c= 127.0.0.2, m= port + 10000).

    The echo (baresip) latches onto where our RTP comes from, so audio survives: the verdict is a warning
    that names the ALG and the direction at risk, not a broken leg.
    """
    with AlgBox(server=(kamailio.host, kamailio.udp_port), rewrite=True) as box:
        host, port = box.listen
        profile = write_profile(tmp_path, "1003", kamailio.users["1003"], f"{host}:{port}", kamailio.domain)
        verdict = diagnose(headset_scene, profile)
        rewritten = box.rewritten
    assert rewritten >= 2  # at least the REGISTER and the INVITE went through the ALG
    assert top_cause(verdict) == ("sip-alg-latched", "inbound"), verdict["summary"]
    assert verdict["status"] == "warn" and verdict["summary"].startswith("inbound (you can't hear them) at risk: ")
    assert verdict["legs"]["diagnose.inbound"] == "pass" and verdict["measurements"]["sip_alg"] == "fail"
    assert "SIP ALG" in verdict["remedy"]


# --------------------------------------------------------------------------- scenes in namespaces


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaBed]:
    with MediaBed(tmp_path_factory.mktemp("oneway-bed"), NS_RTP_PORTS) as media_bed:
        yield media_bed


def diagnose_in_client(bed: MediaBed, scene: PulseScene, profile: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "provision.cli", "diagnose", "one-way", "--profile", str(profile), "--json"]
    done = bed.topology.run("client", argv, env=scene.env, timeout_s=60, check=False)
    return parse(done.stdout, done.stderr, done.returncode)


def diagnose_behind_rule(bed: MediaBed, scene: PulseScene, tmp_path: Path, hook: str, match: str
                         ) -> tuple[dict[str, Any], int]:  # fmt: skip
    """The diagnosis while the client's firewall drops what ``match`` matches at ``hook``; also how many it dropped."""
    rules = tmp_path / "rules.nft"
    rules.write_text(f"table inet {TABLE} {{\n  chain {hook} {{\n    type filter hook {hook} priority 0; "
                     f"policy accept;\n    {match} counter drop\n  }}\n}}\n")  # fmt: skip
    bed.topology.run("client", ["nft", "-f", str(rules)])
    try:
        verdict = diagnose_in_client(bed, scene, bed.profile)
        listed = bed.topology.run("client", ["nft", "list", "table", "inet", TABLE]).stdout
    finally:
        bed.topology.run("client", ["nft", "delete", "table", "inet", TABLE], check=False)
    return verdict, int(listed.split("counter packets ")[1].split()[0])


@pytest.mark.timeout(90)
def test_inbound_rtp_dropped_by_the_local_firewall(bed: MediaBed, headset_scene: PulseScene, tmp_path: Path) -> None:
    verdict, eaten = diagnose_behind_rule(bed, headset_scene, tmp_path, "input",
                                          f"udp dport {NS_RTP_PORTS[0]}-{NS_RTP_PORTS[1]}")  # fmt: skip
    assert top_cause(verdict) == ("firewall-inbound", "inbound"), verdict["summary"]
    assert verdict["summary"].startswith("inbound (you can't hear them): this machine's firewall drops incoming RTP")
    assert f"udp port {NS_RTP_PORTS[0]}-{NS_RTP_PORTS[1]} drop" in verdict["summary"]
    assert verdict["measurements"]["rx_packets"] == 0 and eaten > 50


@pytest.mark.timeout(90)
def test_outbound_rtp_dropped(bed: MediaBed, headset_scene: PulseScene, tmp_path: Path) -> None:
    verdict, eaten = diagnose_behind_rule(bed, headset_scene, tmp_path, "output",
                                          f"udp sport {NS_RTP_PORTS[0]}-{NS_RTP_PORTS[1]}")  # fmt: skip
    assert top_cause(verdict)[1] == "outbound", verdict["summary"]
    assert top_cause(verdict)[0] == "firewall-outbound"
    assert verdict["legs"]["diagnose.outbound"] == "fail"
    assert eaten > 50


@pytest.mark.timeout(120)
def test_nat_that_leaves_the_sdp_private(bed: MediaBed, headset_scene: PulseScene, tmp_path: Path) -> None:
    """The router masquerades and lets only replies in; Kamailio fixes SIP (rport) but nobody fixes the SDP, so
    the echo's RTP to the private address in it is a new flow from outside, which the router drops."""
    stun = Coturn(tmp_path / "coturn", host=SERVER_IP, port=3478, netns=bed.topology.netns("server"))
    stun.start()
    bed.topology.set_nat("masquerade")
    # A home router's filter: from the outside only replies to connections from the inside come in.
    (tmp_path / "filter.nft").write_text(
        f"table inet {TABLE} {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n"
        f'    iifname "{ROUTER_SERVER_IF}" ct state new counter drop\n  }}\n}}\n'
    )
    bed.topology.run("router", ["nft", "-f", str(tmp_path / "filter.nft")])
    try:
        assert bed.kamailio is not None
        profile = write_profile(tmp_path, "1002", bed.kamailio.server.users["1002"], f"{SERVER_IP}:5060", SERVER_IP,
                                f'[network]\nrtp_ports = [{NS_RTP_PORTS[0]}, {NS_RTP_PORTS[1]}]\n'
                                f'stun_server = "{SERVER_IP}:3478"\n')  # fmt: skip
        verdict = diagnose_in_client(bed, headset_scene, profile)
    finally:
        bed.topology.run("router", ["nft", "delete", "table", "inet", TABLE], check=False)
        bed.topology.set_nat(None)
        stun.stop()
    assert top_cause(verdict) == ("nat-private-sdp", "inbound"), verdict["summary"]
    m = verdict["measurements"]
    assert m["local_sdp"].startswith("10.200.1.2:") and m["mapped_address"].startswith("10.200.2.1:")
