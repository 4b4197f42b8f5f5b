import logging

import pytest

from diagnostics.checks import CheckContext, CheckSpec, all_checks, run_checks, select
from diagnostics.errors import MeasurementError
from diagnostics.report import CheckResult, Status


def _cannot_measure(ctx: CheckContext) -> CheckResult:
    raise MeasurementError("no capture device 'USB'", remedy="plug the headset in")


def _crashes(ctx: CheckContext) -> CheckResult:
    raise ZeroDivisionError("division by zero")


def _passes(ctx: CheckContext) -> CheckResult:
    return CheckResult("audio.noise", Status.PASS, "quiet")


def test_runner_turns_could_not_measure_into_an_error_verdict(caplog: pytest.LogCaptureFixture) -> None:
    specs = (
        CheckSpec("audio.devices", "devices", _cannot_measure),
        CheckSpec("audio.speaker", "speaker", _crashes),
        CheckSpec("audio.noise", "noise", _passes),
    )
    with caplog.at_level(logging.ERROR):
        report = run_checks(specs, CheckContext())
    first, second, third = report.checks
    assert (first.status, first.summary, first.remedy) == (
        Status.ERROR,
        "could not measure: no capture device 'USB'",
        "plug the headset in",
    )
    assert second.status is Status.ERROR
    assert second.summary == "internal error: ZeroDivisionError: division by zero"
    assert "check audio.speaker crashed" in caplog.text
    assert third.status is Status.PASS
    assert all(c.duration_ms >= 0 for c in report.checks)
    assert report.started_at <= report.started_at.now(report.started_at.tzinfo)


def test_check_ids_are_unique_and_grouped() -> None:
    ids = [spec.id for spec in all_checks()]
    assert len(ids) == len(set(ids))
    assert {spec.id for spec in select(["network"])} == {i for i in ids if i.startswith("network.")}
    with pytest.raises(ValueError, match="unknown check group 'video'"):
        select(["video"])
