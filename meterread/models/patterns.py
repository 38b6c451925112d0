"""Reading patterns: the shape of an allowed reading (digits, one separator, optional exact counts). Pure; imports
without torch, so settings and the CLI can check patterns before any model is loaded."""

from __future__ import annotations

import re
from dataclasses import dataclass

SEPARATORS = (".", ",")


def register_pattern_text(integer_digits: int, decimals: int) -> str:
    """The pattern text of a register: `6.1` (6 integer digits, 1 decimal), or `6` without decimals."""
    return f"{integer_digits}.{decimals}" if decimals else str(integer_digits)


def canonical_pattern_text(text: str | None) -> str | None:
    """A reading pattern as `register_pattern_text` writes it (`5.0`, ` 05` -> `5`); None for none."""
    if not text:
        return None
    shape = ReadingPattern.parse(text)
    return register_pattern_text(shape.integer_digits, shape.decimals)


@dataclass(frozen=True)
class ReadingPattern:
    """Shape of an allowed reading. `None` = any count up to the max."""

    integer_digits: int | None = None
    decimals: int | None = None
    max_integer_digits: int = 9
    max_decimals: int = 3

    @classmethod
    def parse(cls, text: str | None) -> ReadingPattern:
        """`"6.1"` -> exactly 6 integer digits and 1 decimal; `"6"` -> 6 digits, no decimals; None -> free."""
        if not text:
            return cls()
        match = re.fullmatch(r"(\d+)(?:\.(\d+))?", text.strip())
        if not match:
            raise ValueError(f"reading pattern {text!r} must look like '6' or '6.1' (integer digits.decimals)")
        integer, decimals = int(match.group(1)), int(match.group(2) or 0)
        return cls(integer, decimals, max(integer, 1), decimals)

    def max_length(self) -> int:
        """Most characters a reading can have (digits and separator)."""
        integer = self.integer_digits or self.max_integer_digits
        decimals = self.decimals if self.decimals is not None else self.max_decimals
        return integer + (1 + decimals if decimals else 0)

    def is_prefix(self, text: str) -> bool:
        """Can `text` still grow into a valid reading?"""
        integer, _, fraction = text.replace(",", ".").partition(".")
        if (
            not re.fullmatch(r"\d*", integer)
            or not re.fullmatch(r"\d*", fraction)
            or text.count(".") + text.count(",") > 1
        ):
            return False
        has_sep = len(integer) != len(text)
        max_int = self.integer_digits or self.max_integer_digits
        max_dec = self.decimals if self.decimals is not None else self.max_decimals
        if len(integer) > max_int or len(fraction) > max_dec:
            return False
        if has_sep and (not integer or max_dec == 0):
            return False
        if has_sep and self.integer_digits is not None and len(integer) != self.integer_digits:
            return False
        return True

    def shortest_completion(self, text: str) -> int:
        """Fewest characters that make the prefix `text` a complete reading (`text` must be a prefix)."""
        integer, sep, fraction = text.replace(",", ".").partition(".")
        needed = max(0, (self.integer_digits or 1) - len(integer))
        if sep:  # at least one decimal after a separator; exactly `decimals` when fixed
            return needed + (int(not fraction) if self.decimals is None else max(self.decimals - len(fraction), 0))
        return needed + (1 + self.decimals if self.decimals else 0)

    def is_complete(self, text: str) -> bool:
        """Is `text` a whole valid reading (EOS allowed here)?"""
        if not text or not self.is_prefix(text):
            return False
        integer, sep, fraction = text.replace(",", ".").partition(".")
        if sep and not fraction:
            return False
        if self.integer_digits is not None and len(integer) != self.integer_digits:
            return False
        return self.decimals is None or len(fraction) == self.decimals
