import json
from datetime import UTC, datetime

import pytest

from diagnostics.report import CheckResult, Report, Status, exit_code


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
    assert list(data["checks"][0]) == ["id", "status", "summary", "measurements", "remedy", "duration_ms"]
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
