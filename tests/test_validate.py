from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from meterread.history import MeterHistory
from meterread.parse import parse_reading
from meterread.validate import ACCEPTED, FLAGGED, MeterProfile, PriorReading, Rules, validate_reading

UTC = timezone.utc
T0 = datetime(2026, 1, 1, tzinfo=UTC)
RULES = Rules(min_confidence=0.5)
FIVE_DIGITS = MeterProfile(digits=5, decimals=1, max_rate_per_day=Decimal("100"))
FAST_FIVE_DIGITS = MeterProfile(digits=5, decimals=1, max_rate_per_day=Decimal("1000"))  # turns over in 100 days
NOW = T0 + timedelta(days=2)


def verdict(
    text, confidence=0.9, captured_at=T0 + timedelta(days=1), previous=None, profile=None, earlier=None, processed=NOW
):
    return validate_reading(parse_reading(text), confidence, captured_at, previous, profile, RULES, earlier, processed)


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


@pytest.mark.parametrize(
    ("case", "kwargs", "status", "reason_part"),
    [
        ("plain", {"text": "01234.5"}, ACCEPTED, None),
        ("unparsable", {"text": "abc"}, FLAGGED, "unparsable"),
        ("low confidence", {"text": "1.0", "confidence": 0.2}, FLAGGED, "confidence 0.200 below 0.5"),
        ("no confidence", {"text": "1.0", "confidence": None}, FLAGGED, "confidence none"),
        ("digits", {"text": "1234.5", "profile": FIVE_DIGITS}, FLAGGED, "expected 5 integer digits"),
        ("decimals", {"text": "01234", "profile": FIVE_DIGITS}, FLAGGED, "expected 1 decimals"),
        (
            "monotonic ok",
            {"text": "01250.0", "previous": PriorReading(Decimal("1234.5"), T0), "profile": FIVE_DIGITS},
            ACCEPTED,
            None,
        ),
        ("decrease", {"text": "01200.0", "previous": PriorReading(Decimal("1234.5"), T0)}, FLAGGED, "decreased"),
        (
            "too fast",
            {"text": "01999.0", "previous": PriorReading(Decimal("1234.5"), T0), "profile": FIVE_DIGITS},
            FLAGGED,
            "exceeds max rate",
        ),
        (
            "rollover",
            {"text": "00012.0", "previous": PriorReading(Decimal("99990.0"), T0), "profile": FIVE_DIGITS},
            ACCEPTED,
            "rollover",
        ),
        (
            "reset",
            {"text": "00012.0", "previous": PriorReading(Decimal("50000.0"), T0), "profile": FIVE_DIGITS},
            FLAGGED,
            "meter replaced",
        ),
        (
            "out of order",
            {"text": "01250.0", "previous": PriorReading(Decimal("1234.5"), T0 + timedelta(days=3))},
            FLAGGED,
            "captured before",
        ),
        ("year 2099", {"text": "1.0", "captured_at": datetime(2099, 1, 1, tzinfo=UTC)}, FLAGGED, "in the future"),
        ("year 0001", {"text": "1.0", "captured_at": datetime(1, 1, 1, tzinfo=UTC)}, FLAGGED, "before 2000-01-01"),
        ("within a day ahead", {"text": "1.0", "captured_at": NOW + timedelta(hours=20)}, ACCEPTED, None),
        (
            "same instant, other value",
            {"text": "01250.0", "captured_at": at(1), "previous": PriorReading(Decimal("1234.5"), at(1))},
            FLAGGED,
            "same instant",
        ),
        (
            "same instant, same value",
            {"text": "01234.5", "captured_at": at(1), "previous": PriorReading(Decimal("1234.5"), at(1))},
            ACCEPTED,
            None,
        ),
        (
            "rollover within a day",
            {"text": "00012.0", "previous": PriorReading(Decimal("99990.0"), T0), "profile": FAST_FIVE_DIGITS},
            ACCEPTED,
            "rollover",
        ),
        (
            "decrease after a year",  # 1000/day x 365 days could turn the register more than once
            {
                "text": "00012.0",
                "captured_at": at(365),
                "previous": PriorReading(Decimal("99990.0"), T0),
                "profile": FAST_FIVE_DIGITS,
                "processed": at(366),
            },
            FLAGGED,
            "meter replaced",
        ),
        (
            "misread jump contradicted",
            {
                "text": "105",
                "captured_at": at(2),
                "previous": PriorReading(Decimal("900"), at(1)),
                "earlier": PriorReading(Decimal("100"), T0),
            },
            ACCEPTED,
            "previous accepted reading 900",
        ),
        (
            "slightly lower than a real jump",
            {
                "text": "899",
                "captured_at": at(2),
                "previous": PriorReading(Decimal("900"), at(1)),
                "earlier": PriorReading(Decimal("100"), T0),
            },
            FLAGGED,
            "decreased",
        ),
        (
            "below the reading before the jump",
            {
                "text": "50",
                "captured_at": at(2),
                "previous": PriorReading(Decimal("900"), at(1)),
                "earlier": PriorReading(Decimal("100"), T0),
            },
            FLAGGED,
            "meter replaced",
        ),
        (
            "register width typo",  # a profile that slipped through must not raise decimal.Overflow
            {
                "text": "00012.0",
                "previous": PriorReading(Decimal("99990.0"), T0),
                "profile": MeterProfile(digits=1_000_000, max_rate_per_day=Decimal("100")),
            },
            FLAGGED,
            "expected 1000000 integer digits",
        ),
    ],
)
def test_rules_table(case, kwargs, status, reason_part):
    result = verdict(**kwargs)
    assert result.status == status, (case, result)
    if reason_part is None:
        assert result.reasons == ()
    else:
        assert any(reason_part in reason for reason in result.reasons), (case, result.reasons)


def judge_series(values, profile=None):
    """Validate one meter's readings (one a day) in order as a run does: accepted ones become the history, a
    contradicted jump is dropped from it. Returns the statuses and the history left."""
    history, statuses = MeterHistory(), []
    for day, text in enumerate(values):
        previous, earlier = history.recent("M", at(day))
        result = validate_reading(parse_reading(text), 0.9, at(day), previous, profile, RULES, earlier, at(day))
        statuses.append(result.status)
        if result.status == ACCEPTED:
            history.add("M", at(day), parse_reading(text).value)
            if result.contradicts is not None:
                history.discard("M", result.contradicts)
    return statuses, [value for _, value in history.readings["M"]]


@pytest.mark.parametrize(
    ("case", "profile", "statuses", "kept"),
    [
        ("no max rate", None, [ACCEPTED] * 5, ["100", "105", "110", "112"]),
        (
            "max rate",
            MeterProfile(max_rate_per_day=Decimal("50")),
            [ACCEPTED, FLAGGED, ACCEPTED, ACCEPTED, ACCEPTED],
            ["100", "105", "110", "112"],
        ),
    ],
)
def test_one_misread_jump_does_not_poison_later_readings(case, profile, statuses, kept):
    assert judge_series(["100", "900", "105", "110", "112"], profile) == (statuses, [Decimal(v) for v in kept]), case
