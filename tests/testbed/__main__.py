"""``python -m tests.testbed demo``: phonekit's main job on an embedded default.

A fresh workstation image (or CI) has no sound card, so the demo brings up the
test bed's virtual USB headset (a private PulseAudio server), runs every
``phonekit check`` against it and this machine's network, and stops it again.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence

from tests.testbed.pulse import run_in_scene


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed")
    parser.add_argument("command", choices=("demo",))
    parser.add_argument("--scene", default="headset", help="PulseAudio scene to run the checks in (default: headset)")
    args = parser.parse_args(argv)
    phonekit = shutil.which("phonekit") or f"{sys.prefix}/bin/phonekit"
    print(f"phonekit demo: virtual '{args.scene}' audio devices, this machine's network", file=sys.stderr)
    return run_in_scene(args.scene, [phonekit, "check", "--non-interactive"])


if __name__ == "__main__":
    sys.exit(main())
