"""A test-only UDP middlebox between a SIP client and a server on loopback: a NAT, with or without a SIP ALG.

The client talks to ``box.listen`` (127.0.0.1:<port>); the box forwards each
client's datagrams to the server from its own socket on ``public_host``
(127.0.0.2 by default, so the server sees another address, like behind NAT),
and the server's answers back to that client.

With ``rewrite=True`` it behaves like a consumer router's SIP ALG on requests
towards the server: the Contact's host:port become the box's public address,
the SDP's ``c=`` address becomes ``public_host`` and each ``m=`` port moves by
``media_port_shift``, and Content-Length is fixed up. Responses pass unchanged.
Deliberately independent of the product's SIP code (regular expressions on bytes).
"""

from __future__ import annotations

import logging
import re
import selectors
import socket
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

_CONTACT_LINE = re.compile(rb"^(Contact|m)[ \t]*:.*$", re.IGNORECASE | re.MULTILINE)
# sip:[user@]host[:port] inside a Contact value
_URI_HOSTPORT = re.compile(rb"(sips?:(?:[^@>;\s]+@)?)(\[[^\]]+\]|[^:;>\s]+)(?::(\d+))?")
_SDP_C = re.compile(rb"^c=IN (IP4|IP6) \S+", re.MULTILINE)
_SDP_M = re.compile(rb"^m=(\w+) (\d+)", re.MULTILINE)
_CONTENT_LENGTH = re.compile(rb"^(Content-Length|l)[ \t]*:[ \t]*\d+", re.IGNORECASE | re.MULTILINE)


def rewrite_like_alg(data: bytes, public_host: str, public_port: int, media_port_shift: int) -> bytes:
    """What a SIP ALG does to a request on its way out: private addresses become public ones."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or data.startswith(b"SIP/2.0 "):
        return data  # a keepalive or a response: untouched
    host, port = public_host.encode(), str(public_port).encode()

    def contact(line: re.Match[bytes]) -> bytes:
        return _URI_HOSTPORT.sub(lambda m: m.group(1) + host + b":" + port, line.group(0), count=1)

    head = _CONTACT_LINE.sub(contact, head)
    if body:
        body = _SDP_C.sub(lambda m: b"c=IN " + m.group(1) + b" " + host, body)
        body = _SDP_M.sub(lambda m: b"m=" + m.group(1) + b" " + str(int(m.group(2)) + media_port_shift).encode(), body)
        head = _CONTENT_LENGTH.sub(lambda m: m.group(1) + b": " + str(len(body)).encode(), head)
    return head + sep + body


@dataclass
class AlgBox:
    """Start with :meth:`start` (or ``with``); ``listen`` is where the client sends to."""

    server: tuple[str, int]
    rewrite: bool
    listen_host: str = "127.0.0.1"
    public_host: str = "127.0.0.2"
    media_port_shift: int = 10000
    rewritten: int = 0
    """Requests the ALG changed."""
    forwarded: int = 0
    _listen: socket.socket = field(init=False, repr=False)
    _outward: dict[tuple[str, int], socket.socket] = field(default_factory=dict, init=False, repr=False)
    _clients: dict[socket.socket, tuple[str, int]] = field(default_factory=dict, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _selector: selectors.DefaultSelector = field(default_factory=selectors.DefaultSelector, init=False, repr=False)

    @property
    def listen(self) -> tuple[str, int]:
        host, port = self._listen.getsockname()[:2]
        return host, port

    def start(self) -> AlgBox:
        self._listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._listen.bind((self.listen_host, 0))
        self._selector.register(self._listen, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="alg-box", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        for sock in [self._listen, *self._outward.values()]:
            sock.close()
        self._selector.close()

    def __enter__(self) -> AlgBox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _outward_for(self, client: tuple[str, int]) -> socket.socket:
        sock = self._outward.get(client)
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((self.public_host, 0))
            self._outward[client] = sock
            self._clients[sock] = client
            self._selector.register(sock, selectors.EVENT_READ)
        return sock

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data, source = sock.recvfrom(65535)
                except OSError:  # an ICMP error from an earlier send: nothing to forward
                    continue
                if sock is self._listen:
                    outward = self._outward_for(source[:2])
                    if self.rewrite:
                        changed = rewrite_like_alg(data, self.public_host, outward.getsockname()[1],
                                                   self.media_port_shift)  # fmt: skip
                        self.rewritten += changed != data
                        data = changed
                    outward.sendto(data, self.server)
                else:
                    self._listen.sendto(data, self._clients[sock])
                self.forwarded += 1
