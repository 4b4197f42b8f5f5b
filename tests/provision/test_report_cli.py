"""``phonekit report --html OUT.html [REPORT.json]`` and ``phonekit check --html FILE``."""

from __future__ import annotations

import io
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from diagnostics import html
from diagnostics.report import CheckResult, Report, Status
from provision import report_cli
from provision.cli import main

PLOT = {"kind": "line", "title": "Microphone level over time", "x_label": "time (s)", "y_label": "level (dBFS)",
        "x_log": False, "series": [{"name": "RMS", "x": [0.0, 0.05], "y": [-60.0, -58.5]}],
        "hlines": [{"y": -34.0, "label": "speech level is good"}], "vlines": [], "y_range": [-90.0, 5.0]}


def report() -> Report:
    checks = (
        CheckResult("audio.mic_level", Status.WARN, "speech is quiet", {"rms_dbfs": -58.5}, "raise the gain",
                    plots={"mic_level": PLOT}),
        CheckResult("audio.noise", Status.PASS, "quiet: noise floor -60.0 dBFS", {"noise_dbfs": -60.0}),
    )
    return Report(checks, started_at=datetime(2026, 11, 27, 10, 0, tzinfo=UTC), host={"hostname": "ws-7"},
                  version="0.1.0")


@pytest.fixture
def report_json(tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report().to_dict()))
    return path


def test_report_file_to_html_0600(report_json: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ticket.html"
    assert main(["report", "--html", str(out), str(report_json)]) == 0
    assert capsys.readouterr() == ("", "")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    page = out.read_text()
    assert page == html.render_html(report())  # the JSON held everything the page needs, figures included
    assert "<title>Microphone level over time</title>" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "ticket.html"]


@pytest.mark.parametrize("source", [[], ["-"]])
def test_report_from_stdin(source: list[str], report_json: Path, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(report_json.read_text()))
    out = tmp_path / "out.html"
    assert main(["report", "--html", str(out), *source]) == 0
    assert "phonekit report: warn on ws-7" in out.read_text()


def test_an_existing_file_is_replaced_whole_and_made_0600(report_json: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.html"
    out.write_text("an older report")
    out.chmod(0o644)
    assert main(["report", "--html", str(out), str(report_json)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_text().startswith("<!doctype html>")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a JSON report: Expecting property name enclosed in double quotes at line 1 column 2"),
        ("[1, 2]", "not a phonekit report: expected a JSON object (got list)"),
        ("{}", "not a phonekit report: field 'checks' is missing"),
        (json.dumps({**report().to_dict(), "checks": [{"id": "Bad Id", "status": "pass", "summary": "x"}]}),
         "not a phonekit report: check id must look like 'group.name' (got 'Bad Id')"),
        (json.dumps({**report().to_dict(), "checks": [{**report().checks[0].to_dict(), "plots": {"x": {}}}]}),
         "not a phonekit report: audio.mic_level: plot 'x': key 'kind' is missing (got [])"),
    ],
)
def test_a_bad_report_is_one_line_naming_the_file_and_exit_two(
    content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "r.json"
    source.write_text(content)
    out = tmp_path / "out.html"
    assert main(["report", "--html", str(out), str(source)]) == 2
    assert capsys.readouterr().err == f"phonekit: error: {source}: {message}\n"
    assert not out.exists()


def test_bad_stdin_and_missing_files_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["report", "--html", str(tmp_path / "o.html")]) == 2
    assert capsys.readouterr().err == "phonekit: error: stdin: not a JSON report: Expecting value at line 1 column 1\n"
    missing = tmp_path / "nope.json"
    assert main(["report", "--html", str(tmp_path / "o.html"), str(missing)]) == 2
    assert capsys.readouterr().err == f"phonekit: error: {missing}: cannot read the report: No such file or directory\n"


def test_an_unwritable_destination_is_one_line_and_exit_two(report_json: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "no-such-folder" / "out.html"
    assert main(["report", "--html", str(out), str(report_json)]) == 2
    assert capsys.readouterr().err == (
        f"phonekit: error: {out}: cannot write the HTML report: No such file or directory\n"
    )


def test_html_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report"]) == 2
    assert "the following arguments are required: --html" in capsys.readouterr().err


def test_check_writes_html_next_to_its_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "check.html"
    code = main(["check", "sip", "--json", "--html", str(out)])  # no profile: every SIP check skips, offline
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text() == html.render_html(Report.from_dict(data))


def test_check_refuses_an_html_path_in_a_missing_folder_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "check.html"
    assert main(["check", "sip", "--json", "--html", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"phonekit: error: {out}: cannot write the HTML report there: "
                            f"folder {str(out.parent)!r} does not exist\n")


def test_write_html_is_exported_for_launch() -> None:
    assert report_cli.write_html is html.write_html
    assert "write_html" in report_cli.__all__ and "write_html" in html.__all__
