"""Digest authentication against the RFCs' own example vectors, and challenge parsing."""

from __future__ import annotations

import hashlib

import pytest

from diagnostics.secret import Secret
from diagnostics.sip.digest import Challenge, DigestError, authorization, choose, parse_challenges

# RFC 7616 §3.9.1: the same challenge with SHA-256 and with MD5, in one header.
RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS", '
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
MUFASA = Secret("Circle of Life")


def field(header: str, name: str) -> str:
    for part in header.removeprefix("Digest ").split(", "):
        key, _, value = part.partition("=")
        if key == name:
            return value.strip('"')
    raise AssertionError(f"{name} not in {header}")


def test_rfc7616_sha256_and_md5_vectors() -> None:
    sha256, md5 = parse_challenges(RFC7616_CHALLENGE)
    assert (sha256.algorithm, md5.algorithm) == ("SHA-256", "MD5")
    assert sha256.qop == ("auth", "auth-int") and sha256.opaque == "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
    answer = authorization(sha256, "GET", "/dir/index.html", "Mufasa", MUFASA, cnonce=RFC7616_CNONCE, nc=1)
    assert field(answer, "response") == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    assert (field(answer, "qop"), field(answer, "nc"), field(answer, "algorithm")) == ("auth", "00000001", "SHA-256")
    assert field(answer, "opaque") == sha256.opaque
    answer = authorization(md5, "GET", "/dir/index.html", "Mufasa", MUFASA, cnonce=RFC7616_CNONCE, nc=1)
    assert field(answer, "response") == "8ca523f5e9506fed4657c9700eebdbec"


def test_rfc2617_vector() -> None:
    (challenge,) = parse_challenges(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    answer = authorization(challenge, "GET", "/dir/index.html", "Mufasa", Secret("Circle Of Life"),
                           cnonce="0a4f113b", nc=1)  # fmt: skip
    assert field(answer, "response") == "6629fae49393a05397450978507c4ef1"
    assert answer.startswith('Digest username="Mufasa", realm="testrealm@host.com"')


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def test_md5_sess_and_no_qop_follow_rfc2617_formulas() -> None:
    sess = Challenge(realm="r", nonce="n", algorithm="MD5-sess", qop=("auth",))
    answer = authorization(sess, "REGISTER", "sip:example.com", "u", Secret("p"), cnonce="c", nc=2)
    ha1 = md5(f"{md5('u:r:p')}:n:c")
    assert field(answer, "response") == md5(f"{ha1}:n:00000002:c:auth:{md5('REGISTER:sip:example.com')}")
    plain = Challenge(realm="r", nonce="n")  # RFC 2069 form: no qop, so no nc/cnonce either
    answer = authorization(plain, "REGISTER", "sip:example.com", "u", Secret("p"))
    assert field(answer, "response") == md5(f"{md5('u:r:p')}:n:{md5('REGISTER:sip:example.com')}")
    assert "nc=" not in answer and "cnonce=" not in answer and "qop=" not in answer


def test_choose_prefers_sha256_whatever_the_order() -> None:
    md5_first = list(reversed(parse_challenges(RFC7616_CHALLENGE)))
    assert choose(md5_first).algorithm == "SHA-256"
    only_md5 = parse_challenges('Digest realm="a", nonce="b", algorithm=md5, stale=TRUE', proxy=True)
    chosen = choose(only_md5)
    assert chosen.algorithm == "md5" and chosen.stale and chosen.header_name == "Proxy-Authorization"


def test_other_schemes_are_skipped_and_unsupported_algorithms_named() -> None:
    assert parse_challenges('Basic realm="x"') == ()
    offered = parse_challenges('Digest realm="a", nonce="b", algorithm=SHA-512-256')
    with pytest.raises(DigestError, match=r"offered: SHA-512-256; supported: SHA-256, SHA-256-sess, MD5, MD5-sess"):
        choose(offered)
    with pytest.raises(DigestError, match="Digest challenge without 'nonce'"):
        parse_challenges('Digest realm="a"')
    with pytest.raises(DigestError, match="neither 'auth' nor 'auth-int'"):
        authorization(Challenge("r", "n", qop=("auth-conf",)), "REGISTER", "sip:x", "u", Secret("p"))


def test_quoted_values_keep_commas_and_escapes() -> None:
    (challenge,) = parse_challenges(r'Digest realm="a, \"b\"", nonce="x,y", qop=auth')
    assert (challenge.realm, challenge.nonce, challenge.qop) == ('a, "b"', "x,y", ("auth",))
    answer = authorization(challenge, "REGISTER", "sip:x", "u", Secret("p"))
    assert r'realm="a, \"b\""' in answer


def test_the_password_never_appears_in_the_answer() -> None:
    challenge = Challenge(realm="r", nonce="n", qop=("auth",), userhash=True)
    answer = authorization(challenge, "REGISTER", "sip:x", "alice", Secret("hunter2-secret"))
    assert "hunter2-secret" not in answer and "alice" not in answer  # userhash hides the user too
    assert field(answer, "username") == hashlib.md5(b"alice:r").hexdigest()
