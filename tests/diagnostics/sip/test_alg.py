"""``network.sip_alg``: the reflector, a rewriting middlebox (an ALG), a plain NAT, and a clean path."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from diagnostics.profile import load_profile
from diagnostics.report import Status
from diagnostics.sip.alg import (
    AlgEvidence,
    Comparison,
    NatEvidence,
    assess_alg,
    check_sip_alg,
    probe_reflector,
)
from diagnostics.sip.message import Address, Request, parse
from diagnostics.sip.options import Target
from diagnostics.sip.register import check_register
from tests.diagnostics.sip.alg_box import AlgBox, rewrite_like_alg
from tests.diagnostics.sip.conftest import ProfileFactory, context
from tests.testbed.kamailio import Kamailio

pytestmark = [pytest.mark.timeout(30), pytest.mark.testbed]

USER = "1002"


@pytest.fixture
def box(kamailio: Kamailio, request: pytest.FixtureRequest) -> Iterator[AlgBox]:
    with AlgBox((kamailio.host, kamailio.udp_port), rewrite=request.param) as middlebox:
        yield middlebox
    kamailio.unregister(USER)


def test_the_reflector_returns_the_request_exactly(kamailio: Kamailio, write_profile: ProfileFactory) -> None:
    profile = load_profile(write_profile(user=USER, password="unused", registrar=None))
    target = Target(kamailio.host, kamailio.udp_port, profile.transport, kamailio.host)
    probe = probe_reflector(target, profile)
    assert probe.used and probe.sent is not None and probe.response is not None
    assert bytes(probe.sent) == probe.response.body  # byte for byte, SDP included
    assert probe.sent.body.startswith(b"v=0\r\n") and probe.response.reason == "Reflected"


def test_clean_path_is_not_flagged(kamailio: Kamailio, write_profile: ProfileFactory) -> None:
    profile = write_profile(user=USER, password=kamailio.users[USER], registrar=f"127.0.0.1:{kamailio.udp_port}")
    ctx = context(profile)
    assert check_register(ctx).status is Status.PASS
    result = check_sip_alg(ctx)
    assert result.status is Status.PASS, result
    assert result.summary == "no rewriting seen: Via, Contact, SDP c=, SDP o=, SDP m= arrived as sent"
    m = result.measurements
    assert m["rewritten_fields"] == [] and m["reflector"] == "used" and m["registration"] == "registered"
    assert m["nat_detected"] is False
    assert {c["source"] for c in m["comparisons"]} == {"reflector", "registrar"}


@pytest.mark.parametrize("box", [False], indirect=True)
def test_nat_without_alg_passes_with_a_note(box: AlgBox, kamailio: Kamailio, write_profile: ProfileFactory) -> None:
    host, port = box.listen
    profile = write_profile(user=USER, password=kamailio.users[USER], registrar=f"{host}:{port}")
    result = check_sip_alg(context(profile))
    assert result.status is Status.PASS, result
    m = result.measurements
    assert m["nat_detected"] is True and m["via_received"] == "127.0.0.2" and m["rewritten_fields"] == []
    public = m["public_address"]
    assert public.startswith("127.0.0.2:")
    assert result.summary == (f"no rewriting seen; NAT without ALG: the server sees {m['via_sent_by']} as {public}, "
                              "and Via, Contact, SDP c=, SDP o=, SDP m= arrived intact (normal NAT)")  # fmt: skip
    assert box.forwarded >= 4 and box.rewritten == 0
    assert not kamailio.registered(USER)


@pytest.mark.parametrize("box", [True], indirect=True)
def test_rewriting_alg_is_detected_and_its_fields_named(
    box: AlgBox, kamailio: Kamailio, write_profile: ProfileFactory
) -> None:
    host, port = box.listen
    profile = write_profile(user=USER, password=kamailio.users[USER], registrar=f"{host}:{port}")
    result = check_sip_alg(context(profile))
    assert result.status is Status.FAIL, result
    m = result.measurements
    assert m["rewritten_fields"] == ["contact", "sdp_connection", "sdp_media"]
    assert result.summary.startswith("something on the path rewrites SIP (a SIP ALG?): Contact sip:1002@127.0.0.1:")
    assert "; SDP c= IN IP4 127.0.0.1 -> IN IP4 127.0.0.2 (reflector); SDP m= audio " in result.summary
    assert re.search(r"; Contact 127\.0\.0\.1:\d+ -> 127\.0\.0\.2:\d+ \(registrar\)$", result.summary)
    assert m["sdp_connection_sent"] == "IN IP4 127.0.0.1" and m["sdp_connection_seen"] == "IN IP4 127.0.0.2"
    sent_port, seen_port = (int(m[f"sdp_media_{k}"].split()[1]) for k in ("sent", "seen"))
    assert seen_port == sent_port + box.media_port_shift
    assert "127.0.0.2:" in m["contact_seen"] and "127.0.0.1:" in m["contact_sent"]
    assert result.remedy is not None and "turn off the SIP ALG" in result.remedy
    assert box.rewritten >= 3  # REGISTER twice (challenge, answer), OPTIONS; removal too
    assert not kamailio.registered(USER)  # the removal went through the ALG as well


def test_the_box_rewrites_like_an_alg() -> None:
    request = (
        b"OPTIONS sip:reflect@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
        b"Contact: <sip:1001@127.0.0.1:5062;transport=udp>\r\nContent-Type: application/sdp\r\n"
        b"Content-Length: 40\r\n\r\nv=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n"
    )
    rewritten = parse(rewrite_like_alg(request, "198.51.100.7", 40000, 10000))
    assert isinstance(rewritten, Request)
    assert rewritten.headers.get("Contact") == "<sip:1001@198.51.100.7:40000;transport=udp>"
    assert rewritten.body == b"v=0\r\nc=IN IP4 198.51.100.7\r\nm=audio 14000 RTP/AVP 0\r\n"
    assert rewritten.headers.get("Content-Length") == str(len(rewritten.body))
    assert rewritten.top_via.sent_by == "127.0.0.1:5062"


def test_verdicts_for_weak_or_missing_evidence() -> None:
    binding_only = AlgEvidence(
        (Comparison("registrar", "via_sent_by", "10.0.0.2:5062", "10.0.0.2:5062"),
         Comparison("registrar", "contact", "10.0.0.2:5062", "203.0.113.9:5062")),
        NatEvidence(Address("10.0.0.2", 5062), "203.0.113.9", 5062), "not offered (404 Not Found)", "registered",
    )  # fmt: skip
    result = assess_alg(binding_only)
    assert result.status is Status.WARN and result.measurements["rewritten_fields"] == ["contact"]
    assert "a SIP ALG on the path, or the server's own NAT handling" in result.summary
    nothing = AlgEvidence((), None, "not tried: the server was not reached (unreachable)", "unreachable")
    skipped = assess_alg(nothing)
    assert skipped.status is Status.SKIP and skipped.remedy is not None and "sip.register" in skipped.remedy
