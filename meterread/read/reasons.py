"""Reason codes: the closed, machine-readable enum beside each row's human `reasons`. Pure.

Every reason text the read path writes (`validate`, `keys`, `preprocess`, `parse`, `sink.reading_problem`,
`pipeline`) maps to one or more codes through `CODE_PATTERNS`, the one table; `codes_for` applies it. A text no
pattern knows gets `other`, so a new reason without a code is visible (and a test fails) instead of silently
uncoded. Codes are only ever added, never renamed.

| code | meaning | status |
|---|---|---|
| unparsable | the model text is not a number, or does not fit the `reading` column | flagged |
| format | negative, or wrong integer / decimal digit count for the meter | flagged |
| low_confidence | confidence below the run's threshold | flagged |
| implausible_time | capture time before the earliest plausible date (2000) | flagged |
| future_timestamp | capture time more than the slack after processing | flagged |
| out_of_order | captured before the meter's previous accepted reading | flagged |
| same_instant_conflict | another accepted reading of the meter at the same instant differs | flagged |
| decrease | lower than the previous accepted reading, not a rollover (reset or replacement?) | flagged |
| rate_exceeded | usage since the previous accepted reading exceeds the meter's max rate | flagged |
| exceeds_later_reading | a late photo reads above the meter's next (later) accepted reading, not a rollover | flagged |
| later_reading_inconsistent | usage from this late photo to the next accepted reading exceeds the max rate | flagged |
| rollover | note: a decrease explained as the register wrapping past all nines | accepted |
| misread_reference | note: this reading shows the previous accepted one was a misread jump | accepted |
| misread_jump | a jump contradicted by the next reading (a misread?) | flagged |
| off_layout_key | the object key does not follow the photo layout (meter_id null) | any |
| bad_key_timestamp | the key's timestamp is not a valid time | any |
| non_utf8_key | the key is not valid UTF-8 (recorded percent-encoded) | any |
| unreadable | the object could not be read (missing, not transient) | error |
| storage_error | transient storage failure; the next run tries again | error |
| retries_exhausted | the last transient failure allowed; final | error |
| not_an_image | empty file, or bytes that are not a JPEG or PNG | error |
| corrupt_image | truncated or corrupt JPEG/PNG, OpenCV could not decode it | error |
| image_too_large | more pixels than `max_pixels` allows | error |
| image_too_small | a side below the minimum | error |
| other | a reason text this table does not know (a bug: add a pattern) | any |
"""

from __future__ import annotations

import re
from collections.abc import Iterable

UNPARSABLE = "unparsable"
FORMAT = "format"
LOW_CONFIDENCE = "low_confidence"
IMPLAUSIBLE_TIME = "implausible_time"
FUTURE_TIMESTAMP = "future_timestamp"
OUT_OF_ORDER = "out_of_order"
SAME_INSTANT_CONFLICT = "same_instant_conflict"
DECREASE = "decrease"
RATE_EXCEEDED = "rate_exceeded"
EXCEEDS_LATER_READING = "exceeds_later_reading"
LATER_READING_INCONSISTENT = "later_reading_inconsistent"
ROLLOVER = "rollover"
MISREAD_REFERENCE = "misread_reference"
MISREAD_JUMP = "misread_jump"
OFF_LAYOUT_KEY = "off_layout_key"
BAD_KEY_TIMESTAMP = "bad_key_timestamp"
NON_UTF8_KEY = "non_utf8_key"
UNREADABLE = "unreadable"
STORAGE_ERROR = "storage_error"  # same value as history.STORAGE_ERROR (the ledger's retry marker)
RETRIES_EXHAUSTED = "retries_exhausted"  # same value as history.RETRIES_EXHAUSTED
NOT_AN_IMAGE = "not_an_image"
CORRUPT_IMAGE = "corrupt_image"
IMAGE_TOO_LARGE = "image_too_large"
IMAGE_TOO_SMALL = "image_too_small"
OTHER = "other"

# (code, pattern searched in one reason text). One text may carry several codes: a key problem joins its parts
# with "; ", a storage error says whether retries are exhausted. Order here is the order codes are written in.
CODE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (code, re.compile(pattern))
    for code, pattern in (
        (UNPARSABLE, r"^unparsable reading: "),
        (FORMAT, r"^negative reading$|^expected \d+ (integer digits|decimals), read \d+$"),
        (LOW_CONFIDENCE, r"^confidence \S+ below "),
        (IMPLAUSIBLE_TIME, r"^implausible capture time .*: before "),
        (FUTURE_TIMESTAMP, r"^implausible capture time .*: in the future"),
        (OUT_OF_ORDER, r"^captured before the previous accepted reading"),
        (SAME_INSTANT_CONFLICT, r"^conflicts with another accepted reading at the same instant"),
        (DECREASE, r"^reading decreased from "),
        (RATE_EXCEEDED, r"^consumption \S+ exceeds max rate "),
        (EXCEEDS_LATER_READING, r"^reading \S+ exceeds the later accepted reading "),
        (LATER_READING_INCONSISTENT, r"^later accepted reading .* is inconsistent with this one"),
        (ROLLOVER, r"^register rollover from "),
        (MISREAD_REFERENCE, r"^previous accepted reading .* looks like a misread"),
        (MISREAD_JUMP, r"^jump to \S+ contradicted by the next reading"),
        (OFF_LAYOUT_KEY, r"(^|; )key does not match the photo layout"),
        (BAD_KEY_TIMESTAMP, r"(^|; )timestamp .* in key is not a valid"),
        (NON_UTF8_KEY, r"(^|; )object key is not valid UTF-8"),
        (UNREADABLE, r"^could not read object( after retries)?: "),
        (STORAGE_ERROR, r"^storage_error: "),
        (RETRIES_EXHAUSTED, r"^storage_error: .*; final after \d+ runs"),
        (NOT_AN_IMAGE, r"^empty file|^not a JPEG or PNG image"),
        (CORRUPT_IMAGE, r"^truncated (JPEG|PNG)|^corrupt (JPEG|PNG)|^could not decode image"),
        (IMAGE_TOO_LARGE, r"^image too large: "),
        (IMAGE_TOO_SMALL, r"^image too small: "),
    )
)
REASON_CODES: tuple[str, ...] = (*(code for code, _ in CODE_PATTERNS), OTHER)  # the closed enum


def codes_for(reason: str) -> tuple[str, ...]:
    """One reason text -> its codes (in `REASON_CODES` order); `(OTHER,)` when no pattern knows it."""
    found = tuple(code for code, pattern in CODE_PATTERNS if pattern.search(reason))
    return found or (OTHER,)


def reason_codes(reasons: Iterable[str], known: Iterable[str] = ()) -> list[str]:
    """A row's codes: those of each reason plus `known` ones (set where the failure happened), each once, in
    `REASON_CODES` order."""
    codes = set(known)
    for reason in reasons:
        codes.update(codes_for(reason))
    return [code for code in REASON_CODES if code in codes]
