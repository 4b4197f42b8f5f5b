"""Provisioning at scale: 10,000 machines × 4 clients rendered and written, then rendered again.

Reports, each run in a fresh process through ``phonekit provision render``'s own entry point:

* wall time of the first run (everything created, passwords generated) for 10,000 machines
  (target ≤ 10 s on a 2-core machine);
* peak memory for 1,000 and 10,000 machines: ``ru_maxrss`` of the process, and the tracemalloc peak
  (Python allocations only, in a separate run because tracing slows it down);
* a re-run with nothing changed: its wall time, and how many files' inode or mtime changed on disk
  (``rewritten``: must be 0; the run must also report ``created 0, changed 0, unchanged N``);
* the disk floor: how long a bare loop takes to create the same folders and files.

Each timed run waits for a quiet disk first (:func:`wait_quiet`): on a shared virtual machine,
creating or deleting tens of thousands of files keeps the disk busy for a minute or more, and file
creation is then several times slower.

``python bench/provision_scale.py [--machines 10000] [--small 1000] [--stand-in]``

``--stand-in`` renders with a minimal renderer (one small template per client file) instead of
``provision.render``, to measure the inventory and output stages alone.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLIENTS = ("phonekit", "linphone", "baresip", "microsip")

SITE = """\
[site]
domain = "example.com"
registrar = "sip.example.com:5061"
transport = "tls"
srtp = "optional"
codecs = ["G722", "PCMA", "PCMU", "GSM"]
stun_server = "stun.example.com:3478"
echo_extension = "9196"
clients = ["phonekit", "linphone", "baresip", "microsip"]

[groups.sales]
srtp = "mandatory"

[groups.support]
input_device = "Jabra"
output_device = "Jabra"
"""


def write_inventory(folder: Path, machines: int) -> tuple[Path, Path]:
    inventory, site = folder / f"fleet-{machines}.csv", folder / "site.toml"
    site.write_text(SITE)
    with open(inventory, "w") as out:
        out.write("hostname,user,display_name,extension,group\n")
        for i in range(machines):
            group = ("sales", "support", "")[i % 3]
            out.write(f"ws-{i:05d},user{i:05d},User {i:05d},{10000 + i},{group}\n")
    return inventory, site


# -- the child: one run of the command, measured -------------------------------------------------------


@dataclass(frozen=True)
class _StandInFile:
    path: str
    content: str
    secret: bool

    def encode(self) -> bytes:
        return self.content.encode("utf-8")


def _stand_in_renderer() -> object:
    import jinja2

    from provision.model import CLIENT_FILES

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    secret = env.from_string(
        'user = "{{ extension }}"\ndomain = "{{ domain }}"\nname = "{{ display_name }}"\n'
        'password = "{{ password.reveal() }}"\ncodecs = "{{ codecs | join(",") }}"\n'
    )
    public = env.from_string('registrar = "{{ registrar }}"\ntransport = "{{ transport }}"\n')

    def render(machine, clients=None, site_templates=None, redact=False):  # type: ignore[no-untyped-def]
        context = machine.context()
        if redact:
            from diagnostics.secret import Secret

            context["password"] = Secret("***")
        files = []
        for client in machine.clients if clients is None else clients:
            for index, (_, output) in enumerate(CLIENT_FILES[client]):
                template = secret if index == 0 else public
                files.append(_StandInFile(output, template.render(context), index == 0))
        return files

    return render


def child(result_file: Path, trace: bool, stand_in: bool, argv: list[str]) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from provision import provision_cli

    if stand_in:
        renderer = _stand_in_renderer()
        provision_cli.load_renderer = lambda: renderer  # type: ignore[assignment,return-value]
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    sink = io.StringIO()
    saved, sys.stdout = sys.stdout, sink
    try:
        code = provision_cli.main(argv)
    finally:
        sys.stdout = saved
    wall = time.perf_counter() - started
    summary = sink.getvalue().splitlines()[0] if sink.getvalue() else ""  # "created N, changed N, unchanged N"
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    result_file.write_text(json.dumps({
        "code": code, "wall_s": wall, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tracemalloc_peak_mb": peak / 1e6, "summary": summary,
    }))
    return 0


# -- the parent ----------------------------------------------------------------------------------------


def run(argv: list[str], trace: bool = False, stand_in: bool = False) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as result:
        command = [sys.executable, __file__, "--child", result.name]
        command += ["--trace"] if trace else []
        command += ["--stand-in"] if stand_in else []
        completed = subprocess.run([*command, "--", *argv], capture_output=True, text=True)
        measured: dict[str, Any] = json.loads(Path(result.name).read_text() or "{}")
    if completed.returncode != 0 or measured.get("code") != 0:
        sys.exit(f"run failed: {' '.join(argv)}\n{completed.stderr[-3000:]}")
    return measured


def disk_floor(folder: Path, machines: int) -> float:
    """Seconds a bare loop takes to make the same tree: per machine 2 folders and 6 files of 1.5 kB,
    written to temporary names, one syncfs, renamed, one syncfs. What the disk costs at least."""
    root = folder
    root.mkdir()
    names = ("phonekit.toml", "linphonerc", "linphone.xml", "baresip/accounts", "baresip/config", "MicroSIP.ini")
    sync = ctypes.CDLL(None, use_errno=True).syncfs
    fd = os.open(root, os.O_RDONLY)
    started = time.perf_counter()
    for m in range(machines):
        os.makedirs(root / f"ws-{m:05d}" / "baresip")
        for name in names:
            out = os.open(root / f"ws-{m:05d}" / f"{name}.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(out, b"x" * 1500)
            os.close(out)
    sync(fd)
    for m in range(machines):
        for name in names:
            os.replace(root / f"ws-{m:05d}" / f"{name}.tmp", root / f"ws-{m:05d}" / name)
    sync(fd)
    elapsed = time.perf_counter() - started
    os.close(fd)
    return elapsed


def snapshot(out: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for folder, _, names in os.walk(out):
        for name in names:
            st = os.stat(os.path.join(folder, name))
            found[os.path.join(folder, name)] = (st.st_ino, st.st_mtime_ns)
    return found


def wait_quiet(limit_s: float = 240.0) -> float:
    """Wait until the disk has been quiet for 10 s (Linux pressure stall information: less than 1 % of
    the time some task waited for I/O); deleting or writing tens of thousands of files keeps a virtual
    machine's disk busy for a minute or more, and a run started then measures that. Seconds waited."""
    started = time.perf_counter()
    pressure = Path("/proc/pressure/io")
    while pressure.exists() and time.perf_counter() - started < limit_s:
        some = pressure.read_text().split("\n")[0].split()
        if float(some[1].split("=")[1]) < 1.0:
            break
        time.sleep(2)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--stand-in", action="store_true", help="minimal renderer instead of provision.render")
    parser.add_argument("--base", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="folder for the inventory and output (default: the repository's file system; "
                             "/dev/shm leaves out the disk)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child is not None:
        return child(args.child, args.trace, args.stand_in, [a for a in rest if a != "--"])

    renderer = "stand-in renderer (bench)" if args.stand_in else "provision.render"
    print(f"renderer: {renderer}; {os.cpu_count()} cores; {len(CLIENTS)} clients per machine; in {args.base}")
    with tempfile.TemporaryDirectory(dir=args.base) as tmp:
        folder = Path(tmp)
        print(f"{'machines':>8} {'files':>6} {'first run s':>11} {'re-run s':>8} {'rewritten':>9} {'disk floor s':>12} "
              f"{'maxrss MB':>9} {'tracemalloc peak MB':>19}")
        for machines in (args.small, args.machines):
            inventory, site = write_inventory(folder, machines)

            def common(name: str, inventory: Path = inventory, site: Path = site) -> list[str]:
                return ["provision", "render", "--inventory", str(inventory), "--site", str(site),
                        "--out", str(folder / f"out-{name}"), "--secrets", str(folder / f"secrets-{name}.txt")]

            wait_quiet()
            first = run([*common(f"{machines}"), "--generate-missing"], False, args.stand_in)
            files = sum(1 for p in (folder / f"out-{machines}").rglob("*") if p.is_file()) - 1
            wait_quiet()
            before = snapshot(folder / f"out-{machines}")
            again = run(common(f"{machines}"), False, args.stand_in)
            after = snapshot(folder / f"out-{machines}")
            touched = sum(1 for path, key in after.items() if before.get(path) != key)
            assert again["summary"] == f"created 0, changed 0, unchanged {files}", again["summary"]
            wait_quiet()
            floor = disk_floor(folder / f"floor-{machines}", machines)
            traced = run([*common(f"{machines}-traced"), "--generate-missing"], True, args.stand_in)
            print(f"{machines:>8} {files:>6} {first['wall_s']:>11.2f} {again['wall_s']:>8.2f} {touched:>9} "
                  f"{floor:>12.2f} {first['maxrss_mb']:>9.1f} {traced['tracemalloc_peak_mb']:>19.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
