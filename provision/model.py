"""What provisioning knows about one workstation after the inventory is read and validated.

The inventory reader (:mod:`provision.inventory`) produces :class:`Machine`
records; the renderer turns each into files for the clients it lists, from
the Jinja2 templates in ``templates/``. Templates see :meth:`Machine.context`:
plain strings, numbers, lists and dicts, plus the password as a
:class:`~diagnostics.secret.Secret` that only ``{{ password.reveal() }}``
opens (so that a dry run can render with a redacted one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from diagnostics.profile import Transport
from diagnostics.secret import Secret

__all__ = ["CLIENT_FILES", "Client", "Machine", "SrtpMode"]


class Client(StrEnum):
    PHONEKIT = "phonekit"
    LINPHONE = "linphone"
    BARESIP = "baresip"
    MICROSIP = "microsip"


# Files each client gets, by template name (templates/<client>/<file>.j2) → output file name.
CLIENT_FILES: dict[Client, tuple[tuple[str, str], ...]] = {
    Client.PHONEKIT: (("phonekit/profile.toml.j2", "phonekit.toml"),),
    Client.LINPHONE: (("linphone/linphonerc.j2", "linphonerc"), ("linphone/provisioning.xml.j2", "linphone.xml")),
    Client.BARESIP: (("baresip/accounts.j2", "baresip/accounts"), ("baresip/config.j2", "baresip/config")),
    Client.MICROSIP: (("microsip/MicroSIP.ini.j2", "MicroSIP.ini"),),
}


class SrtpMode(StrEnum):
    DISABLED = "disabled"
    OPTIONAL = "optional"
    MANDATORY = "mandatory"


@dataclass(frozen=True)
class Machine:
    """One workstation, one user, one SIP account; every field validated."""

    hostname: str
    user: str
    """The person's login name (not the SIP user)."""
    display_name: str
    extension: str
    """Digits: the SIP user part and, unless ``auth_user`` says otherwise, the digest user."""
    domain: str
    registrar: str
    """``host[:port]`` of the registrar/proxy (may equal the domain)."""
    password: Secret = field(repr=False)
    transport: Transport = Transport.UDP
    srtp: SrtpMode = SrtpMode.DISABLED
    codecs: tuple[str, ...] = ("G722", "PCMA", "PCMU")
    stun_server: str = ""
    echo_extension: str = ""
    dial_profile: str = "de-default"
    barring_profile: str = "de-default"
    allow_numbers: tuple[str, ...] = ()
    """Per-user exceptions to the barring profile (numbers or prefixes)."""
    input_device: str = ""
    output_device: str = ""
    clients: tuple[Client, ...] = (Client.PHONEKIT,)
    group: str = ""
    auth_user: str = ""
    row: int = 0
    """Where the machine came from in the inventory (for messages)."""

    @property
    def digest_user(self) -> str:
        return self.auth_user or self.extension

    def context(self) -> dict[str, Any]:
        """What templates see."""
        return {
            "hostname": self.hostname,
            "user": self.user,
            "display_name": self.display_name,
            "extension": self.extension,
            "auth_user": self.digest_user,
            "domain": self.domain,
            "registrar": self.registrar,
            "password": self.password,
            "transport": self.transport.value,
            "srtp": self.srtp.value,
            "codecs": list(self.codecs),
            "stun_server": self.stun_server,
            "echo_extension": self.echo_extension,
            "dial_profile": self.dial_profile,
            "barring_profile": self.barring_profile,
            "allow_numbers": list(self.allow_numbers),
            "input_device": self.input_device,
            "output_device": self.output_device,
            "group": self.group,
        }
