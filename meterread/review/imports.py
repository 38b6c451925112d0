"""A reviewed file back into corrections: parse a Label Studio JSON export or the review CSV into entries, then check
every entry against the output's current rows. Pure.

Only reviewed rows become entries: a task without a (non-cancelled) annotation and a CSV row with an empty
`corrected_reading` are skipped. Every problem is collected, each naming its row (`row N`: the spreadsheet row, the
header being row 1; `task ID`: Label Studio's task id), and raised together as one ReviewImportError.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from meterread.parse import normalise_text, parse_reading
from meterread.read.sink import quantize, reading_problem
from meterread.review.export import READING_FIELD
from meterread.review.records import CSV, LABEL_STUDIO, Correction, Entry, ReviewImportError

REQUIRED_CSV_COLUMNS = ("image_uri", "corrected_reading")


def annotation_reading(annotation: Mapping) -> tuple[str | None, str | None]:
    """(the `reading` text area's value, problem) of one Label Studio annotation."""
    texts = [
        text
        for item in annotation.get("result") or []
        if item.get("from_name") == READING_FIELD and item.get("type") == "textarea"
        for text in (item.get("value") or {}).get("text") or []
    ]
    if len(texts) > 1:
        return None, f"{len(texts)} readings {texts}: keep one"
    return (texts[0], None) if texts else (None, f"no `{READING_FIELD}` text in the annotation")


def annotator(annotation: Mapping) -> str | None:
    """Who made the annotation: `completed_by`'s email (or username), else `label-studio user ID`."""
    who = annotation.get("completed_by")
    if isinstance(who, Mapping):
        return who.get("email") or who.get("username") or (f"label-studio user {who['id']}" if "id" in who else None)
    return None if who is None else f"label-studio user {who}"


def label_studio_entry(task: Mapping, index: int) -> Entry | None:
    """The entry of one exported task: its last non-cancelled annotation; None when nobody annotated it."""
    where = f"task {task.get('id', f'#{index}')}"
    if not isinstance(task.get("annotations"), list):
        return Entry(where, None, None, problem="no `annotations` list: export the project as JSON (not JSON-MIN)")
    annotations = [a for a in task["annotations"] if isinstance(a, Mapping) and not a.get("was_cancelled")]
    if not annotations:
        return None
    data = task.get("data") or {}
    text, problem = annotation_reading(annotations[-1])
    return Entry(where, data.get("image_uri") or data.get("image"), text, annotator(annotations[-1]), problem)


def parse_label_studio(text: str, name: str) -> tuple[list[Entry], int]:
    """A Label Studio JSON export -> (entries, tasks skipped as not annotated)."""
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as error:
        raise ReviewImportError(name, [f"not JSON: {error.msg} at line {error.lineno}"]) from error
    if not isinstance(tasks, list) or not all(isinstance(task, Mapping) for task in tasks):
        raise ReviewImportError(name, ["not a Label Studio JSON export (a list of tasks)"])
    entries = [label_studio_entry(task, index) for index, task in enumerate(tasks, 1)]
    return [entry for entry in entries if entry is not None], entries.count(None)


def parse_csv(text: str, name: str) -> tuple[list[Entry], int]:
    """The review CSV -> (entries, rows skipped for an empty `corrected_reading`)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [column for column in REQUIRED_CSV_COLUMNS if column not in (reader.fieldnames or ())]
    if missing:
        raise ReviewImportError(name, [f"row 1: missing column(s) {', '.join(missing)}"])
    entries, skipped = [], 0
    for number, record in enumerate(reader, 2):
        value = (record.get("corrected_reading") or "").strip()
        if not value:
            skipped += 1
            continue
        uri, reviewer = (record.get("image_uri") or "").strip(), (record.get("reviewer") or "").strip()
        entries.append(Entry(f"row {number}", uri or None, value, reviewer or None))
    return entries, skipped


def parse_review_file(data: bytes, name: str) -> tuple[list[Entry], int, str]:
    """A file's bytes -> (entries, skipped, source): JSON (by `.json` or a leading `[`) is a Label Studio export,
    anything else the CSV."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ReviewImportError(name, [f"not UTF-8 text (byte {error.start})"]) from error
    if name.lower().endswith(".json") or text.lstrip().startswith(("[", "{")):
        return (*parse_label_studio(text, name), LABEL_STUDIO)
    return (*parse_csv(text, name), CSV)


def check_value(text: str | None) -> tuple[str, Decimal] | str:
    """(normalised text, value) of a reviewer's reading, or why it is not one: a non-negative decimal number with
    at most one `.` or `,` that fits the reading column."""
    parsed = parse_reading(text)
    if parsed.value is None:
        return f"value {text!r} is not a number (digits with at most one '.' or ',')"
    problem = reading_problem(parsed.value)
    return problem if problem else (normalise_text(text).replace(",", "."), quantize(parsed.value))


def check_photo(entry: Entry, current: Mapping[str, Mapping]) -> str | None:
    """Why the entry's photo cannot be corrected: no URI, not in the output, or never read (no content hash)."""
    if not entry.image_uri:
        return "no image_uri"
    row = current.get(entry.image_uri)
    if row is None:
        return f"photo {entry.image_uri} is not in the output"
    if not row.get("content_sha256"):
        return f"photo {entry.image_uri} was never read (no content hash): correct it once a run has read it"
    return None


def check_duplicates(entries: Sequence[Entry]) -> dict[int, str]:
    """Per entry index, the problem of a photo corrected more than once in the file (every occurrence named)."""
    seen: dict[str, list[int]] = defaultdict(list)
    for index, entry in enumerate(entries):
        if entry.image_uri:
            seen[entry.image_uri].append(index)
    problems = {}
    for uri, indices in seen.items():
        if len(indices) > 1:
            rows = ", ".join(entries[index].where for index in indices)
            problems.update({index: f"photo {uri} appears {len(indices)} times ({rows})" for index in indices})
    return problems


def entry_problems(entry: Entry, current: Mapping[str, Mapping], duplicate: str | None, reviewer: str | None):
    """Everything wrong with one entry (empty when it is a correction)."""
    value = check_value(entry.text) if entry.problem is None else None
    found = [entry.problem, check_photo(entry, current), duplicate, value if isinstance(value, str) else None]
    found.append(None if entry.reviewer or reviewer else "no reviewer: fill `reviewer` or pass --reviewer")
    return [problem for problem in found if problem]


def to_correction(entry: Entry, row: Mapping, source: str, reviewer: str | None, now: datetime) -> Correction:
    """A checked entry of the photo's current `row` -> its correction."""
    text, reading = check_value(entry.text)
    return Correction(
        image_uri=entry.image_uri,
        content_sha256=row["content_sha256"],
        meter_id=row["meter_id"],
        captured_at=row["captured_at"],
        corrected_text=text,
        corrected_reading=reading,
        corrected_by=entry.reviewer or reviewer,
        corrected_at=now,
        source=source,
    )


def check_entries(
    entries: Sequence[Entry],
    current: Mapping[str, Mapping],
    name: str,
    source: str,
    reviewer: str | None,
    now: datetime,
) -> list[Correction]:
    """Entries -> corrections of the photos' current rows (`current`: image_uri -> row with content_sha256,
    meter_id, captured_at). An entry's own reviewer wins over `reviewer`. Raises ReviewImportError listing every
    problem, each naming its row."""
    duplicates = check_duplicates(entries)
    problems = []
    for index, entry in enumerate(entries):
        found = entry_problems(entry, current, duplicates.get(index), reviewer)
        if found:
            problems.append(f"{entry.where}: {'; '.join(found)}")
    if problems:
        raise ReviewImportError(name, problems)
    return [to_correction(entry, current[entry.image_uri], source, reviewer, now) for entry in entries]
