"""Validation rules: a parsed reading + context -> status and reasons. Pure.

Status precedence: `error` (nothing could be read) > `flagged` (a human should look) > `accepted`.
An accepted row may still carry informational reasons (e.g. a register rollover).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from meterread.models.patterns import register_pattern_text
from meterread.parse import ParsedReading

ACCEPTED, FLAGGED, ERROR = "accepted", "flagged", "error"
STATUSES = (ACCEPTED, FLAGGED, ERROR)
MIN_DAYS = Decimal(1) / 24  # rates over shorter gaps are judged as if an hour had passed
MAX_REGISTER_DIGITS = 18  # the widest register the output's reading column holds (decimal128(24, 6))


@dataclass(frozen=True)
class MeterProfile:
    """What is known about one meter's register (from the optional meters table)."""

    digits: int | None = None
    decimals: int | None = None
    max_rate_per_day: Decimal | None = None
    meter_type: str | None = None

    def reading_pattern(self) -> str | None:
        """The register's shape as a reading pattern (`6.1`, or `6` without decimals) when both counts are known,
        else None: the reader is then constrained to it, so the point lands where this register has it."""
        if self.digits is None or self.decimals is None:
            return None
        return register_pattern_text(self.digits, self.decimals)


@dataclass(frozen=True)
class PriorReading:
    """An earlier accepted reading of the same meter."""

    value: Decimal
    captured_at: datetime


@dataclass(frozen=True)
class Verdict:
    """`contradicts`: an earlier accepted reading this (accepted) one shows to be a misread jump; it must no longer
    serve as the meter's reference."""

    status: str
    reasons: tuple[str, ...] = field(default_factory=tuple)
    contradicts: PriorReading | None = None


@dataclass(frozen=True)
class Rules:
    """Run-wide thresholds. Capture times before `earliest_capture` or more than `future_slack` after processing
    are implausible (a reset camera clock, a typo in a key)."""

    min_confidence: float = 0.5
    earliest_capture: datetime = datetime(2000, 1, 1, tzinfo=timezone.utc)
    future_slack: timedelta = timedelta(days=1)


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


def _utc(moment: datetime) -> datetime:
    """Aware datetimes as they are; naive ones taken as UTC (so comparisons never raise)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def check_capture_time(captured_at: datetime | None, processed_at: datetime | None, rules: Rules) -> list[str]:
    """Problems with when the photo was taken: before `rules.earliest_capture`, or later than `processed_at` +
    `rules.future_slack`. An unknown capture or processing time passes."""
    if captured_at is None:
        return []
    captured_at = _utc(captured_at)
    if captured_at < _utc(rules.earliest_capture):
        return [f"implausible capture time {captured_at.isoformat()}: before {rules.earliest_capture.date()}"]
    if processed_at is not None and captured_at > _utc(processed_at) + rules.future_slack:
        return [
            f"implausible capture time {captured_at.isoformat()}: in the future (processed {processed_at:%Y-%m-%d})"
        ]
    return []


def _elapsed_days(earlier: datetime, later: datetime) -> Decimal:
    return Decimal(str(max((_utc(later) - _utc(earlier)).total_seconds(), 0.0) / 86400.0))


def _allowed_use(max_rate: Decimal, days: Decimal) -> Decimal:
    return max_rate * max(days, MIN_DAYS)


def is_rollover(value: Decimal, previous: PriorReading, days: Decimal, profile: MeterProfile | None) -> bool:
    """Whether a decrease from `previous` to `value` over `days` is the register wrapping past all nines.

    Needs the register width and max rate; the wrapped usage must fit the max rate over the gap, and the gap must
    be too short for the register to turn a whole time at max rate (over a longer gap a rollover cannot be told
    from a reset or replacement)."""
    if not profile or profile.digits is None or profile.max_rate_per_day is None:
        return False
    if not 0 < profile.digits <= MAX_REGISTER_DIGITS:  # a table typo must not raise decimal.Overflow here
        return False
    span = Decimal(10) ** profile.digits
    allowed = _allowed_use(profile.max_rate_per_day, days)
    return allowed < span and value + span - previous.value <= allowed


def is_contradicted_jump(
    value: Decimal, captured_at: datetime, previous: PriorReading, earlier: PriorReading, max_rate: Decimal | None
) -> bool:
    """Whether `previous` looks like a misread jump that this lower reading contradicts: `value` continues from
    `earlier` (the accepted reading before `previous`), lies closer to it than to `previous`, and the usage since
    `earlier` fits the max rate when one is known."""
    if value < earlier.value or value - earlier.value >= previous.value - value:
        return False
    return max_rate is None or value - earlier.value <= _allowed_use(
        max_rate, _elapsed_days(earlier.captured_at, captured_at)
    )


def check_decrease(
    value: Decimal,
    captured_at: datetime,
    previous: PriorReading,
    earlier: PriorReading | None,
    profile: MeterProfile | None,
) -> tuple[list[str], list[str], PriorReading | None]:
    """A reading below the previous accepted one -> (problems, notes, contradicted reading).

    A rollover (`is_rollover`) is a note; so is a misread jump shown up by this reading (`is_contradicted_jump`),
    which is then returned so it stops being the reference. Anything else is flagged as a reset or replacement."""
    days = _elapsed_days(previous.captured_at, captured_at)
    if is_rollover(value, previous, days, profile):
        return [], [f"register rollover from {previous.value} to {value}"], None
    max_rate = profile.max_rate_per_day if profile else None
    if earlier is not None and is_contradicted_jump(value, captured_at, previous, earlier, max_rate):
        note = (
            f"previous accepted reading {previous.value} ({previous.captured_at.isoformat()}) looks like a misread: "
            f"this reading continues from {earlier.value} ({earlier.captured_at.isoformat()})"
        )
        return [], [note], previous
    return (
        [f"reading decreased from {previous.value} to {value} over {days:.2f} days (reset or meter replaced?)"],
        [],
        None,
    )


def check_history(
    value: Decimal,
    captured_at: datetime | None,
    previous: PriorReading | None,
    profile: MeterProfile | None,
    earlier: PriorReading | None = None,
) -> tuple[list[str], list[str], PriorReading | None]:
    """Compare with the meter's previous accepted reading (and the one before it, `earlier`) -> (problems, notes,
    earlier reading this one contradicts).

    Out of order, or a different reading at the same instant, is flagged; an increase must fit the max rate; a
    decrease is judged by `check_decrease`, never accepted silently."""
    if previous is None or captured_at is None:
        return [], [], None
    if _utc(captured_at) < _utc(previous.captured_at):
        return [f"captured before the previous accepted reading ({previous.captured_at.isoformat()})"], [], None
    if _utc(captured_at) == _utc(previous.captured_at) and value != previous.value:
        return [f"conflicts with another accepted reading at the same instant: {previous.value}"], [], None
    if value < previous.value:
        return check_decrease(value, captured_at, previous, earlier, profile)
    max_rate = profile.max_rate_per_day if profile else None
    days = _elapsed_days(previous.captured_at, captured_at)
    used = value - previous.value
    if max_rate is not None and used > _allowed_use(max_rate, days):
        return [f"consumption {used} exceeds max rate {max_rate}/day over {days:.2f} days"], [], None
    return [], [], None


def check_following(
    value: Decimal, captured_at: datetime | None, following: PriorReading | None, profile: MeterProfile | None
) -> list[str]:
    """Problems of a late photo with the meter's next accepted reading (`following`, captured after it).

    Above that reading (unless the register rolled over in between, `is_rollover`), or more use up to it than the
    max rate allows: this reading or that one is a misread. Only this reading is flagged; the accepted one stays."""
    if following is None or captured_at is None or _utc(following.captured_at) <= _utc(captured_at):
        return []
    days = _elapsed_days(captured_at, following.captured_at)
    when = following.captured_at.isoformat()
    if following.value < value:
        if is_rollover(following.value, PriorReading(value, captured_at), days, profile):
            return []
        return [
            f"reading {value} exceeds the later accepted reading {following.value} ({when}): this or that reading "
            "is a misread"
        ]
    max_rate = profile.max_rate_per_day if profile else None
    used = following.value - value
    if max_rate is not None and used > _allowed_use(max_rate, days):
        return [
            f"later accepted reading {following.value} ({when}) is inconsistent with this one: consumption {used} "
            f"exceeds max rate {max_rate}/day over {days:.2f} days"
        ]
    return []


def validate_reading(
    parsed: ParsedReading,
    confidence: float | None,
    captured_at: datetime | None,
    previous: PriorReading | None,
    profile: MeterProfile | None,
    rules: Rules,
    earlier: PriorReading | None = None,
    processed_at: datetime | None = None,
    following: PriorReading | None = None,
) -> Verdict:
    """All rules for one reading. Never raises.

    `earlier`: the accepted reading before `previous` (lets one misread jump be recognised); `processed_at`: when
    the photo was read (bounds plausible capture times); `following`: the accepted reading after this one, known
    when the photo arrives late (`check_following`). An implausible capture time skips the history rules."""
    problems = check_format(parsed, profile)
    if parsed.value is None:
        return Verdict(FLAGGED, tuple(problems))
    if confidence is None or confidence < rules.min_confidence:
        shown = "none" if confidence is None else f"{confidence:.3f}"
        problems.append(f"confidence {shown} below {rules.min_confidence}")
    time_problems = check_capture_time(captured_at, processed_at, rules)
    if time_problems:
        return Verdict(FLAGGED, tuple(problems + time_problems))
    history_problems, notes, contradicted = check_history(parsed.value, captured_at, previous, profile, earlier)
    problems += history_problems + check_following(parsed.value, captured_at, following, profile)
    if problems:
        return Verdict(FLAGGED, tuple(problems + notes))
    return Verdict(ACCEPTED, tuple(notes), contradicted)
