"""The pjsua2 engine against the real test bed: Kamailio (digest auth, UDP/TCP/TLS) and baresip."""

from __future__ import annotations

import numpy as np
import pytest

from diagnostics.audio.synth import tone
from diagnostics.audio.tone import measure_tone
from diagnostics.secret import Secret
from phone.engine import Engine, EngineConfig, SipAccount, Transport
from tests.testbed.baresip import BaresipPeer, analyse_wav
from tests.testbed.kamailio import Kamailio
from tests.testbed.sipbed import PEER_TONE_HZ, PEER_USER

RATE = 16000


def account(kamailio: Kamailio, user: str, transport: Transport, password: str | None = None) -> SipAccount:
    port = kamailio.tls_port if transport is Transport.TLS else kamailio.udp_port
    return SipAccount(
        user=user,
        domain=kamailio.domain,
        registrar=f"{kamailio.host}:{port}",
        password=Secret(kamailio.users[user] if password is None else password),
        transport=transport,
    )


def engine(kamailio: Kamailio, transport: Transport) -> Engine:
    return Engine(EngineConfig(transports=(transport,), bound_address="127.0.0.1", tls_ca_file=kamailio.ca_path))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", [Transport.UDP, Transport.TCP, Transport.TLS])
def test_registers_with_digest_auth(kamailio: Kamailio, transport: Transport) -> None:
    with engine(kamailio, transport) as eng:
        _, outcome = eng.register(account(kamailio, "1001", transport))
        assert (outcome.code, outcome.ok) == (200, True), outcome.reason
        assert kamailio.registered("1001")
        assert any(f"transport={transport.value}" in c.lower() or transport is Transport.UDP
                   for c in kamailio.contacts("1001"))
    kamailio.unregister("1001")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("transport", [Transport.UDP, Transport.TLS])
def test_wrong_password_is_refused(kamailio: Kamailio, transport: Transport) -> None:
    with engine(kamailio, transport) as eng:
        _, outcome = eng.register(account(kamailio, "1003", transport, password="not-the-password"))
    assert outcome.code == 401
    assert not kamailio.registered("1003")


@pytest.mark.timeout(30)
def test_tls_refuses_a_server_it_cannot_verify(kamailio: Kamailio) -> None:
    config = EngineConfig(transports=(Transport.TLS,), bound_address="127.0.0.1", tls_ca_file=None)
    with Engine(config) as eng:
        _, outcome = eng.register(account(kamailio, "1004", Transport.TLS))
    assert not outcome.ok
    assert not kamailio.registered("1004")


@pytest.mark.timeout(60)
def test_call_through_kamailio_reaches_baresip_both_ways(kamailio: Kamailio, registered_peer: BaresipPeer) -> None:
    mark = registered_peer.mark()
    sent_hz, sent_dbfs = 440.0, -16.0
    with engine(kamailio, Transport.UDP) as eng:
        acc, reg = eng.register(account(kamailio, "1001", Transport.UDP))
        assert reg.ok, reg.reason
        outcome = eng.call(acc, f"sip:{PEER_USER}@{kamailio.domain}", tone(RATE, 4.0, sent_hz, sent_dbfs), seconds=3.0)
    assert outcome.answered, f"{outcome.code} {outcome.reason}"
    registered_peer.wait_event("CALL_CLOSED", 10.0, since=mark)
    # What baresip heard: our tone, at our level (G.711 keeps levels within a dB or two).
    heard = analyse_wav(registered_peer.last_recording().received)
    assert heard.frequency_hz == pytest.approx(sent_hz, abs=5.0)
    assert heard.rms_dbfs == pytest.approx(sent_dbfs, abs=2.0)
    # What we heard: baresip's tone.
    got = outcome.received[RATE // 2 :]  # skip the jitter buffer's start
    assert len(got) > RATE
    ours = measure_tone(got, outcome.sample_rate_hz)
    assert ours.frequency_hz == pytest.approx(PEER_TONE_HZ, abs=5.0)
    assert ours.tone_to_rest_db > 20.0


@pytest.mark.timeout(60)
def test_echo_extension_returns_our_audio(kamailio: Kamailio) -> None:
    with engine(kamailio, Transport.TCP) as eng:
        acc, reg = eng.register(account(kamailio, "1004", Transport.TCP))
        assert reg.ok, reg.reason
        outcome = eng.call(acc, f"sip:{kamailio.echo_extension}@{kamailio.domain}", tone(RATE, 3.0, 700.0, -20.0),
                           seconds=2.5)
    assert outcome.answered
    back = measure_tone(outcome.received[RATE // 2 : 2 * RATE], RATE)
    assert back.frequency_hz == pytest.approx(700.0, abs=5.0)
    assert back.level_dbfs == pytest.approx(-20.0, abs=2.0)
    assert np.max(np.abs(outcome.received)) > 0


def test_frame_bytes_reads_a_byte_vector_exactly_and_takes_the_fast_path() -> None:
    import pjsua2 as pj

    from phone import engine as eng

    data = np.random.default_rng(1).integers(0, 256, 640, dtype=np.uint8).tobytes()
    assert eng.frame_bytes(pj.ByteVector(data)) == data == bytes(pj.ByteVector(data))
    assert eng.frame_bytes(pj.ByteVector(b"")) == b""
    assert eng.frame_bytes is eng._fast_bytes  # this platform's std::vector keeps its data pointer first
