"""SIP checks: the server answers (``sip.options``), the account registers (``sip.register``), no SIP ALG
rewrites our messages (``network.sip_alg``).

One protocol concept per module: :mod:`.message` (RFC 3261 messages, sans-I/O), :mod:`.digest`
(RFC 7616/2617 digest authentication, sans-I/O), :mod:`.transport` (the only module here with
sockets: one request, one final response, over UDP, TCP or TLS), then the checks
:mod:`.options`, :mod:`.register` and :mod:`.alg`.
"""
