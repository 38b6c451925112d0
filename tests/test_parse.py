from decimal import Decimal

import pytest

from meterread.parse import parse_reading


@pytest.mark.parametrize(
    ("text", "value", "integer_digits", "decimal_digits"),
    [
        ("9845.9", Decimal("9845.9"), 4, 1),
        ("09845.9", Decimal("9845.9"), 5, 1),
        ("  00123 ", Decimal("123"), 5, 0),
        ("12,50", Decimal("12.50"), 2, 2),
        ("1 234.5", Decimal("1234.5"), 4, 1),
        ("0", Decimal("0"), 1, 0),
    ],
)
def test_parse_valid(text, value, integer_digits, decimal_digits):
    parsed = parse_reading(text)
    assert (parsed.value, parsed.integer_digits, parsed.decimal_digits, parsed.error) == (
        value,
        integer_digits,
        decimal_digits,
        None,
    )


@pytest.mark.parametrize("text", [None, "", "   ", "abc", "12.3.4", "-5", "12.", ".5", "1e5", "12kWh"])
def test_parse_invalid_has_reason(text):
    parsed = parse_reading(text)
    assert parsed.value is None and parsed.error
