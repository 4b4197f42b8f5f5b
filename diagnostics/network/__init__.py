"""Network checks: interfaces and the default route (issue #4 adds DNS, SIP, NAT and media)."""
