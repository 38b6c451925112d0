"""Validation rules: a parsed reading + context -> status and reasons. Pure.

Status precedence: `error` (nothing could be read) > `flagged` (a human should look) > `accepted`.
An accepted row may still carry informational reasons (e.g. a register rollover).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from meterread.parse import ParsedReading

ACCEPTED, FLAGGED, ERROR = "accepted", "flagged", "error"
STATUSES = (ACCEPTED, FLAGGED, ERROR)


@dataclass(frozen=True)
class MeterProfile:
    """What is known about one meter's register (from the optional meters table)."""

    digits: int | None = None
    decimals: int | None = None
    max_rate_per_day: Decimal | None = None
    meter_type: str | None = None


@dataclass(frozen=True)
class PriorReading:
    """An earlier accepted reading of the same meter."""

    value: Decimal
    captured_at: datetime


@dataclass(frozen=True)
class Verdict:
    status: str
    reasons: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Rules:
    """Run-wide thresholds."""

    min_confidence: float = 0.5


def check_format(parsed: ParsedReading, profile: MeterProfile | None) -> list[str]:
    """Problems with the reading's shape: unparsable, negative, wrong digit counts."""
    if parsed.value is None:
        return [f"unparsable reading: {parsed.error}"]
    problems = []
    if parsed.value < 0:
        problems.append("negative reading")
    if profile and profile.digits is not None and parsed.integer_digits != profile.digits:
        problems.append(f"expected {profile.digits} integer digits, read {parsed.integer_digits}")
    if profile and profile.decimals is not None and parsed.decimal_digits != profile.decimals:
        problems.append(f"expected {profile.decimals} decimals, read {parsed.decimal_digits}")
    return problems


def _elapsed_days(earlier: datetime, later: datetime) -> Decimal:
    return Decimal(str(max((later - earlier).total_seconds(), 0.0) / 86400.0))


def check_history(
    value: Decimal,
    captured_at: datetime | None,
    previous: PriorReading | None,
    profile: MeterProfile | None,
) -> tuple[list[str], list[str]]:
    """Compare with the meter's previous accepted reading -> (problems, notes).

    A decrease is a rollover (note) when the register width is known and the wrapped consumption fits the
    max rate; otherwise it is flagged as a reset or meter replacement, never accepted silently.
    """
    if previous is None or captured_at is None:
        return [], []
    if captured_at < previous.captured_at:
        return [f"captured before the previous accepted reading ({previous.captured_at.isoformat()})"], []
    days = _elapsed_days(previous.captured_at, captured_at)
    max_rate = profile.max_rate_per_day if profile else None
    if value >= previous.value:
        used = value - previous.value
        if max_rate is not None and used > max_rate * max(days, Decimal(1) / 24):
            return [f"consumption {used} exceeds max rate {max_rate}/day over {days:.2f} days"], []
        return [], []
    digits = profile.digits if profile else None
    if digits is not None and max_rate is not None:
        wrapped = value + Decimal(10) ** digits - previous.value
        if wrapped <= max_rate * max(days, Decimal(1) / 24):
            return [], [f"register rollover from {previous.value} to {value}"]
    return [f"reading decreased from {previous.value} to {value} (reset or meter replaced?)"], []


def validate_reading(
    parsed: ParsedReading,
    confidence: float | None,
    captured_at: datetime | None,
    previous: PriorReading | None,
    profile: MeterProfile | None,
    rules: Rules,
) -> Verdict:
    """All rules for one reading. Never raises."""
    problems = check_format(parsed, profile)
    if parsed.value is None:
        return Verdict(FLAGGED, tuple(problems))
    if confidence is None or confidence < rules.min_confidence:
        shown = "none" if confidence is None else f"{confidence:.3f}"
        problems.append(f"confidence {shown} below {rules.min_confidence}")
    history_problems, notes = check_history(parsed.value, captured_at, previous, profile)
    problems += history_problems
    return Verdict(FLAGGED if problems else ACCEPTED, tuple(problems + notes))
