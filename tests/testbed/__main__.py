"""``python -m tests.testbed demo``: phonekit's main job, ``phonekit launch``, on an embedded default.

A fresh workstation image (or CI) has no sound card and no PBX, so the demo
brings up a virtual USB headset (a private PulseAudio server) and runs
``phonekit launch`` without a profile: the audio and network checks, an echo
test call to phonekit's embedded echo service on loopback, then the terminal
phone (type ``help``; it ends with ``quit`` or at the end of input).

``--pbx`` adds the rest of the test bed on loopback: Kamailio with its echo
extension and coturn for STUN, and a profile for user 1001 (password in a 0600
file), so that every check runs, SIP and NAT included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.testbed.coturn import Coturn
from tests.testbed.kamailio import Kamailio
from tests.testbed.procs import free_port
from tests.testbed.pulse import run_in_scene

USER = "1001"


def _profile(folder: Path, kamailio: Kamailio, coturn: Coturn) -> Path:
    secret = folder / "demo.secret"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(kamailio.users[USER] + "\n")
    profile = folder / "demo.toml"
    profile.write_text(
        "[account]\n"
        f'user = "{USER}"\n'
        f'domain = "{kamailio.domain}"\n'
        f'registrar = "{kamailio.host}:{kamailio.udp_port}"\n'
        'transport = "udp"\n'
        'password_file = "demo.secret"\n'
        "[network]\n"
        f'stun_server = "{coturn.host}:{coturn.port}"\n'
        "[checks]\n"
        f'echo_extension = "{kamailio.echo_extension}"\n'
    )
    return profile


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed")
    parser.add_argument("command", choices=("demo",))
    parser.add_argument("--scene", default="headset", help="PulseAudio scene to run the checks in (default: headset)")
    parser.add_argument("--pbx", action="store_true", help="also Kamailio and coturn, with a profile for 1001")
    args = parser.parse_args(argv)
    phonekit = shutil.which("phonekit") or f"{sys.prefix}/bin/phonekit"
    launch = [phonekit, "launch", "--non-interactive", "--no-history"]
    if not args.pbx:
        print(f"phonekit demo: virtual '{args.scene}' audio devices and the embedded echo service", file=sys.stderr)
        return run_in_scene(args.scene, launch)
    print(f"phonekit demo: virtual '{args.scene}' audio devices, Kamailio and coturn on loopback", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="phonekit-demo-") as tmp:
        folder = Path(tmp)
        # Standard ports: the echo extension is called as sip:9196@127.0.0.1, which Kamailio must see as itself.
        with Kamailio(folder / "kamailio") as kamailio, Coturn(folder / "coturn", port=free_port()) as coturn:
            profile = _profile(folder, kamailio, coturn)
            return run_in_scene(args.scene, [*launch, "--profile", str(profile)])


if __name__ == "__main__":
    sys.exit(main())
