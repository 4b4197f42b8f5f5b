"""The HTML report: one self-contained file a person reads at a glance, that fetches nothing and leaks nothing.

Synthetic reports check what lands where; a report of the real checks on the ``laptop-echo``
PulseAudio scene checks size, the JSON round trip, and (in headless Chromium) that the page
renders offline without console errors.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from diagnostics.html import HTML_MODE, REDACTED, render_html, scrub, write_html
from diagnostics.report import CheckResult, Report, Status
from diagnostics.secret import Secret
from tests.testbed.pulse import PulseScene

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build"
STARTED = datetime(2026, 11, 27, 10, 36, 15, tzinfo=UTC)
HOST = {"hostname": "ws-042", "user": "alice", "os": "Linux", "os_release": "6.1.0", "machine": "x86_64",
        "python": "3.11.7"}


def figure(kind: str, title: str) -> dict[str, Any]:
    return {"kind": kind, "title": title, "x_label": "x", "y_label": "y", "x_log": False,
            "series": [{"name": "s", "x": [0.0, 1.0, 2.0], "y": [-60.0, -20.0, -40.0]}],
            "hlines": [{"y": -34.0, "label": "threshold"}], "vlines": [], "y_range": None}


def synthetic_report(*extra: CheckResult) -> Report:
    devices = {
        "input_count": 1, "output_count": 1,
        "default_input": "Jabra Evolve2 40 Mono", "default_output": "Jabra Evolve2 40 Analog Stereo",
        "classes": [{"name": "Jabra Evolve2 40 Analog Stereo", "direction": "output", "class": "usb-headset"},
                    {"name": "Jabra Evolve2 40 Mono", "direction": "input", "class": "usb-headset"}],
        "devices": [{"index": 0, "name": "pulse", "hostapi": "ALSA", "max_input_channels": 32,
                     "max_output_channels": 32, "default_samplerate_hz": 44100.0, "input_rates_hz": [8000, 48000],
                     "output_rates_hz": [8000, 48000], "is_default_input": True, "is_default_output": False}],
        "system_devices": [
            {"name": "alsa_output.usb-Jabra", "description": "Jabra Evolve2 40 Analog Stereo", "direction": "output",
             "is_monitor": False, "is_default": True, "properties": {"device.bus": "usb"}, "muted": False},
            {"name": "alsa_input.usb-Jabra", "description": "Jabra Evolve2 40 Mono", "direction": "input",
             "is_monitor": False, "is_default": True, "properties": {"device.bus": "usb"}, "muted": True},
        ],
    }
    interfaces = {"usable_count": 1, "interfaces": [
        {"name": "enp0s31f6", "class": "ethernet", "is_up": True, "mtu": 1500, "speed_mbps": 1000,
         "ipv4": ["192.0.2.10"], "ipv6": [], "is_loopback": False},
        {"name": "wg0", "class": "vpn", "is_up": True, "mtu": 1420, "speed_mbps": 0, "ipv4": ["10.8.0.2"],
         "ipv6": [], "is_loopback": False},
    ]}
    checks = (
        CheckResult("audio.devices", Status.PASS, "1 input(s), 1 output(s)", devices),
        CheckResult("audio.mic_level", Status.WARN, "speech is quiet: active level -40.1 dBFS", {"rms_dbfs": -45.0},
                    "raise the microphone input gain by about 18 dB", plots={"mic_level": figure("line", "Level")}),
        CheckResult("audio.echo", Status.FAIL, "strong echo", {"delay_ms": 101.0}, "use a headset",
                    plots={"echo_impulse_response": figure("impulse", "Echo path")}),
        CheckResult("network.interfaces", Status.PASS, "2 interface(s) up", interfaces),
        CheckResult("network.route", Status.PASS, "calls leave through wg0", {"interface": "wg0"}),
        CheckResult("network.media", Status.SKIP, "not checked: no account profile given", {},
                    "pass --profile FILE", plots={"rtp_over_time": figure("bars", "RTP over time")}),
        *extra,
    )
    return Report(checks, started_at=STARTED, host=HOST, version="0.1.0")


class Elements(HTMLParser):
    """Every start tag with its attributes and the text inside each table row, as a browser parses them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[list[str]] = []
        self._cells: list[str] | None = None
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self._cells = []
            self.rows.append(self._cells)
        elif tag in ("td", "th") and self._cells is not None:
            self._cells.append("")
            self._in_cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False
        elif tag == "tr":
            self._cells = None

    def handle_data(self, data: str) -> None:
        if self._cells and self._in_cell:
            self._cells[-1] += data.strip()


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    return parser


def external_references(html: str) -> list[str]:
    """Anything that would make a browser fetch: a scheme, src, non-anchor hrefs, CSS imports and urls."""
    found = re.findall(r"(?i)https?:|//[a-z0-9]|@import|url\s*\(|<link|<script|<iframe|<img|<object|<embed|\ssrc\s*=",
                       html)
    found += [href for href in re.findall(r'(?i)href\s*=\s*"([^"]*)"', html) if not href.startswith("#")]
    return found


# -- synthetic reports -----------------------------------------------------------------------------


def test_header_verdict_table_and_what_to_do_first() -> None:
    html = render_html(synthetic_report())
    page = parse(html)
    assert "<title>phonekit report: fail on ws-042</title>" in html
    assert '<div class="banner fail">' in html
    assert "2026-11-27 10:36:15 UTC · phonekit 0.1.0 · user alice" in html
    verdicts = [r for r in page.rows if r and r[0] in {"audio.devices", "audio.mic_level", "audio.echo"}]
    assert verdicts[:3] == [
        ["audio.devices", "pass", "1 input(s), 1 output(s)", ""],
        ["audio.mic_level", "warn", "speech is quiet: active level -40.1 dBFS",
         "raise the microphone input gain by about 18 dB"],
        ["audio.echo", "fail", "strong echo", "use a headset"],
    ]
    # The remedies to act on come first, worst first; skipped checks are not on that list.
    todo = html[html.index('<ol class="todo">') : html.index("</ol>")]
    assert todo.index("use a headset") < todo.index("raise the microphone input gain")
    assert "pass --profile FILE" not in todo
    anchors = {a.get("id") for _, a in page.tags if a.get("id")}
    links = {a["href"][1:] for tag, a in page.tags if tag == "a" and a.get("href")}
    assert links <= anchors and "check-audio-echo" in anchors


def test_each_plot_kind_becomes_an_inline_svg_in_its_check() -> None:
    html = render_html(synthetic_report())
    assert html.count("<svg ") == 3
    for anchor, title, mark in [("check-audio-mic-level", "Level", "<polyline"),
                                ("check-audio-echo", "Echo path", "<path d=\"M"),
                                ("check-network-media", "RTP over time", "<rect x=")]:
        section = html[html.index(f'id="{anchor}"') :]
        section = section[: section.index("</section>")]
        assert f"<title>{title}</title>" in section and mark in section


def test_device_and_interface_tables_come_from_the_measurements() -> None:
    rows = parse(render_html(synthetic_report())).rows
    assert ["Jabra Evolve2 40 Mono", "input", "usb-headset", "yes", "yes", "usb", "—", "—",
            "alsa_input.usb-Jabra"] in rows
    assert ["0", "pulse", "ALSA", "32", "32", "8000, 48000", "8000, 48000", "input"] in rows
    assert ["enp0s31f6", "ethernet", "yes", "1500", "1000", "192.0.2.10", "—", "no"] in rows
    assert ["wg0", "vpn", "yes", "1420", "—", "10.8.0.2", "—", "yes"] in rows


def test_raw_measurements_fold_away_per_check() -> None:
    html = render_html(synthetic_report())
    assert html.count("<details>") == 6
    assert "&#34;delay_ms&#34;: 101.0" in html or "&quot;delay_ms&quot;: 101.0" in html


def test_markup_in_any_text_is_inert() -> None:
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    check = CheckResult("sip.options", Status.FAIL, f"server says {evil}", {"server": evil}, f"ask {evil}",
                        plots={"bad": {**figure("line", evil), "x_label": evil}})
    html = render_html(synthetic_report(check))
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "server says &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "onerror" not in [name for _, attrs in parse(html).tags for name in attrs]


def test_the_page_refers_to_nothing_outside_itself() -> None:
    html = render_html(synthetic_report())
    assert external_references(html) == []
    assert "default-src 'none'" in html  # and the browser would refuse a fetch anyway


def test_values_under_secret_keys_and_secret_objects_never_show() -> None:
    password = "Tr0ub4dor&3-horse"
    measurements = {
        "password": password, "auth_password": password, "api_token": "tok-1234567",
        "nested": [{"client_secret": {"value": "s3cr3t-value"}}, {"Auth_Pass": "pass-9876"}],
        "profile": Secret("hidden-by-type"), "password_env": None, "user": "1001",
    }
    check = CheckResult("sip.register", Status.FAIL, f"rejected the password {password}", measurements,
                        f"check that {password} is right")
    html = render_html(synthetic_report(check))
    for secret in (password, "tok-1234567", "s3cr3t-value", "pass-9876", "hidden-by-type", "Tr0ub4dor"):
        assert secret not in html
    assert f"rejected the password {REDACTED}" in html
    assert "&#34;user&#34;: &#34;1001&#34;" in html or "&quot;user&quot;: &quot;1001&quot;" in html


def test_scrub_cuts_secrets_out_of_every_text_but_keeps_the_rest() -> None:
    data = {"checks": [{"summary": "pw is hunter22 (hunter22)", "measurements": {"token": "hunter22", "n": 7,
                                                                                  "pin_secret": 12}}]}
    assert scrub(data) == {"checks": [{"summary": f"pw is {REDACTED} ({REDACTED})",
                                       "measurements": {"token": REDACTED, "n": 7, "pin_secret": REDACTED}}]}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.timeout(60)
def test_a_real_run_with_a_known_profile_password_never_shows_it(tmp_path: Path) -> None:
    password = "K7q!x2-not-in-any-report"
    (tmp_path / "alice.secret").write_text(password + "\n")
    (tmp_path / "alice.secret").chmod(0o600)
    profile = tmp_path / "alice.toml"
    profile.write_text(f'[account]\nuser = "1001"\ndomain = "127.0.0.1:{free_udp_port()}"\n'
                       'password_file = "alice.secret"\ntransport = "udp"\n')
    out = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "provision.cli", "check", "sip", "--profile", str(profile), "--json",
                           "--html", str(out)], capture_output=True, text=True, timeout=50, check=False, cwd=REPO)
    report = json.loads(done.stdout)
    assert {c["id"]: c["status"] for c in report["checks"]}["sip.register"] == "fail"  # it did use the password
    html = out.read_text()
    assert "sip.register" in html
    assert password not in html and password not in done.stdout and password not in done.stderr


def test_write_html_is_atomic_and_0600(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    target.chmod(0o644)
    write_html(synthetic_report(), target)
    assert stat.S_IMODE(target.stat().st_mode) == HTML_MODE == 0o600
    assert target.read_text().startswith("<!doctype html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary file left
    with pytest.raises(FileNotFoundError):
        write_html(synthetic_report(), tmp_path / "missing" / "report.html")


# -- a report of the real checks -------------------------------------------------------------------


@dataclass(frozen=True)
class RealRun:
    json: dict[str, Any]
    html_path: Path

    @property
    def html(self) -> str:
        return self.html_path.read_text()


@pytest.fixture(scope="module")
def laptop_echo_report(laptop_echo_scene: PulseScene, tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    """``phonekit check --non-interactive --json --html`` on the laptop-echo scene: every audio figure, echo too."""
    out = tmp_path_factory.mktemp("html") / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "provision.cli", "check", "--non-interactive", "--json", "--html", str(out)],
        env=laptop_echo_scene.env, capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )
    assert out.exists(), f"no HTML written (exit {done.returncode}): {done.stderr[-2000:]}"
    return RealRun(json.loads(done.stdout), out)


@pytest.mark.timeout(90)
def test_a_full_report_has_every_audio_figure_and_stays_small(laptop_echo_report: RealRun) -> None:
    plots = {c["id"]: c["plots"] for c in laptop_echo_report.json["checks"] if c["plots"]}
    assert {check: list(p) for check, p in plots.items()} == {
        "audio.mic_level": ["mic_level"], "audio.noise": ["spectrum"], "audio.echo": ["echo_impulse_response"],
    }
    echo = next(c for c in laptop_echo_report.json["checks"] if c["id"] == "audio.echo")
    delay_line = echo["plots"]["echo_impulse_response"]["vlines"][0]["x"]  # plots keep 5 significant digits
    assert delay_line == pytest.approx(echo["measurements"]["delay_ms"], abs=0.01)
    html = laptop_echo_report.html
    assert html.count("<svg ") == 3
    size = len(html.encode())
    assert size <= 1_000_000, f"{size} bytes"
    assert external_references(html) == []
    assert stat.S_IMODE(laptop_echo_report.html_path.stat().st_mode) == 0o600


@pytest.mark.timeout(90)
def test_the_json_report_alone_draws_the_same_page(laptop_echo_report: RealRun) -> None:
    again = Report.from_dict(json.loads(json.dumps(laptop_echo_report.json)))
    assert again.to_dict() == laptop_echo_report.json
    assert render_html(again) == laptop_echo_report.html


# -- in a browser ----------------------------------------------------------------------------------


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Headless Chromium, offline, with console messages on stderr (``CONSOLE`` lines)."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: 'apt-get install --no-install-recommends chromium' "
                    "(bootstrap.sh installs it)", pytrace=False)
    return subprocess.run(
        [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=1",
         f"--user-data-dir={profile}", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", *args],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "LANG": "C.UTF-8"},
    )


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture
def browser_profile(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "chromium"


@pytest.mark.timeout(120)
def test_chromium_renders_the_page_offline_without_console_errors(
    laptop_echo_report: RealRun, browser_profile: Path
) -> None:
    url = laptop_echo_report.html_path.as_uri()
    dom = chromium("--dump-dom", url, profile=browser_profile)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []
    page = parse(dom.stdout)
    assert sum(1 for tag, _ in page.tags if tag == "svg") == 3
    assert sum(1 for tag, _ in page.tags if tag in ("polyline", "path")) >= 3
    ids = [c["id"] for c in laptop_echo_report.json["checks"]]
    verdict_rows = [r[0] for r in page.rows if r and r[0] in ids]
    assert verdict_rows[: len(ids)] == ids
    assert any(r and r[0] == "Built-in Audio Analog Mono" for r in page.rows)  # the device table

    BUILD.mkdir(exist_ok=True)
    png = BUILD / "report.png"
    png.unlink(missing_ok=True)
    shot = chromium(f"--screenshot={png}", "--window-size=1280,2400", url, profile=browser_profile)
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    assert console_messages(shot.stderr) == []
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size == (1280, 2400)
        gray = np.asarray(image.convert("L"), dtype=np.float64)
    assert gray.std() > 20.0  # text, tables and coloured badges; a blank page is one flat value
    assert np.mean(gray < 128) > 0.01
