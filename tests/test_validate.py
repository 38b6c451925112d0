from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from meterread.parse import parse_reading
from meterread.validate import ACCEPTED, FLAGGED, MeterProfile, PriorReading, Rules, validate_reading

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
RULES = Rules(min_confidence=0.5)
FIVE_DIGITS = MeterProfile(digits=5, decimals=1, max_rate_per_day=Decimal("100"))


def verdict(text, confidence=0.9, captured_at=T0 + timedelta(days=1), previous=None, profile=None):
    return validate_reading(parse_reading(text), confidence, captured_at, previous, profile, RULES)


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
    ],
)
def test_rules_table(case, kwargs, status, reason_part):
    result = verdict(**kwargs)
    assert result.status == status, (case, result)
    if reason_part is None:
        assert result.reasons == ()
    else:
        assert any(reason_part in reason for reason in result.reasons), (case, result.reasons)
