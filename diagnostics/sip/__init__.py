"""SIP checks: where the server is (``sip.dns``), that it answers (``sip.options``), that the account
registers (``sip.register``), and that no SIP ALG rewrites our messages (``network.sip_alg``).

One protocol concept per module: :mod:`.message` (RFC 3261 messages, sans-I/O), :mod:`.digest`
(RFC 7616/2617 digest authentication, sans-I/O), :mod:`.dns` (RFC 3263 server location),
:mod:`.transport` (the only module here with SIP sockets: one request, one final response, over
UDP, TCP or TLS), then the checks :mod:`.options`, :mod:`.register` and :mod:`.alg`.
"""
