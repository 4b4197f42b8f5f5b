"""SIP messages (RFC 3261 §7), sans-I/O: bytes in, frozen dataclasses out, and back.

:func:`parse` turns one datagram (or one framed stream message, see :class:`StreamReader`)
into a :class:`Request` or :class:`Response`; ``bytes(message)`` writes it again, so
``bytes(parse(x)) == x`` for every message this module builds (and for any message whose
header lines read ``Name: value``). Header lookup ignores case and knows the compact
forms (``v`` = Via, ``m`` = Contact, ... RFC 3261 §7.3.3, RFC 3265, RFC 3515, RFC 3841,
RFC 4028, RFC 4474).

The builders :func:`build_options` and :func:`build_register` make requests as a user
agent client sends them (RFC 3261 §8.1.1): Via with a ``z9hG4bK`` branch and ``rport``
(RFC 3581), From tag, Call-ID, CSeq, Max-Forwards, Contact, User-Agent and
Content-Length. Nothing here touches a socket.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from diagnostics.report import phonekit_version

__all__ = [
    "BRANCH_MAGIC",
    "COMPACT_FORMS",
    "Address",
    "CSeq",
    "Headers",
    "Message",
    "NameAddr",
    "Params",
    "ParseError",
    "Request",
    "Response",
    "SipUri",
    "StreamReader",
    "Via",
    "build_options",
    "build_register",
    "build_request",
    "new_branch",
    "new_call_id",
    "new_tag",
    "param",
    "parse",
    "parse_name_addr",
    "parse_uri",
    "parse_via",
    "quoted_string",
    "split_list",
    "user_agent",
]

SIP_VERSION = "SIP/2.0"
BRANCH_MAGIC = "z9hG4bK"
"""RFC 3261 §8.1.1.7: branches that start with this are unique per transaction."""

COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",  # RFC 3841
    "b": "Referred-By",  # RFC 3892
    "c": "Content-Type",
    "d": "Request-Disposition",  # RFC 3841
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",  # RFC 3841
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",  # RFC 4474
    "o": "Event",  # RFC 3265
    "r": "Refer-To",  # RFC 3515
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",  # RFC 3265
    "v": "Via",
    "x": "Session-Expires",  # RFC 4028
    "y": "Identity",  # RFC 4474
}

# Header fields whose value is a comma-separated list (RFC 3261 §7.3.1): several
# may share one line. Authentication headers are NOT lists: their commas separate
# parameters of one challenge.
_LIST_HEADERS = frozenset(
    {
        "accept", "accept-encoding", "accept-language", "allow", "allow-events", "contact", "path",
        "proxy-require", "record-route", "require", "route", "service-route", "supported", "unsupported", "via",
    }
)  # fmt: skip

_MAX_HEAD_BYTES = 65536
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")


class ParseError(ValueError):
    """The bytes are not a SIP message this module can read; the message says where and what."""


def _snippet(text: str | bytes, limit: int = 60) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _key(name: str) -> str:
    lowered = name.strip().lower()
    return COMPACT_FORMS.get(lowered, lowered).lower()


# --------------------------------------------------------------------------- small value types

Params = tuple[tuple[str, str | None], ...]
"""``;name=value`` parameters in order; a parameter without ``=`` has the value None (``;rport``, ``;lr``)."""


def param(params: Params, name: str) -> str | None:
    """The value of parameter ``name`` (case-insensitive); None when absent or valueless."""
    wanted = name.lower()
    return next((value for key, value in params if key.lower() == wanted), None)


def _parse_params(text: str, where: str) -> Params:
    """``;a=1;b;c="x;y"`` → (("a", "1"), ("b", None), ("c", '"x;y"')); quotes are kept."""
    result: list[tuple[str, str | None]] = []
    for part in _split_outside_quotes(text, ";"):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not _TOKEN.match(name):
            raise ParseError(f"{where}: bad parameter name (got {_snippet(part)})")
        result.append((name, value.strip() if eq else None))
    return tuple(result)


def _format_params(params: Params) -> str:
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split at ``sep`` outside double quotes and angle brackets."""
    parts: list[str] = []
    depth, quoted, start, i = 0, False, 0, 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def split_list(value: str) -> list[str]:
    """The elements of a comma-separated header value (RFC 3261 §7.3.1), quotes and ``<>`` respected."""
    return [part.strip() for part in _split_outside_quotes(value, ",") if part.strip()]


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@dataclass(frozen=True)
class Address:
    """An IP address (or host name) and port: a socket's end, or a Via sent-by."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535 (got {self.port})")

    def __str__(self) -> str:
        return f"{_format_host(self.host)}:{self.port}"


_HOSTPORT = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]]+))(?::(?P<port>\d{1,5}))?$")


def _parse_hostport(text: str, where: str) -> tuple[str, int | None]:
    match = _HOSTPORT.match(text.strip())
    if not match:
        raise ParseError(f"{where}: expected host[:port] (got {_snippet(text)})")
    port = int(match["port"]) if match["port"] else None
    if port is not None and port > 65535:
        raise ParseError(f"{where}: port must be 0..65535 (got {port})")
    return match["v6"] or match["host"], port


@dataclass(frozen=True)
class SipUri:
    """A ``sip:``/``sips:`` URI (RFC 3261 §19.1): ``sip:user@host:port;params?headers``."""

    scheme: str
    host: str
    user: str | None = None
    port: int | None = None
    params: Params = ()
    headers: str = ""

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user is not None else ""
        port = f":{self.port}" if self.port is not None else ""
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{user}{_format_host(self.host)}{port}{_format_params(self.params)}{headers}"

    @property
    def hostport(self) -> str:
        return _format_host(self.host) + (f":{self.port}" if self.port is not None else "")


def parse_uri(text: str) -> SipUri:
    """Parse a SIP or SIPS URI; the user's password part (``user:pw@``), if any, is dropped."""
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        raise ParseError(f"SIP URI: expected 'sip:' or 'sips:' (got {_snippet(text)})")
    rest, _, headers = rest.partition("?")
    user: str | None = None
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user = userinfo.partition(":")[0]
    hostport, _, params = rest.partition(";")
    host, port = _parse_hostport(hostport, f"SIP URI {_snippet(text)}")
    return SipUri(scheme.lower(), host, user, port, _parse_params(params, f"SIP URI {_snippet(text)}"), headers)


@dataclass(frozen=True)
class NameAddr:
    """A From/To/Contact element: ``"Display" <uri>;params`` (RFC 3261 §20.10)."""

    uri: str
    display_name: str = ""
    params: Params = ()

    def __str__(self) -> str:
        display = f"{self.display_name} " if self.display_name else ""
        return f"{display}<{self.uri}>{_format_params(self.params)}"

    @property
    def sip_uri(self) -> SipUri:
        return parse_uri(self.uri)

    @property
    def tag(self) -> str | None:
        return param(self.params, "tag")


def parse_name_addr(text: str) -> NameAddr:
    """Parse a name-addr or addr-spec; for a bare addr-spec the ``;`` parameters belong to the header."""
    text = text.strip()
    if "<" in text:
        display, _, rest = text.partition("<")
        uri, close, params = rest.partition(">")
        if not close:
            raise ParseError(f"name-addr: '<' without '>' (got {_snippet(text)})")
        return NameAddr(uri.strip(), display.strip(), _parse_params(params, f"name-addr {_snippet(text)}"))
    uri, _, params = text.partition(";")
    if not uri or " " in uri.strip():
        raise ParseError(f"name-addr: expected '<uri>' or a bare URI (got {_snippet(text)})")
    return NameAddr(uri.strip(), "", _parse_params(params, f"name-addr {_snippet(text)}"))


@dataclass(frozen=True)
class Via:
    """One Via element (RFC 3261 §20.42): ``SIP/2.0/UDP host:port;branch=...;rport=...;received=...``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = SIP_VERSION

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {_format_host(self.host)}{port}{_format_params(self.params)}"

    @property
    def sent_by(self) -> str:
        return _format_host(self.host) + (f":{self.port}" if self.port is not None else "")

    @property
    def branch(self) -> str | None:
        return param(self.params, "branch")

    @property
    def received(self) -> str | None:
        """RFC 3261 §18.2.1: the source address the server saw, when it differs from sent-by."""
        return param(self.params, "received")

    @property
    def rport(self) -> int | None:
        """RFC 3581: the source port the server saw (None when it did not fill it in)."""
        value = param(self.params, "rport")
        return int(value) if value is not None and value.isdigit() else None


def parse_via(text: str) -> Via:
    match = re.match(r"^\s*([^/\s]+)\s*/\s*([^/\s]+)\s*/\s*(\S+)\s+([^;]+)(.*)$", text, re.DOTALL)
    if not match:
        raise ParseError(f"Via: expected 'SIP/2.0/TRANSPORT host[:port]' (got {_snippet(text)})")
    name, version, transport, hostport, params = match.groups()
    host, port = _parse_hostport(hostport, f"Via {_snippet(text)}")
    return Via(transport.upper(), host, port, _parse_params(params, f"Via {_snippet(text)}"), f"{name}/{version}")


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


# --------------------------------------------------------------------------- headers and messages


@dataclass(frozen=True)
class Headers:
    """Header fields in wire order as (name, value); lookup ignores case and compact forms."""

    fields: tuple[tuple[str, str], ...] = ()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(_key(key) == _key(name) for key, _ in self.fields)

    def get(self, name: str) -> str | None:
        """The first field named ``name`` (``"via"``, ``"Via"`` and ``"v"`` are the same)."""
        wanted = _key(name)
        return next((value for key, value in self.fields if _key(key) == wanted), None)

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every field named ``name``, one per line, in order."""
        wanted = _key(name)
        return tuple(value for key, value in self.fields if _key(key) == wanted)

    def values(self, name: str) -> tuple[str, ...]:
        """The elements of ``name``: list headers (Via, Contact, Route, ...) split at their commas."""
        lines = self.get_all(name)
        if _key(name) not in _LIST_HEADERS:
            return lines
        return tuple(element for line in lines for element in split_list(line))

    def add(self, name: str, value: str) -> Headers:
        return Headers((*self.fields, (name, value)))

    def replace(self, name: str, value: str) -> Headers:
        """Set ``name`` to one field with ``value``, where the first one was (or at the end)."""
        wanted, out, placed = _key(name), [], False
        for key, old in self.fields:
            if _key(key) != wanted:
                out.append((key, old))
            elif not placed:
                out.append((key, value))
                placed = True
        if not placed:
            out.append((name, value))
        return Headers(tuple(out))


class _Message:
    """What requests and responses share: headers, body, and typed access to the common headers."""

    headers: Headers
    body: bytes

    def _head(self) -> str:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        lines = [self._head(), *(f"{name}: {value}" for name, value in self.headers)]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise ParseError(f"{self._head()!r}: header '{name}' is missing")
        return value

    @property
    def call_id(self) -> str:
        return self._required("Call-ID")

    @property
    def cseq(self) -> CSeq:
        value = self._required("CSeq")
        number, _, method = value.strip().partition(" ")
        if not number.isdigit() or not method.strip():
            raise ParseError(f"CSeq: expected 'number METHOD' (got {_snippet(value)})")
        return CSeq(int(number), method.strip())

    @property
    def vias(self) -> tuple[Via, ...]:
        return tuple(parse_via(v) for v in self.headers.values("Via"))

    @property
    def top_via(self) -> Via:
        vias = self.headers.values("Via")
        if not vias:
            raise ParseError(f"{self._head()!r}: header 'Via' is missing")
        return parse_via(vias[0])

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self._required("From"))

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self._required("To"))

    @property
    def contacts(self) -> tuple[NameAddr, ...]:
        """Contact elements (``*`` comes back as a NameAddr whose uri is ``*``)."""
        return tuple(
            NameAddr("*") if element == "*" else parse_name_addr(element) for element in self.headers.values("Contact")
        )


@dataclass(frozen=True)
class Request(_Message):
    """A SIP request (RFC 3261 §7.1)."""

    method: str
    uri: str
    headers: Headers
    body: bytes = b""
    version: str = SIP_VERSION

    def _head(self) -> str:
        return f"{self.method} {self.uri} {self.version}"


@dataclass(frozen=True)
class Response(_Message):
    """A SIP response (RFC 3261 §7.2)."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = SIP_VERSION

    def _head(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    @property
    def is_final(self) -> bool:
        return self.status >= 200


Message = Request | Response

_STATUS_LINE = re.compile(r"^(SIP/\d+\.\d+) (\d{3}) ?(.*)$")
_REQUEST_LINE = re.compile(r"^([A-Za-z0-9\-.!%*_+`'~]+) (\S+) (SIP/\d+\.\d+)$")


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise ParseError(f"SIP message: no empty line after the headers in {len(data)} bytes (got {_snippet(data)})")
    return data[:end], data[end + 4 :]


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"SIP message: headers are not UTF-8 at byte {exc.start} (got {_snippet(head)})") from exc
    lines = text.split("\r\n")
    start = lines[0]
    fields: list[tuple[str, str]] = []
    for number, line in enumerate(lines[1:], start=2):
        if line[:1] in (" ", "\t"):  # RFC 3261 §7.3.1 line folding: continues the previous field
            if not fields:
                raise ParseError(f"SIP message line {number}: continuation without a header (got {_snippet(line)})")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip()
        if not colon or not _TOKEN.match(name):
            raise ParseError(f"SIP message line {number}: expected 'Name: value' (got {_snippet(line)})")
        fields.append((name, value.strip()))
    return start, fields


def _content_length(fields: Sequence[tuple[str, str]]) -> int | None:
    value = next((v for k, v in fields if _key(k) == "content-length"), None)
    if value is None:
        return None
    if not value.isdigit():
        raise ParseError(f"Content-Length: expected a number of bytes (got {_snippet(value)})")
    return int(value)


def parse(data: bytes) -> Message:
    """Parse one whole SIP message (one UDP datagram, or one message cut from a stream).

    Leading CRLFs are skipped (RFC 3261 §7.5). With a Content-Length the body is cut to it
    (§18.3); a body shorter than announced is an error. Raises :class:`ParseError`.
    """
    data = data.lstrip(b"\r\n")
    if not data:
        raise ParseError("SIP message: empty")
    head, body = _split_head(data)
    start, fields = _parse_head(head)
    length = _content_length(fields)
    if length is not None:
        if len(body) < length:
            raise ParseError(f"SIP message: Content-Length {length} but only {len(body)} bytes of body")
        body = body[:length]
    headers = Headers(tuple(fields))
    if status := _STATUS_LINE.match(start):
        version, code, reason = status.groups()
        return Response(int(code), reason, headers, body, version)
    if request := _REQUEST_LINE.match(start):
        method, uri, version = request.groups()
        return Request(method, uri, headers, body, version)
    raise ParseError(f"SIP message: first line is neither a request nor a status line (got {_snippet(start)})")


class StreamReader:
    """Cuts SIP messages out of a TCP/TLS byte stream by Content-Length (RFC 3261 §18.3), sans-I/O.

    ``feed`` returns each complete message with its exact bytes; CRLF keepalives
    (RFC 5626 §3.5.1) between messages are skipped. On a stream Content-Length is mandatory.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[bytes, Message]]:
        self._buffer += data
        out: list[tuple[bytes, Message]] = []
        while True:
            self._buffer = self._buffer.lstrip(b"\r\n")
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD_BYTES:
                    raise ParseError(f"SIP stream: no end of headers within {_MAX_HEAD_BYTES} bytes")
                return out
            _, fields = _parse_head(self._buffer[:end])
            length = _content_length(fields)
            if length is None:
                raise ParseError(
                    f"SIP stream: message without Content-Length (got {_snippet(self._buffer[:end])})"
                )
            total = end + 4 + length
            if len(self._buffer) < total:
                return out
            raw, self._buffer = self._buffer[:total], self._buffer[total:]
            out.append((raw, parse(raw)))


# --------------------------------------------------------------------------- builders


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"


def user_agent() -> str:
    return f"phonekit/{phonekit_version()}"


@dataclass(frozen=True)
class _Fields:
    """What every request of ours carries (RFC 3261 §8.1.1), in the order we write it."""

    via: Via
    from_: NameAddr
    to: NameAddr
    call_id: str
    cseq: CSeq
    max_forwards: int = 70
    contact: NameAddr | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def headers(self, body: bytes, content_type: str | None) -> Headers:
        fields: list[tuple[str, str]] = [
            ("Via", str(self.via)),
            ("Max-Forwards", str(self.max_forwards)),
            ("From", str(self.from_)),
            ("To", str(self.to)),
            ("Call-ID", self.call_id),
            ("CSeq", str(self.cseq)),
        ]
        if self.contact is not None:
            fields.append(("Contact", str(self.contact)))
        fields.extend(self.extra)
        fields.append(("User-Agent", user_agent()))
        if body:
            if not content_type:
                raise ValueError(f"a request with a {len(body)}-byte body needs a Content-Type")
            fields.append(("Content-Type", content_type))
        fields.append(("Content-Length", str(len(body))))
        return Headers(tuple(fields))


def quoted_string(text: str) -> str:
    """RFC 3261 §25.1 quoted-string: backslash and double quote escaped, CR/LF refused."""
    if "\r" in text or "\n" in text:
        raise ValueError(f"a quoted string cannot hold a line break (got {text!r})")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_request(
    method: str,
    uri: str,
    *,
    transport: str,
    local: Address,
    from_uri: str,
    to_uri: str,
    call_id: str,
    cseq: int,
    tag: str,
    branch: str | None = None,
    contact: NameAddr | None = None,
    display_name: str = "",
    max_forwards: int = 70,
    extra: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """A request as a UAC sends it: every mandatory header of RFC 3261 §8.1.1, Via with rport (RFC 3581)."""
    if not _TOKEN.match(method) or method.upper() != method:
        raise ValueError(f"SIP method must be an upper-case token (got {method!r})")
    branch = branch or new_branch()
    if not branch.startswith(BRANCH_MAGIC):
        raise ValueError(f"Via branch must start with {BRANCH_MAGIC!r} (RFC 3261 §8.1.1.7) (got {branch!r})")
    display = quoted_string(display_name) if display_name else ""
    fields = _Fields(
        via=Via(transport.upper(), local.host, local.port, (("branch", branch), ("rport", None))),
        from_=NameAddr(from_uri, display, (("tag", tag),)),
        to=NameAddr(to_uri),
        call_id=call_id,
        cseq=CSeq(cseq, method),
        max_forwards=max_forwards,
        contact=contact,
        extra=tuple(extra),
    )
    return Request(method, uri, fields.headers(body, content_type), body)


def build_options(
    uri: str,
    *,
    transport: str,
    local: Address,
    from_uri: str,
    to_uri: str | None = None,
    call_id: str | None = None,
    tag: str | None = None,
    cseq: int = 1,
    contact: NameAddr | None = None,
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """An OPTIONS request (RFC 3261 §11.1) to ``uri``, with an Accept header and an optional body."""
    return build_request(
        "OPTIONS", uri, transport=transport, local=local, from_uri=from_uri, to_uri=to_uri or uri,
        call_id=call_id or new_call_id(local.host), cseq=cseq, tag=tag or new_tag(), contact=contact,
        extra=(("Accept", "application/sdp"),), body=body, content_type=content_type,
    )  # fmt: skip


def build_register(
    registrar_uri: str,
    aor: str,
    *,
    transport: str,
    local: Address,
    contact: NameAddr,
    expires: int,
    call_id: str,
    tag: str,
    cseq: int,
    display_name: str = "",
    authorization: Sequence[tuple[str, str]] = (),
) -> Request:
    """A REGISTER (RFC 3261 §10.2): To and From are the address of record; ``authorization`` holds
    (header name, value) pairs from :func:`diagnostics.sip.digest.authorization`.

    Call-ID and From tag stay the same for every REGISTER of one binding (§10.2.4), CSeq grows.
    """
    if expires < 0:
        raise ValueError(f"Expires must be >= 0 seconds (got {expires})")
    extra = [("Expires", str(expires)), ("Allow", "OPTIONS"), *authorization]
    return build_request(
        "REGISTER", registrar_uri, transport=transport, local=local, from_uri=aor, to_uri=aor, call_id=call_id,
        cseq=cseq, tag=tag, contact=contact, display_name=display_name, extra=extra,
    )  # fmt: skip
