"""Reading metrics, pure over (prediction, label) records: exact match on the parsed reading, character error
rate, parse rate, risk-coverage (accuracy when low-confidence readings are abstained), per meter type, worst cases."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from meterread.models.patterns import register_pattern_text
from meterread.parse import normalise_text, parse_reading

COVERAGES = (0.9, 0.95, 0.99)


@dataclass(frozen=True)
class Scored:
    """One evaluated example."""

    label: str
    text: str | None
    confidence: float | None = None
    meter_type: str | None = None
    image: str | None = None
    meter_model: str | None = None


def is_exact(example: Scored) -> bool:
    """Parsed reading equals the parsed label (so `09845.9` == `9845.9`); unparsable predictions are wrong."""
    predicted, expected = parse_reading(example.text), parse_reading(example.label)
    return predicted.value is not None and predicted.value == expected.value


def digits_of(text: str | None) -> str | None:
    """The digits of a reading without its point and leading zeros (`0045.25` -> `4525`); None if unparsable."""
    if parse_reading(text).value is None:
        return None
    return "".join(char for char in normalise_text(text) if char.isdigit()).lstrip("0")


def is_digits_exact(example: Scored) -> bool:
    """Exact, or every digit right and only the decimal point wrong (looser than `is_exact`, never stricter):
    where a point error is all that is wrong, a meter's known register pattern (`--pattern`, the meters table)
    puts it right."""
    predicted = digits_of(example.text)
    return is_exact(example) or (predicted is not None and predicted == digits_of(example.label))


def register_pattern_of(label: str) -> str | None:
    """The register a label shows, as a reading pattern (`012345.6` -> `6.1`, `4433` -> `4`; leading zeros count,
    a register shows them: a dataset whose labels drop them is read with fewer digits than its registers show);
    None for an unparsable label. Reading with it is reading a meter whose register the meters table knows."""
    parsed = parse_reading(label)
    if parsed.value is None:
        return None
    return register_pattern_text(parsed.integer_digits, parsed.decimal_digits)


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def character_error_rate(examples: Sequence[Scored]) -> float | None:
    """Total edit distance / total label characters (texts normalised, `,` read as `.`)."""
    total = sum(len(normalise_text(e.label)) for e in examples)
    if not total:
        return None
    edits = sum(
        levenshtein(normalise_text(e.text or "").replace(",", "."), normalise_text(e.label).replace(",", "."))
        for e in examples
    )
    return edits / total


def accuracy_at_coverage(examples: Sequence[Scored], coverage: float) -> float | None:
    """Exact match over the `coverage` fraction of examples with the highest confidence (the rest abstained)."""
    if not examples:
        return None
    ranked = sorted(examples, key=lambda e: -(e.confidence if e.confidence is not None else -1.0))
    kept = ranked[: max(1, round(coverage * len(ranked)))]
    return sum(map(is_exact, kept)) / len(kept)


def risk_coverage_curve(examples: Sequence[Scored], points: int = 50) -> list[tuple[float, float]]:
    """(coverage, accuracy) pairs from 1/points to 1, for the report's plot."""
    if not examples:
        return []
    return [(k / points, accuracy_at_coverage(examples, k / points)) for k in range(1, points + 1)]


THRESHOLDS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def threshold_table(examples: Sequence[Scored], thresholds: Sequence[float] = THRESHOLDS) -> list[dict]:
    """Per candidate `min_confidence`: the share of readings flagged (below it) and the share of accepted readings
    that are wrong. Missing confidences count as 0."""
    rows = []
    for threshold in thresholds:
        accepted = [e for e in examples if (e.confidence or 0.0) >= threshold]
        wrong = sum(not is_exact(e) for e in accepted)
        rows.append(
            {
                "min_confidence": threshold,
                "flagged_share": 1 - len(accepted) / len(examples) if examples else None,
                "wrong_accepted_share": wrong / len(accepted) if accepted else None,
            }
        )
    return rows


def threshold_from_table(rows: Sequence[dict], max_wrong: float = 0.01, max_flagged: float = 0.25) -> float | None:
    """The lowest candidate `min_confidence` of a `threshold_table` at which at most `max_wrong` of accepted readings
    are wrong while at most `max_flagged` of readings are flagged (None if no candidate does both: a model that
    must flag most readings to be trusted gets no recommendation)."""
    for row in rows:
        wrong, flagged = row["wrong_accepted_share"], row["flagged_share"]
        if wrong is not None and wrong <= max_wrong and flagged is not None and flagged <= max_flagged:
            return row["min_confidence"]
    return None


def recommend_threshold(examples: Sequence[Scored], max_wrong: float = 0.01, max_flagged: float = 0.25) -> float | None:
    """`threshold_from_table` over the examples. Choose it on validation data, report it on held-out data."""
    return threshold_from_table(threshold_table(examples), max_wrong, max_flagged)


def calibration_bins(examples: Sequence[Scored], bins: int = 10) -> list[dict]:
    """Reliability: per confidence bin [k/bins, (k+1)/bins), the count, mean confidence and share read right."""
    table = []
    for k in range(bins):
        low, high = k / bins, (k + 1) / bins
        group = [e for e in examples if low <= (e.confidence or 0.0) < high or (k == bins - 1 and e.confidence == 1.0)]
        table.append(
            {
                "low": low,
                "high": high,
                "count": len(group),
                "mean_confidence": sum(e.confidence or 0.0 for e in group) / len(group) if group else None,
                "accuracy": sum(map(is_exact, group)) / len(group) if group else None,
            }
        )
    return table


def exact_by(examples: Sequence[Scored], key) -> dict[str, dict]:
    """Count and exact match per group (`key(example)`; None groups as "unknown")."""
    groups: dict[str, list[Scored]] = defaultdict(list)
    for example in examples:
        groups[key(example) or "unknown"].append(example)
    return {
        name: {
            "count": len(group),
            "exact_match": sum(map(is_exact, group)) / len(group),
            "digits_exact_match": sum(map(is_digits_exact, group)) / len(group),
        }
        for name, group in sorted(groups.items())
    }


def summarise(examples: Sequence[Scored], worst: int = 12) -> dict:
    """All metrics for a split. Empty input gives zero counts and None rates, never an exception."""
    count = len(examples)
    exact = sum(map(is_exact, examples))
    parsed = sum(parse_reading(e.text).value is not None for e in examples)
    wrong = sorted((e for e in examples if not is_exact(e)), key=lambda e: -(e.confidence or 0.0))
    return {
        "count": count,
        "exact_match": exact / count if count else None,
        "digits_exact_match": sum(map(is_digits_exact, examples)) / count if count else None,
        "character_error_rate": character_error_rate(examples),
        "parse_rate": parsed / count if count else None,
        "accuracy_at_coverage": {f"{c:.2f}": accuracy_at_coverage(examples, c) for c in COVERAGES},
        "by_meter_type": exact_by(examples, lambda e: e.meter_type),
        "by_meter_model": exact_by(examples, lambda e: e.meter_model),
        "thresholds": threshold_table(examples),
        "calibration": calibration_bins(examples),
        "worst": [
            {"image": e.image, "label": e.label, "text": e.text, "confidence": e.confidence} for e in wrong[:worst]
        ],
    }


def prediction_rows(examples: Sequence[Scored], baseline: Sequence[Scored] | None = None) -> list[dict]:
    """One record per example, in order: what was read, how sure, right or not (and, given `baseline` read from
    the same samples in the same order, the peer's reading beside it). Raises ValueError when the two differ in
    length, images or labels."""
    if baseline is not None and [(b.image, b.label) for b in baseline] != [(e.image, e.label) for e in examples]:
        raise ValueError("the baseline must score the same samples, in the same order")
    rows = [
        {
            "image": example.image,
            "meter_model": example.meter_model,
            "meter_type": example.meter_type,
            "label": example.label,
            "text": example.text,
            "confidence": example.confidence,
            "exact": is_exact(example),
            "digits_exact": is_digits_exact(example),
        }
        for example in examples
    ]
    for row, peer in zip(rows, baseline or ()):
        row |= {
            "baseline_text": peer.text,
            "baseline_confidence": peer.confidence,
            "baseline_exact": is_exact(peer),
            "baseline_digits_exact": is_digits_exact(peer),
        }
    return rows
