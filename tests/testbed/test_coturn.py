"""The STUN server the NAT checks rely on answers like a STUN server must."""

from __future__ import annotations

import socket

import pytest

from tests.testbed.coturn import Coturn, stun_binding


@pytest.mark.timeout(10)
def test_binding_reports_our_own_address(coturn: Coturn) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        mapped = stun_binding(coturn.host, coturn.port, timeout_s=2.0, sock=sock)
        assert mapped == sock.getsockname()


@pytest.mark.timeout(10)
def test_server_runs_as_our_own_process(coturn: Coturn) -> None:
    assert coturn.process is not None and coturn.process.alive()
    assert (coturn.host, coturn.port) == ("127.0.0.1", 3478)
    assert coturn.uri == "stun:127.0.0.1:3478"
