"""Fixtures that join test-bed parts: a baresip peer registered to the test bed's Kamailio."""

from __future__ import annotations

import pytest

from tests.testbed.baresip import BaresipPeer, PeerFactory, Registrar
from tests.testbed.kamailio import Kamailio

PEER_USER = "1002"
PEER_TONE_HZ = 1000


@pytest.fixture(scope="session")
def registered_peer(kamailio: Kamailio, baresip_session_factory: PeerFactory) -> BaresipPeer:
    """baresip registered as 1002 over UDP, auto-answering, sending a 1 kHz tone, recording what it hears."""
    registrar = Registrar(
        host=kamailio.host,
        port=kamailio.udp_port,
        user=PEER_USER,
        password=kamailio.users[PEER_USER],
        transport="udp",
        domain=kamailio.domain,
    )
    peer = baresip_session_factory(name="registered", user=PEER_USER, tone_hz=PEER_TONE_HZ, registrar=registrar)
    peer.wait_registered(10.0)
    if not kamailio.registered(PEER_USER):
        raise AssertionError(f"baresip says it registered as {PEER_USER} but Kamailio has no contact for it")
    return peer
