"""The phone against the real test bed: Kamailio, baresip peers, both call directions, every call feature."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diagnostics.audio.synth import tone
from diagnostics.audio.tone import measure_tone
from diagnostics.secret import Secret
from phone import history
from phone.engine import EngineConfig, SipAccount, Transport
from phone.phone import Phone, PhoneError
from provision.dialplan import Dial, Refused, load_dialplan
from tests.testbed.baresip import BaresipPeer, PeerFactory, Registrar, analyse_wav
from tests.testbed.kamailio import Kamailio
from tests.testbed.sipbed import PEER_TONE_HZ, PEER_USER

RATE = 16000
SENT_HZ, SENT_DBFS = 440.0, -16.0
BARESIP_TONE_DBFS = -9.03  # ausine: a sine at half of full scale


def make_phone(
    kamailio: Kamailio,
    user: str,
    tmp_path: Path,
    *,
    transport: Transport = Transport.UDP,
    seconds: float = 6.0,
    srtp: str = "disabled",
    dialplan: Any = None,
) -> Phone:
    port = kamailio.tls_port if transport is Transport.TLS else kamailio.udp_port
    account = SipAccount(user=user, domain=kamailio.domain, registrar=f"{kamailio.host}:{port}",
                         password=Secret(kamailio.users[user]), transport=transport)  # fmt: skip
    config = EngineConfig(transports=(transport,), bound_address="127.0.0.1", tls_ca_file=kamailio.ca_path,
                          srtp=srtp, vad=False)  # fmt: skip
    return Phone(config, account=account, domain=kamailio.domain, dialplan=dialplan,
                 history_path=tmp_path / "history.jsonl", play=tone(RATE, seconds + 1, SENT_HZ, SENT_DBFS),
                 record_s=seconds)  # fmt: skip


def talk(phone: Phone, seconds: float) -> None:
    assert phone.active is not None
    call = phone.active.call
    assert phone.wait(lambda: call.confirmed or call.disconnected, 10.0)
    assert call.confirmed, f"{call.last_code} {call.last_reason}"
    phone.wait(lambda: call.disconnected, seconds)


def assert_heard_peer_tone(phone: Phone) -> None:
    got = phone.recorded()
    assert got is not None and len(got) > RATE
    ours = measure_tone(got[RATE // 2 :], RATE)
    assert ours.frequency_hz == pytest.approx(PEER_TONE_HZ, abs=5.0)
    assert ours.level_dbfs == pytest.approx(BARESIP_TONE_DBFS, abs=1.5)


def assert_peer_heard_us(peer: BaresipPeer) -> None:
    heard = analyse_wav(peer.last_recording().received)
    assert heard.frequency_hz == pytest.approx(SENT_HZ, abs=5.0)
    assert heard.rms_dbfs == pytest.approx(SENT_DBFS, abs=1.5)


@pytest.mark.timeout(60)
def test_outgoing_call_carries_audio_both_ways_and_is_recorded(
    kamailio: Kamailio, registered_peer: BaresipPeer, tmp_path: Path
) -> None:
    mark = registered_peer.mark()
    with make_phone(kamailio, "1001", tmp_path) as phone:
        assert phone.registration is not None and phone.registration.ok
        decision = phone.dial(PEER_USER)
        assert isinstance(decision, Dial) and decision.uri == f"sip:{PEER_USER}@{kamailio.domain}"
        talk(phone, 3.0)
        quality = phone.quality()
        phone.hangup()
        assert phone.wait(lambda: phone.active is None, 5.0)
        assert_heard_peer_tone(phone)
    registered_peer.wait_event("CALL_CLOSED", 10.0, since=mark)
    assert_peer_heard_us(registered_peer)
    assert quality is not None and quality.rx_packets > 100 and quality.mos is not None and quality.mos > 4.0
    entries = history.read(tmp_path / "history.jsonl")
    assert [(e.direction, e.number, e.outcome) for e in entries] == [("outgoing", PEER_USER, "answered")]
    assert entries[0].duration_s == pytest.approx(3.0, abs=0.5)
    assert stat.S_IMODE(os.stat(tmp_path / "history.jsonl").st_mode) == 0o600


@pytest.mark.timeout(60)
def test_incoming_call_is_answered_with_audio_both_ways(
    kamailio: Kamailio, registered_peer: BaresipPeer, tmp_path: Path
) -> None:
    with make_phone(kamailio, "1001", tmp_path) as phone:
        mark = registered_peer.dial(f"sip:1001@{kamailio.domain}")
        assert phone.wait(lambda: phone.ringing is not None, 10.0), "no incoming call"
        assert PEER_USER in phone.ringing.remote_uri  # type: ignore[union-attr]
        phone.answer()
        talk(phone, 3.0)
        registered_peer.hangup()
        assert phone.wait(lambda: phone.active is None, 5.0), "the far end's BYE did not end the call"
        assert_heard_peer_tone(phone)
    registered_peer.wait_event("CALL_CLOSED", 10.0, since=mark)
    assert_peer_heard_us(registered_peer)
    (entry,) = history.read(tmp_path / "history.jsonl")
    assert (entry.direction, entry.outcome) == ("incoming", "answered")


@pytest.mark.timeout(60)
def test_rejected_call_gets_busy(kamailio: Kamailio, registered_peer: BaresipPeer, tmp_path: Path) -> None:
    with make_phone(kamailio, "1001", tmp_path) as phone:
        mark = registered_peer.dial(f"sip:1001@{kamailio.domain}")
        assert phone.wait(lambda: phone.ringing is not None, 10.0)
        phone.reject()
        closed = registered_peer.wait_event("CALL_CLOSED", 10.0, since=mark)
    assert "486" in closed.param or "Busy" in closed.param
    (entry,) = history.read(tmp_path / "history.jsonl")
    assert (entry.direction, entry.outcome, entry.code) == ("incoming", "rejected", 486)


@pytest.mark.timeout(60)
def test_dtmf_digits_reach_baresip(kamailio: Kamailio, registered_peer: BaresipPeer, tmp_path: Path) -> None:
    mark = registered_peer.mark()
    with make_phone(kamailio, "1001", tmp_path) as phone:
        phone.dial(PEER_USER)
        talk(phone, 0.5)
        for digit in "159#*0":
            phone.dtmf(digit)
            phone.wait(lambda: False, 0.3)
        phone.wait(lambda: False, 0.5)
        phone.hangup()
    assert registered_peer.dtmf_digits(since=mark) == "159#*0"


@pytest.mark.timeout(60)
def test_hold_stops_the_far_ends_audio_and_resume_restores_it(
    kamailio: Kamailio, registered_peer: BaresipPeer, tmp_path: Path
) -> None:
    since = kamailio.log_position()
    with make_phone(kamailio, "1001", tmp_path, seconds=10.0) as phone:
        phone.dial(PEER_USER)
        talk(phone, 1.0)
        before = phone.stats()
        phone.hold()
        phone.wait(lambda: False, 0.5)  # re-INVITE round trip and packets in flight
        held_start = phone.stats()
        phone.wait(lambda: False, 1.5)
        held_end = phone.stats()
        assert phone.active is not None and phone.active.call.state_name == "on hold"
        phone.resume()
        phone.wait(lambda: False, 1.5)
        after = phone.stats()
        phone.hangup()
    assert before is not None and held_start is not None and held_end is not None and after is not None
    assert before.rx_packets > 40
    assert held_end.rx_packets - held_start.rx_packets <= 2, "baresip kept sending while on hold"
    assert after.rx_packets - held_end.rx_packets > 40, "audio did not come back after resume"
    reinvites = [r for r in kamailio.requests(since, "INVITE")]
    assert len(reinvites) >= 3  # the call, hold, resume


@pytest.mark.timeout(60)
def test_barred_number_is_refused_and_nothing_reaches_kamailio(kamailio: Kamailio, tmp_path: Path) -> None:
    plan = load_dialplan("de-default")
    with make_phone(kamailio, "1001", tmp_path, dialplan=(plan, ())) as phone:
        since = kamailio.log_position()
        decision = phone.dial("0900 1234567")
        phone.wait(lambda: False, 1.0)
        assert phone.active is None
    assert isinstance(decision, Refused)
    assert decision.rule != "invalid" and "barred" in decision.reason
    assert kamailio.requests(since, "INVITE") == []
    (entry,) = history.read(tmp_path / "history.jsonl")
    assert (entry.outcome, entry.rule) == ("refused", decision.rule)


@pytest.mark.timeout(60)
def test_unregister_removes_the_binding(kamailio: Kamailio, tmp_path: Path) -> None:
    with make_phone(kamailio, "1003", tmp_path) as phone:
        assert kamailio.registered("1003") and phone.registered
        outcome = phone.unregister()
        assert outcome.ok and not phone.registered
        assert not kamailio.registered("1003")
        assert phone.register().ok and kamailio.registered("1003")
        with pytest.raises(PhoneError, match="no call is up"):
            phone.hangup()
    kamailio.unregister("1003")


@pytest.fixture
def srtp_peer(kamailio: Kamailio, baresip_factory: PeerFactory) -> Iterator[BaresipPeer]:
    """baresip registered as 1004 that insists on SRTP (SDES) for every call; 1004 is free again afterwards."""
    registrar = Registrar(host=kamailio.host, port=kamailio.udp_port, user="1004", password=kamailio.users["1004"],
                          transport="udp", domain=kamailio.domain)  # fmt: skip
    peer = baresip_factory(name="srtp", user="1004", tone_hz=PEER_TONE_HZ, registrar=registrar,
                           mediaenc="srtp-mand")  # fmt: skip
    peer.wait_registered(10.0)
    yield peer
    peer.stop()
    kamailio.unregister("1004")


@pytest.mark.timeout(60)
def test_tls_call_with_mandatory_srtp(kamailio: Kamailio, srtp_peer: BaresipPeer, tmp_path: Path) -> None:
    mark = srtp_peer.mark()
    with make_phone(kamailio, "1001", tmp_path, transport=Transport.TLS, srtp="mandatory") as phone:
        assert phone.registration is not None and phone.registration.ok, phone.registration
        phone.dial("1004")
        talk(phone, 2.5)
        assert phone.active is not None and phone.active.call.srtp_active()
        phone.hangup()
        assert phone.wait(lambda: phone.active is None, 5.0)
        assert_heard_peer_tone(phone)
    srtp_peer.wait_event("CALL_CLOSED", 10.0, since=mark)
    assert_peer_heard_us(srtp_peer)


@pytest.mark.timeout(60)
def test_a_phone_without_srtp_cannot_reach_a_peer_that_requires_it(
    kamailio: Kamailio, srtp_peer: BaresipPeer, tmp_path: Path
) -> None:
    with make_phone(kamailio, "1001", tmp_path, srtp="disabled") as phone:
        phone.dial("1004")
        assert phone.wait(lambda: phone.active is None, 10.0)
    (entry,) = history.read(tmp_path / "history.jsonl")
    assert entry.outcome == "failed" and entry.code >= 400


@pytest.mark.timeout(60)
def test_blind_transfer_sends_the_far_end_to_another_number(
    kamailio: Kamailio, registered_peer: BaresipPeer, baresip_factory: PeerFactory, tmp_path: Path
) -> None:
    """1001 calls 1002 (baresip) and transfers it to 1003 (another baresip), which then rings."""
    registrar = Registrar(host=kamailio.host, port=kamailio.udp_port, user="1003", password=kamailio.users["1003"],
                          transport="udp", domain=kamailio.domain)  # fmt: skip
    target = baresip_factory(name="target", user="1003", tone_hz=700, registrar=registrar)
    target.wait_registered(10.0)
    target_mark = target.mark()
    with make_phone(kamailio, "1001", tmp_path) as phone:
        phone.dial(PEER_USER)
        talk(phone, 0.5)
        call = phone.active.call  # type: ignore[union-attr]
        decision = phone.transfer("1003")
        assert isinstance(decision, Dial)
        established = target.wait_event("CALL_ESTABLISHED", 10.0, since=target_mark)
        assert phone.wait(lambda: any(e.kind == "transfer" and e.code == 200 for e in call.events), 5.0)
        phone.wait(lambda: phone.active is None, 5.0)
    assert established.direction == "incoming" and PEER_USER in (established.peer_uri or "")
    registered_peer.reset()
    target.hangup()
