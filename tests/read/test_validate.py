from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from meterread.parse import parse_reading
from meterread.read.history import MeterHistory
from meterread.read.validate import ACCEPTED, FLAGGED, MeterProfile, PriorReading, Rules, validate_reading

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


def history_of(*readings: tuple[float, str]) -> MeterHistory:
    history = MeterHistory()
    for day, value in readings:
        history.add("M", at(day), Decimal(value))
    return history


def test_history_gives_both_neighbours_and_no_previous_before_the_first_reading():
    history = history_of((0, "100"), (9, "120"))
    assert (history.previous("M", at(-1)), history.following("M", at(-1))) == (None, PriorReading(Decimal(100), T0))
    assert (history.previous("M", at(4)), history.following("M", at(4))) == (
        PriorReading(Decimal(100), T0),
        PriorReading(Decimal(120), at(9)),
    )
    assert (history.previous("M", at(9)), history.following("M", at(9))) == (PriorReading(Decimal(120), at(9)), None)
    assert history.previous("M", None) == PriorReading(Decimal(120), at(9)) and history.following("M", None) is None
    assert history.recent("M", at(-1)) == (None, None)
    assert history.following("other", at(0)) is None


def late_verdict(history: MeterHistory, text: str, day: float, profile: MeterProfile | None = None):
    """Validate a photo captured on `day` that arrives after `history` was accepted, with both neighbours."""
    previous, earlier = history.recent("M", at(day))
    following = history.following("M", at(day))
    return validate_reading(
        parse_reading(text), 0.9, at(day), previous, profile, RULES, earlier, at(30), following=following
    )


def test_a_late_photo_above_the_later_accepted_reading_is_flagged():
    result = late_verdict(history_of((0, "451935.9"), (9, "451963.9")), "452038.8", 4)
    assert result.status == FLAGGED
    assert result.reasons == (
        f"reading 452038.8 exceeds the later accepted reading 451963.9 ({at(9).isoformat()}): this or that reading "
        "is a misread",
    )


def test_a_photo_before_every_known_reading_is_checked_against_the_following_one_only():
    history = history_of((9, "120"))
    assert late_verdict(history, "110", 4) == late_verdict(MeterHistory(), "110", 4)  # accepted, nothing to say
    assert late_verdict(history, "110", 4).status == ACCEPTED
    flagged = late_verdict(history, "130", 4)
    assert flagged.status == FLAGGED and "exceeds the later accepted reading 120" in flagged.reasons[0]
    assert not any("captured before" in reason for reason in flagged.reasons)


@pytest.mark.parametrize(
    ("case", "text", "following", "profile", "status", "reason_part"),
    [
        ("below the later reading", "01240.0", "01250.0", FIVE_DIGITS, ACCEPTED, None),
        ("equal to the later reading", "01250.0", "01250.0", FIVE_DIGITS, ACCEPTED, None),
        ("above it", "01260.0", "01250.0", FIVE_DIGITS, FLAGGED, "exceeds the later accepted reading 1250.0"),
        ("rolled over before it", "99990.0", "00012.0", FIVE_DIGITS, ACCEPTED, None),
        ("too far below it", "01000.0", "01250.0", FIVE_DIGITS, FLAGGED, "consumption 250.0 exceeds max rate 100"),
        ("far below, no max rate", "01000.0", "01250.0", None, ACCEPTED, None),
    ],
)
def test_check_against_the_following_reading(case, text, following, profile, status, reason_part):
    later = PriorReading(Decimal(following), at(2))
    result = validate_reading(
        parse_reading(text), 0.9, at(1), None, profile, RULES, processed_at=at(3), following=later
    )
    assert result.status == status, (case, result)
    if reason_part is None:
        assert result.reasons == (), case
    else:
        assert any(reason_part in reason for reason in result.reasons), (case, result.reasons)
