"""Model text -> reading. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# The output's `reading` column: decimal128(24, 6), so readings of up to 18 integer digits and 6 decimals are exact.
READING_PRECISION = 24
READING_DECIMALS = 6
READING_INTEGER_DIGITS = READING_PRECISION - READING_DECIMALS
READING_TYPE_NAME = f"decimal128({READING_PRECISION}, {READING_DECIMALS})"
_READING = re.compile(r"^(?P<int>\d+)(?:[.,](?P<frac>\d+))?$")


@dataclass(frozen=True)
class ParsedReading:
    """A parsed reading, or the reason it could not be parsed (`value is None`)."""

    value: Decimal | None
    integer_digits: int = 0
    decimal_digits: int = 0
    error: str | None = None


def normalise_text(text: str) -> str:
    """Strip whitespace, prompt echoes and spaces between digit groups (`"00 123.4 "` -> `"00123.4"`)."""
    return re.sub(r"\s+", "", text.strip())


def parse_reading(text: str | None) -> ParsedReading:
    """Parse digits with at most one decimal separator (`.` or `,`) into a Decimal.

    Leading zeros are kept in `integer_digits` (a register shows them) but not in the value.
    """
    if text is None:
        return ParsedReading(None, error="no text from the model")
    cleaned = normalise_text(text)
    if not cleaned:
        return ParsedReading(None, error="model returned empty text")
    match = _READING.match(cleaned)
    if match is None:
        return ParsedReading(None, error=f"not a number: {cleaned[:40]!r}")
    integer, fraction = match.group("int"), match.group("frac") or ""
    try:
        value = Decimal(f"{integer}.{fraction}" if fraction else integer)
    except InvalidOperation:  # pragma: no cover - the regex admits only digits
        return ParsedReading(None, error=f"not a number: {cleaned[:40]!r}")
    return ParsedReading(value, integer_digits=len(integer), decimal_digits=len(fraction))
