"""The table of checks and the runner that times them and turns "could not measure" into verdicts.

Check ids are stable: README lists each with its measurements. A check is a
function of a :class:`CheckContext` returning a :class:`~diagnostics.report.CheckResult`;
the runner fills in ``duration_ms``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from diagnostics.errors import MeasurementError, UsageError
from diagnostics.report import CheckResult, Report, Status

__all__ = ["GROUPS", "CheckContext", "CheckSpec", "all_checks", "run_checks", "select"]

log = logging.getLogger(__name__)

GROUPS = ("audio", "network", "sip")


@dataclass(frozen=True)
class CheckContext:
    """What the user asked for, shared by every check of one run."""

    input_device: str | None = None
    """Capture device by index or name substring; None means the system default."""
    output_device: str | None = None
    profile: Path | None = None
    """Account profile (TOML) for SIP checks."""
    interactive: bool = True
    save_wav: Path | None = None
    say: Callable[[str], None] = field(default=lambda text: None, compare=False)
    """Tell the person what to do now (interactive mode)."""
    ask: Callable[[str], bool] = field(default=lambda question: False, compare=False)
    """Ask the person a yes/no question (interactive mode)."""
    cache: dict[str, object] = field(default_factory=dict, compare=False)
    """Measurements shared by several checks of one run (one audio session serves five checks)."""


CheckFn = Callable[[CheckContext], CheckResult]


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    run: CheckFn

    @property
    def group(self) -> str:
        return self.id.split(".", 1)[0]


def all_checks() -> tuple[CheckSpec, ...]:
    """Every check phonekit has, in the order a person would want them run."""
    # Imported here so that importing the report model does not load device or network probes.
    from diagnostics.audio.checks import check_clipping, check_echo, check_mic_level, check_noise, check_speaker
    from diagnostics.audio.devices import check_devices
    from diagnostics.network.interfaces import check_interfaces, check_route
    from diagnostics.network.media import check_media
    from diagnostics.network.nat import check_nat
    from diagnostics.sip.alg import check_sip_alg
    from diagnostics.sip.dns import check_dns
    from diagnostics.sip.options import check_options
    from diagnostics.sip.register import check_register

    return (
        CheckSpec("audio.devices", "Audio devices", check_devices),
        CheckSpec("audio.speaker", "Speaker", check_speaker),
        CheckSpec("audio.mic_level", "Microphone level", check_mic_level),
        CheckSpec("audio.noise", "Background noise", check_noise),
        CheckSpec("audio.clipping", "Clipping", check_clipping),
        CheckSpec("audio.echo", "Acoustic echo", check_echo),
        CheckSpec("network.interfaces", "Network interfaces", check_interfaces),
        CheckSpec("network.route", "Default route", check_route),
        CheckSpec("network.nat", "NAT behaviour", check_nat),
        CheckSpec("sip.dns", "SIP server in DNS", check_dns),
        CheckSpec("sip.options", "SIP server reachable", check_options),
        CheckSpec("sip.register", "Registration", check_register),
        # After sip.register: it reuses that registration's evidence (Via received/rport, stored Contact).
        CheckSpec("network.sip_alg", "SIP ALG", check_sip_alg),
        CheckSpec("network.media", "Media path (RTP) and call quality", check_media),
    )


def select(groups: Iterable[str]) -> tuple[CheckSpec, ...]:
    wanted = set(groups)
    unknown = wanted - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown check group {sorted(unknown)[0]!r} (choose from {', '.join(GROUPS)})")
    return tuple(spec for spec in all_checks() if spec.group in wanted)


ProgressFn = Callable[[CheckSpec], AbstractContextManager[object]]


def _no_progress(spec: CheckSpec) -> AbstractContextManager[object]:
    return nullcontext()


def run_one(spec: CheckSpec, ctx: CheckContext) -> CheckResult:
    """Run one check; "could not measure" and bugs become ``error`` verdicts, never a lost report."""
    start = time.perf_counter()
    try:
        result = spec.run(ctx)
    except UsageError:
        raise  # the user's input is wrong for every check alike: exit 2 with the message
    except MeasurementError as exc:
        result = CheckResult(spec.id, Status.ERROR, f"could not measure: {exc}", remedy=exc.remedy)
    except Exception as exc:  # a bug in one check must not cost the user the other verdicts
        log.exception("check %s crashed", spec.id)
        result = CheckResult(
            spec.id,
            Status.ERROR,
            f"internal error: {type(exc).__name__}: {exc}",
            remedy="this is a phonekit bug: run again with -v and attach the log to a bug report",
        )
    if result.id != spec.id:
        raise AssertionError(f"check {spec.id} returned a result for {result.id}")
    return replace(result, duration_ms=(time.perf_counter() - start) * 1000.0)


def run_checks(specs: Sequence[CheckSpec], ctx: CheckContext, progress: ProgressFn = _no_progress) -> Report:
    def results() -> Iterator[CheckResult]:
        for spec in specs:
            with progress(spec):
                result = run_one(spec, ctx)
            log.debug("%s: %s in %.1f ms", spec.id, result.status.value, result.duration_ms)
            yield result

    started_at = datetime.now(UTC)
    return Report(checks=tuple(results()), started_at=started_at)
