"""Digest access authentication for SIP (RFC 3261 §22.4), as RFC 2617 and RFC 7616 define it; sans-I/O.

A server challenges with ``WWW-Authenticate`` (registrar, 401) or ``Proxy-Authenticate``
(proxy, 407); one header may carry several challenges, and a server may offer the same
realm with several algorithms (RFC 8760 §2.4), best first or not. :func:`parse_challenges`
reads them all, :func:`choose` takes the strongest one we support (SHA-256 before MD5),
and :func:`authorization` answers it (RFC 7616 §3.4.1)::

    A1       = username ":" realm ":" password                      (algorithm X)
             = H(username ":" realm ":" password) ":" nonce ":" cnonce   (X-sess)
    A2       = method ":" uri                                         (qop=auth or none)
             = method ":" uri ":" H(body)                             (qop=auth-int)
    response = KD(H(A1), nonce ":" nc ":" cnonce ":" qop ":" H(A2))   (qop present)
             = H(H(A1) ":" nonce ":" H(A2))                           (RFC 2069, no qop)

The password arrives as a :class:`~diagnostics.secret.Secret` and only its hash leaves
this module.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from diagnostics.secret import Secret

__all__ = [
    "ALGORITHMS",
    "Challenge",
    "DigestError",
    "authorization",
    "choose",
    "parse_challenges",
]


class DigestError(ValueError):
    """A challenge we cannot read or answer; the message names the header and the bad value."""


@dataclass(frozen=True)
class _Algorithm:
    hashlib_name: str
    session: bool
    rank: int
    """Preference: higher is stronger (RFC 8760 §2.4 orders SHA-512-256, SHA-256, MD5)."""

    def h(self, data: str) -> str:
        return hashlib.new(self.hashlib_name, data.encode("utf-8")).hexdigest()


ALGORITHMS: Mapping[str, _Algorithm] = {
    "SHA-256": _Algorithm("sha256", session=False, rank=20),
    "SHA-256-sess": _Algorithm("sha256", session=True, rank=19),
    "MD5": _Algorithm("md5", session=False, rank=10),
    "MD5-sess": _Algorithm("md5", session=True, rank=9),
}
"""The algorithms we answer, by their RFC 7616 §6.1 names (matched case-insensitively)."""

_BY_LOWER = {name.lower(): name for name in ALGORITHMS}

# qop values we can answer, best first (RFC 7616 §3.3: auth-int also protects the body,
# but SIP servers rarely offer it alone; auth is what everyone speaks).
_QOP_PREFERENCE = ("auth", "auth-int")


@dataclass(frozen=True)
class Challenge:
    """One Digest challenge (RFC 7616 §3.3)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    """As the server spelled it; MD5 when it named none (RFC 2617 §3.2.1)."""
    qop: tuple[str, ...] = ()
    """Offered qop values; empty means the RFC 2069 form without qop."""
    opaque: str | None = None
    stale: bool = False
    """True: the nonce had expired but the credentials were right: answer the new nonce."""
    userhash: bool = False
    proxy: bool = False
    """From Proxy-Authenticate (407): answer in Proxy-Authorization."""

    @property
    def header_name(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"

    @property
    def supported(self) -> bool:
        return self.algorithm.lower() in _BY_LOWER

    @property
    def rank(self) -> int:
        name = _BY_LOWER.get(self.algorithm.lower())
        return ALGORITHMS[name].rank if name else -1


_TOKEN = r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+"
_ITEM = re.compile(rf'\s*,?\s*(?P<name>{_TOKEN})\s*(?:=\s*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<token>[^\s,"]*)))?')


def _items(value: str, header: str) -> Iterable[tuple[str, str | None]]:
    """(name, value) for every auth-param, and (scheme, None) where a new challenge begins."""
    pos = 0
    while pos < len(value):
        if not value[pos:].strip(" \t,"):
            return
        match = _ITEM.match(value, pos)
        if not match or match.end() == pos:
            raise DigestError(f"{header}: cannot read the challenge at {value[pos:pos + 40]!r} (got {value!r})")
        pos = match.end()
        quoted, token = match["quoted"], match["token"]
        if quoted is not None:
            yield match["name"], re.sub(r"\\(.)", r"\1", quoted)
        elif token is not None:
            yield match["name"], token
        else:
            yield match["name"], None


def parse_challenges(value: str, *, proxy: bool = False) -> tuple[Challenge, ...]:
    """Every Digest challenge in one WWW-Authenticate (or, with ``proxy``, Proxy-Authenticate) value.

    Challenges of other schemes (Basic, Bearer ...) are skipped.
    """
    header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    raw: list[tuple[str, dict[str, str]]] = []
    for name, item in _items(value, header):
        if item is None:
            raw.append((name.lower(), {}))
        elif not raw:
            raise DigestError(f"{header}: parameter {name!r} before any scheme (got {value!r})")
        else:
            raw[-1][1][name.lower()] = item
    challenges = []
    for scheme, params in raw:
        if scheme != "digest":
            continue
        for required in ("realm", "nonce"):
            if required not in params:
                raise DigestError(f"{header}: Digest challenge without {required!r} (got {value!r})")
        qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
        challenges.append(
            Challenge(
                realm=params["realm"],
                nonce=params["nonce"],
                algorithm=params.get("algorithm", "MD5"),
                qop=qop,
                opaque=params.get("opaque"),
                stale=params.get("stale", "").lower() == "true",
                userhash=params.get("userhash", "").lower() == "true",
                proxy=proxy,
            )
        )
    return tuple(challenges)


def choose(challenges: Iterable[Challenge]) -> Challenge:
    """The challenge to answer: the strongest algorithm we support (SHA-256 over MD5), first on a tie."""
    offered = list(challenges)
    usable = [c for c in offered if c.supported]
    if not usable:
        names = ", ".join(sorted({c.algorithm for c in offered})) or "none"
        raise DigestError(f"no Digest challenge with an algorithm phonekit supports (offered: {names}; "
                          f"supported: {', '.join(ALGORITHMS)})")  # fmt: skip
    return max(usable, key=lambda c: c.rank)  # max() keeps the first of equals


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(
    challenge: Challenge,
    method: str,
    uri: str,
    user: str,
    password: Secret,
    cnonce: str | None = None,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The Authorization / Proxy-Authorization value answering ``challenge`` (RFC 7616 §3.4).

    ``uri`` is the Request-URI exactly as sent; ``nc`` counts uses of this nonce (1 for a new one);
    ``cnonce`` is random when not given (tests pass the RFC's).
    """
    name = _BY_LOWER.get(challenge.algorithm.lower())
    if name is None:
        raise DigestError(f"Digest algorithm {challenge.algorithm!r} is not supported (supported: "
                          f"{', '.join(ALGORITHMS)})")  # fmt: skip
    if not 0 < nc <= 0xFFFFFFFF:
        raise DigestError(f"Digest nonce count must be 1..0xffffffff (got {nc})")
    algorithm = ALGORITHMS[name]
    h = algorithm.h
    qop = next((q for q in _QOP_PREFERENCE if q in challenge.qop), None)
    if challenge.qop and qop is None:
        raise DigestError(f"Digest qop {','.join(challenge.qop)!r} offers neither 'auth' nor 'auth-int'")
    cnonce = cnonce or secrets.token_hex(16)
    nc_text = f"{nc:08x}"

    ha1 = h(f"{user}:{challenge.realm}:{password.reveal()}")
    if algorithm.session:
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + hashlib.new(algorithm.hashlib_name, body).hexdigest()
    ha2 = h(a2)
    if qop is None:
        response = h(f"{ha1}:{challenge.nonce}:{ha2}")
    else:
        response = h(f"{ha1}:{challenge.nonce}:{nc_text}:{cnonce}:{qop}:{ha2}")

    username = h(f"{user}:{challenge.realm}") if challenge.userhash else user
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc_text}", f"cnonce={_quote(cnonce)}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if challenge.userhash:
        parts.append("userhash=true")
    return "Digest " + ", ".join(parts)
