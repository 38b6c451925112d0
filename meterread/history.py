"""What earlier runs wrote: the ledger of processed photos and each meter's accepted readings. Pure over tables."""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import pyarrow as pa

from meterread.validate import ACCEPTED, PriorReading

LEDGER_COLUMNS = ["image_uri", "image_etag", "model_fingerprint"]
HISTORY_COLUMNS = ["meter_id", "captured_at", "reading", "status"]


def ledger_keys(table: pa.Table) -> set[tuple[str, str, str]]:
    """(image_uri, image_etag, model_fingerprint) of every row already written."""
    columns = [table.column(name).to_pylist() for name in LEDGER_COLUMNS]
    return set(zip(*columns))


@dataclass
class MeterHistory:
    """Accepted readings per meter, sorted by capture time; grows as a run accepts new readings."""

    readings: dict[str, list[tuple[datetime, Decimal]]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def from_table(cls, table: pa.Table) -> MeterHistory:
        history = cls()
        rows = zip(*(table.column(name).to_pylist() for name in HISTORY_COLUMNS))
        for meter_id, captured_at, reading, status in rows:
            if status == ACCEPTED and meter_id and captured_at and reading is not None:
                history.add(meter_id, captured_at, reading)
        return history

    def add(self, meter_id: str, captured_at: datetime, value: Decimal) -> None:
        bisect.insort(self.readings[meter_id], (captured_at, value))

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
        """Latest accepted reading of `meter_id` at or before `captured_at` (or the latest, if time unknown)."""
        if not meter_id or meter_id not in self.readings or not self.readings[meter_id]:
            return None
        series = self.readings[meter_id]
        if captured_at is None:
            at, value = series[-1]
            return PriorReading(value, at)
        index = bisect.bisect_right(series, (captured_at, Decimal("Infinity")))
        if index == 0:
            at, value = series[0]  # everything known is later: report it so validation sees the order problem
            return PriorReading(value, at)
        at, value = series[index - 1]
        return PriorReading(value, at)
