"""SIP messages: what we build parses back to the same bytes; what servers send parses; bad bytes say why."""

from __future__ import annotations

import pytest

from diagnostics.sip import message
from diagnostics.sip.message import (
    Address,
    NameAddr,
    ParseError,
    Request,
    Response,
    StreamReader,
    build_options,
    build_register,
    parse,
    parse_name_addr,
    parse_uri,
    parse_via,
)

LOCAL = Address("192.0.2.10", 5062)

# A reply as Kamailio 5.6 sends it (captured from the test bed), with a multi-Contact 200.
KAMAILIO_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:41256;branch=z9hG4bK5ee7db2a5f678b1f;rport=41256;received=127.0.0.1\r\n"
    b"From: <sip:1001@127.0.0.1>;tag=ead8a2042d77\r\n"
    b"To: <sip:1001@127.0.0.1>;tag=22ce4758c1ac87ae5aa7a31bed6242f6.32b3e79d\r\n"
    b"Call-ID: 96fe19a74b301a23b25eacca@127.0.0.1\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b'Contact: <sip:1001@127.0.0.1:53062>;expires=58;received="sip:127.0.0.1:50272", '
    b"<sip:1001@127.0.0.1:41256;transport=udp;pkid=7bcd>;expires=60\r\n"
    b"Server: kamailio (5.6.3 (x86_64/linux))\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def options() -> Request:
    return build_options("sip:example.com;transport=udp", transport="udp", local=LOCAL,
                         from_uri="sip:1001@example.com", call_id="abc@192.0.2.10", tag="t1")  # fmt: skip


def test_options_has_every_mandatory_header_and_round_trips() -> None:
    request = options()
    data = bytes(request)
    assert bytes(parse(data)) == data
    assert parse(data) == request
    text = data.decode()
    assert text.startswith("OPTIONS sip:example.com;transport=udp SIP/2.0\r\n")
    for name in ("Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq", "User-Agent", "Content-Length"):
        assert f"\r\n{name}: " in text, name
    via = request.top_via
    assert via.transport == "UDP" and via.sent_by == "192.0.2.10:5062"
    assert via.branch is not None and via.branch.startswith("z9hG4bK")
    assert ("rport", None) in via.params
    assert request.from_.tag == "t1" and request.cseq == message.CSeq(1, "OPTIONS")
    assert request.headers.get("User-Agent") == message.user_agent()
    assert message.user_agent().startswith("phonekit/")
    assert text.endswith("Content-Length: 0\r\n\r\n")


def test_register_with_body_and_authorization_round_trips() -> None:
    request = build_register(
        "sip:example.com", "sip:1001@example.com", transport="tcp", local=LOCAL,
        contact=NameAddr("sip:1001@192.0.2.10:5062;transport=tcp"), expires=60, call_id="c1", tag="t",
        cseq=7, display_name="Alice", authorization=[("Authorization", 'Digest username="1001", nc=00000001')],
    )  # fmt: skip
    data = bytes(request)
    assert bytes(parse(data)) == data
    assert request.headers.get("Expires") == "60"
    assert request.headers.get("authorization") == 'Digest username="1001", nc=00000001'
    assert request.from_.display_name == '"Alice"'
    assert request.to.uri == "sip:1001@example.com" and request.to.tag is None
    assert request.contacts[0].sip_uri.params == (("transport", "tcp"),)

    with_body = build_options("sip:x@example.com", transport="udp", local=LOCAL, from_uri="sip:a@example.com",
                              body=b"v=0\r\n", content_type="application/sdp")  # fmt: skip
    data = bytes(with_body)
    assert data.endswith(b"Content-Length: 5\r\n\r\nv=0\r\n")
    assert bytes(parse(data)) == data and parse(data).body == b"v=0\r\n"


def test_builders_refuse_what_they_cannot_send() -> None:
    with pytest.raises(ValueError, match="needs a Content-Type"):
        build_options("sip:x", transport="udp", local=LOCAL, from_uri="sip:a@b", body=b"v=0")
    with pytest.raises(ValueError, match=r"branch must start with 'z9hG4bK' .*\(got 'abc'\)"):
        message.build_request("OPTIONS", "sip:x", transport="udp", local=LOCAL, from_uri="sip:a@b",
                              to_uri="sip:x", call_id="c", cseq=1, tag="t", branch="abc")  # fmt: skip
    with pytest.raises(ValueError, match="Expires must be >= 0"):
        build_register("sip:x", "sip:a@x", transport="udp", local=LOCAL, contact=NameAddr("sip:a@h"), expires=-1,
                       call_id="c", tag="t", cseq=1)  # fmt: skip


def test_kamailio_reply_parses_and_round_trips() -> None:
    response = parse(KAMAILIO_200)
    assert isinstance(response, Response)
    assert (response.status, response.reason, response.is_final) == (200, "OK", True)
    assert bytes(response) == KAMAILIO_200
    via = response.top_via
    assert (via.received, via.rport, via.branch) == ("127.0.0.1", 41256, "z9hG4bK5ee7db2a5f678b1f")
    contacts = response.contacts
    assert [c.uri for c in contacts] == ["sip:1001@127.0.0.1:53062", "sip:1001@127.0.0.1:41256;transport=udp;pkid=7bcd"]
    assert message.param(contacts[0].params, "received") == '"sip:127.0.0.1:50272"'
    assert response.cseq.method == "REGISTER"


def test_compact_forms_and_case_are_the_same_header() -> None:
    data = (
        b"SIP/2.0 180 Ringing\r\nv: SIP/2.0/TCP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com:5070\r\n"
        b"f: <sip:a@example.com>;tag=1\r\nt: <sip:b@example.com>\r\ni: call-1\r\nCSEQ: 3 INVITE\r\n"
        b'm: "Doe, John" <sip:b@192.0.2.1>\r\nl: 0\r\n\r\n'
    )
    response = parse(data)
    assert bytes(response) == data
    assert response.headers.get("Via") == response.headers.get("v") == response.headers.get("VIA")
    assert response.call_id == "call-1" and response.cseq.number == 3
    assert [v.sent_by for v in response.vias] == ["a.example.com", "b.example.com:5070"]
    assert response.contacts[0].display_name == '"Doe, John"'
    assert "content-length" in response.headers and "Content-Type" not in response.headers
    assert not response.is_final


def test_folded_headers_are_unfolded() -> None:
    data = b"OPTIONS sip:x SIP/2.0\r\nSubject: one\r\n  two\r\nContent-Length: 0\r\n\r\n"
    assert parse(data).headers.get("s") == "one two"


def test_uri_name_addr_and_via() -> None:
    uri = parse_uri("sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?subject=x")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sips", "alice", "2001:db8::1", 5061)
    assert uri.params == (("transport", "tcp"), ("lr", None)) and uri.headers == "subject=x"
    assert str(uri) == "sips:alice@[2001:db8::1]:5061;transport=tcp;lr?subject=x"
    bare = parse_name_addr("sip:bob@example.com;tag=9")
    assert (bare.uri, bare.tag) == ("sip:bob@example.com", "9")
    via = parse_via("SIP/2.0/udp [::1]:5060;branch=z9hG4bKx;received=192.0.2.1;rport=1024")
    assert (via.transport, via.host, via.port, via.received, via.rport) == ("UDP", "::1", 5060, "192.0.2.1", 1024)
    assert str(via) == "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKx;received=192.0.2.1;rport=1024"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "empty"),
        (b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n", "no empty line after the headers"),
        (b"HELLO\r\n\r\n", "neither a request nor a status line (got 'HELLO')"),
        (b"SIP/2.0 200 OK\r\nno colon here\r\n\r\n", "line 2: expected 'Name: value' (got 'no colon here')"),
        (b"SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nabc", "Content-Length 10 but only 3 bytes of body"),
        (b"SIP/2.0 200 OK\r\nContent-Length: ten\r\n\r\n", "Content-Length: expected a number of bytes (got 'ten')"),
        (b"SIP/2.0 200 OK\r\nVia: \xff\r\n\r\n", "headers are not UTF-8 at byte 21"),
    ],
)
def test_parse_errors_name_the_problem(data: bytes, error: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(data)
    assert error in str(info.value)


def test_missing_headers_and_bad_values_name_them() -> None:
    response = parse(b"SIP/2.0 200 OK\r\nCSeq: x\r\nContent-Length: 0\r\n\r\n")
    with pytest.raises(ParseError, match="header 'Via' is missing"):
        _ = response.top_via
    with pytest.raises(ParseError, match="header 'Call-ID' is missing"):
        _ = response.call_id
    with pytest.raises(ParseError, match=r"CSeq: expected 'number METHOD' \(got 'x'\)"):
        _ = response.cseq
    with pytest.raises(ParseError, match="expected 'sip:' or 'sips:'"):
        parse_uri("tel:+4930123")


def test_stream_reader_cuts_messages_by_content_length() -> None:
    first, second = bytes(options()), KAMAILIO_200
    stream = b"\r\n\r\n" + first + second  # a CRLF keepalive first (RFC 5626 §3.5.1)
    reader = StreamReader()
    got = []
    for at in range(0, len(stream), 37):  # arrives in odd pieces
        got += reader.feed(stream[at : at + 37])
    assert [raw for raw, _ in got] == [first, second]
    assert isinstance(got[1][1], Response) and got[1][1].status == 200
    with pytest.raises(ParseError, match="without Content-Length"):
        StreamReader().feed(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n")


def test_display_names_are_quoted_strings() -> None:
    from diagnostics.sip.message import parse_name_addr, quoted_string

    assert quoted_string('Alice "Al" \\ Example') == '"Alice \\"Al\\" \\\\ Example"'
    with pytest.raises(ValueError, match="cannot hold a line break"):
        quoted_string("evil\r\nVia: x")
    name = quoted_string('Alice "Al"')
    header = f"{name} <sip:1001@example.com>;tag=1"
    parsed = parse_name_addr(header)
    assert (parsed.display_name, parsed.uri) == (name, "sip:1001@example.com")
