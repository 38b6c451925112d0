"""What earlier runs wrote: the ledger of processed photos and each meter's accepted readings. Pure over tables.

A photo's rows are keyed by (image_uri, image_etag, model_fingerprint). Its *current* row is its newest one (by
`processed_at`): a new version of the photo, or a retry of a transient storage error, supersedes the rows before it.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import pyarrow as pa

from meterread.read.validate import ACCEPTED, PriorReading

LEDGER_COLUMNS = ["image_uri", "image_etag", "content_sha256", "model_fingerprint", "reason_codes"]
HISTORY_COLUMNS = ["image_uri", "meter_id", "captured_at", "reading", "status", "processed_at"]
STORAGE_ERROR = "storage_error"  # reason code: the bytes could not be read for a transient reason; tried again
RETRIES_EXHAUSTED = "retries_exhausted"  # reason code: the last transient failure allowed; the error is final

LedgerKey = tuple[str, str, str]  # (image_uri, image_etag, model_fingerprint)


@dataclass(frozen=True)
class Ledger:
    """What the output says was read.

    done: keys with a row that is final (anything but a transient storage error, or one marked RETRIES_EXHAUSTED)
    transient_failures: per key, how many runs ended in a transient storage error
    contents: per (image_uri, model_fingerprint), the content sha256s a final row exists for
    """

    done: frozenset[LedgerKey] = frozenset()
    transient_failures: Mapping[LedgerKey, int] = field(default_factory=dict)
    contents: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: pa.Table) -> Ledger:
        done: set[LedgerKey] = set()
        failures: Counter = Counter()
        contents: dict[tuple[str, str], set[str]] = defaultdict(set)
        for uri, etag, sha, fingerprint, codes in zip(*(table.column(name).to_pylist() for name in LEDGER_COLUMNS)):
            key = (uri, etag, fingerprint)
            codes = codes or ()
            if STORAGE_ERROR in codes and RETRIES_EXHAUSTED not in codes:
                failures[key] += 1
                continue
            done.add(key)
            if sha:
                contents[(uri, fingerprint)].add(sha)
        return cls(frozenset(done), dict(failures), {key: frozenset(shas) for key, shas in contents.items()})

    def is_done(self, key: LedgerKey, transient_retries: int) -> bool:
        """A final row exists, or the key failed transiently on more runs than `transient_retries` allows."""
        return key in self.done or self.transient_failures.get(key, 0) > transient_retries


def current_rows(table: pa.Table) -> pa.Table:
    """Each photo's current row: its newest by `processed_at` (needs `image_uri` and `processed_at`). Earlier rows
    of the same image_uri are superseded: an older version of the photo, a transient error read since, an older
    model's reading."""
    uris, times = table.column("image_uri").to_pylist(), table.column("processed_at").to_pylist()
    newest: dict[str, int] = {}
    for index, (uri, at) in enumerate(zip(uris, times)):
        best = newest.get(uri)
        if best is None or at >= times[best]:
            newest[uri] = index
    return table.take(pa.array(sorted(newest.values()), pa.int64()))


@dataclass
class MeterHistory:
    """Accepted readings per meter, sorted by capture time; grows as a run accepts new readings."""

    readings: dict[str, list[tuple[datetime, Decimal]]] = field(default_factory=lambda: defaultdict(list))
    photos: dict[str, tuple[str, datetime, Decimal]] = field(default_factory=dict)  # image_uri -> its reading

    @classmethod
    def from_table(cls, table: pa.Table) -> MeterHistory:
        """Accepted readings of each photo's current row (`current_rows`): a superseded version's reading is no
        reference for later ones."""
        history = cls()
        rows = zip(*(current_rows(table).column(name).to_pylist() for name in HISTORY_COLUMNS))
        for uri, meter_id, captured_at, reading, status, _ in rows:
            if status == ACCEPTED and meter_id and captured_at and reading is not None:
                history.add(meter_id, captured_at, reading, uri)
        return history

    def add(self, meter_id: str, captured_at: datetime, value: Decimal, uri: str | None = None) -> None:
        bisect.insort(self.readings[meter_id], (captured_at, value))
        if uri is not None:
            self.photos[uri] = (meter_id, captured_at, value)

    def supersede(self, uri: str) -> None:
        """Forget the reading of photo `uri`: a new version of it is being read, and its own stale reading must not
        be its reference (nor any later photo's)."""
        meter_id, captured_at, value = self.photos.pop(uri, (None, None, None))
        if meter_id is not None:
            self.discard(meter_id, PriorReading(value, captured_at))

    def discard(self, meter_id: str, reading: PriorReading) -> None:
        """Drop an accepted reading shown to be a misread, so it is no later reading's reference."""
        series = self.readings.get(meter_id, [])
        entry = (reading.captured_at, reading.value)
        if entry in series:
            series.remove(entry)

    def recent(
        self, meter_id: str | None, captured_at: datetime | None
    ) -> tuple[PriorReading | None, PriorReading | None]:
        """(previous, earlier): `previous(meter_id, captured_at)` and the accepted reading just before it (None
        when there is none)."""
        previous = self.previous(meter_id, captured_at)
        if previous is None:
            return None, None
        series = self.readings[meter_id]
        index = bisect.bisect_left(series, (previous.captured_at, previous.value))
        if index == 0:
            return previous, None
        at, value = series[index - 1]
        return previous, PriorReading(value, at)

    def previous(self, meter_id: str | None, captured_at: datetime | None) -> PriorReading | None:
        """Latest accepted reading of `meter_id` at or before `captured_at` (the latest, if the time is unknown);
        None when there is none, also when every known reading is later (`following` is then the reference)."""
        if not meter_id or meter_id not in self.readings or not self.readings[meter_id]:
            return None
        series = self.readings[meter_id]
        if captured_at is None:
            at, value = series[-1]
            return PriorReading(value, at)
        index = bisect.bisect_right(series, (captured_at, Decimal("Infinity")))
        if index == 0:
            return None
        at, value = series[index - 1]
        return PriorReading(value, at)

    def following(self, meter_id: str | None, captured_at: datetime | None) -> PriorReading | None:
        """Earliest accepted reading of `meter_id` strictly after `captured_at`: what a late photo must also fit.
        None when there is none or the time is unknown."""
        if not meter_id or captured_at is None or not self.readings.get(meter_id):
            return None
        series = self.readings[meter_id]
        index = bisect.bisect_right(series, (captured_at, Decimal("Infinity")))
        if index == len(series):
            return None
        at, value = series[index]
        return PriorReading(value, at)
