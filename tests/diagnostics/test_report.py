import json
import re
from datetime import UTC, datetime

import numpy as np
import pytest

from diagnostics.report import MAX_PLOT_POINTS, CheckResult, Report, Status, decimate, exit_code, make_plot, plot_series


def result(status: Status, check_id: str = "audio.mic_level") -> CheckResult:
    remedy = None if status is Status.PASS else "do something"
    return CheckResult(check_id, status, "found something", {"level_dbfs": -20.5}, remedy)


def test_verdict_is_the_worst_status() -> None:
    report = Report((result(Status.PASS), result(Status.WARN), result(Status.SKIP)))
    assert report.verdict is Status.WARN
    assert Report((result(Status.ERROR), result(Status.FAIL))).verdict is Status.FAIL
    assert Report(()).verdict is Status.PASS
    assert Report((result(Status.PASS), result(Status.SKIP))).verdict is Status.PASS
    assert Report((result(Status.SKIP), result(Status.SKIP))).verdict is Status.SKIP


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ((Status.PASS, Status.WARN, Status.SKIP), 0),
        ((Status.PASS, Status.FAIL), 1),
        ((Status.ERROR, Status.PASS), 3),
        ((Status.ERROR, Status.FAIL), 1),
    ],
)
def test_exit_codes(statuses: tuple[Status, ...], code: int) -> None:
    assert exit_code(statuses) == code


def test_json_form_round_trips() -> None:
    started = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
    report = Report((result(Status.PASS), result(Status.FAIL, "sip.register")), started_at=started)
    data = json.loads(json.dumps(report.to_dict()))
    assert list(data) == ["phonekit_version", "host", "started_at", "verdict", "checks"]
    assert data["started_at"] == "2026-11-27T10:00:00Z"
    assert data["verdict"] == "fail"
    assert list(data["checks"][0]) == ["id", "status", "summary", "measurements", "remedy", "duration_ms", "plots"]
    assert Report.from_dict(data) == report


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "micLevel"}, "check id must look like 'group.name' (got 'micLevel')"),
        ({"summary": "two\nlines"}, "summary must be one non-empty line"),
        ({"status": Status.WARN, "remedy": None}, "a 'warn' result needs a remedy (got None)"),
        ({"measurements": {"Level dBFS": 1}}, "measurement names are snake_case (got 'Level dBFS')"),
    ],
)
def test_invalid_results_are_refused(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"id": "audio.noise", "status": Status.PASS, "summary": "ok", "remedy": None}
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CheckResult(**fields)  # type: ignore[arg-type]


def line_plot(**changes: object) -> dict[str, object]:
    plot: dict[str, object] = {
        "kind": "line", "title": "level", "x_label": "time (s)", "y_label": "level (dBFS)", "x_log": False,
        "series": [{"name": "rms", "x": [0.0, 0.05, 0.1], "y": [-60.0, -20.0, -61.5]}],
        "hlines": [{"y": -34.0, "label": "speech level is good"}], "vlines": [], "y_range": [-90.0, 5.0],
    }
    plot.update(changes)
    return plot


def test_plots_survive_the_json_round_trip() -> None:
    check = CheckResult("audio.mic_level", Status.PASS, "fine", {"rms_dbfs": -20.0}, plots={"mic_level": line_plot()})
    data = json.loads(json.dumps(Report((check,)).to_dict()))
    assert data["checks"][0]["plots"] == {"mic_level": line_plot()}
    assert Report.from_dict(data).checks[0] == check
    # A report written before plots existed still reads, without any.
    del data["checks"][0]["plots"]
    assert Report.from_dict(data).checks[0].plots == {}


@pytest.mark.parametrize(
    ("name", "plot", "message"),
    [
        ("Mic Level", line_plot(), "plot names are snake_case (got 'Mic Level')"),
        ("level", line_plot(kind="pie"), "kind must be one of bars, impulse, line (got 'pie')"),
        ("level", line_plot(colour="red"), "unknown key (got 'colour')"),
        ("level", {k: v for k, v in line_plot().items() if k != "title"}, "key 'title' is missing"),
        ("level", line_plot(series=[{"name": "rms", "x": [1.0, 2.0], "y": [3.0]}]),
         "series 'rms' needs as many y as x values (got 2 x, 1 y)"),
        ("level", line_plot(series=[{"name": "rms", "x": [0.0] * 601, "y": [0.0] * 601}]),
         "series 'rms' has more than 600 points: decimate() it (got 601)"),
        ("level", line_plot(hlines=[{"value": 1.0, "label": "x"}]),
         "an entry of hlines is {'y': number, 'label': str}"),
        ("level", line_plot(y_range=[5.0, -90.0]), "y_range is null or [low, high] with low < high (got [5.0, -90.0])"),
    ],
)
def test_invalid_plots_are_refused(name: str, plot: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        CheckResult("audio.mic_level", Status.PASS, "fine", plots={name: plot})


def test_decimate_keeps_a_lone_spike_and_the_order_of_points() -> None:
    x = np.arange(48000) / 48000.0
    y = np.full(48000, -60.0)
    y[31234] = -3.0  # one sample: every-n-th decimation would step over it
    y[100] = -99.0
    xs, ys = decimate(x, y)
    assert len(xs) == len(ys) <= MAX_PLOT_POINTS
    assert xs == sorted(xs)
    assert max(ys) == -3.0 and xs[ys.index(-3.0)] == pytest.approx(31234 / 48000.0, rel=1e-4)
    assert min(ys) == -99.0


def test_decimate_drops_non_finite_points_and_rounds_to_five_digits() -> None:
    xs, ys = decimate([0.0, 1.0, 2.0, 3.0], [1.23456789, float("-inf"), float("nan"), -60.000001])
    assert (xs, ys) == ([0.0, 3.0], [1.2346, -60.0])
    with pytest.raises(ValueError, match=r"x and y must have the same length \(got 2 and 3\)"):
        decimate([1.0, 2.0], [1.0, 2.0, 3.0])


def test_make_plot_builds_the_schema_and_plot_series_decimates() -> None:
    series = plot_series("rms", np.linspace(0.0, 2.0, 5000), np.sin(np.linspace(0.0, 50.0, 5000)))
    plot = make_plot("line", "Level", "time (s)", "level (dBFS)", [series], hlines=[(-34.0, "good")],
                     vlines=[(0.5, "event")], y_range=(-90.0, 5.0))
    assert set(plot) == {"kind", "title", "x_label", "y_label", "x_log", "series", "hlines", "vlines", "y_range"}
    assert len(plot["series"][0]["x"]) <= MAX_PLOT_POINTS
    assert plot["hlines"] == [{"y": -34.0, "label": "good"}]
    assert plot["vlines"] == [{"x": 0.5, "label": "event"}]
    assert plot["y_range"] == [-90.0, 5.0]
    json.dumps(plot, allow_nan=False)  # JSON only: no NaN, no numpy types
