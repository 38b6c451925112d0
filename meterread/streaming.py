"""Bounded, ordered streaming between pipeline stages: a photo's bytes and pixels live only while it is in flight.

fetch + preprocess  --(worker pool, at most `window` in flight)-->  batches  --> model  --> rows
rows of a shard     --(one background writer, at most `depth` pending)-->  Parquet

Memory is bounded by the windows, not by the number of photos; order and identity are kept because results are
yielded in input order. A stage that raises surfaces its exception to the consumer at that item; pending work is
cancelled and the threads are joined, so a failure never deadlocks the pipeline.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def ordered_map(fn: Callable[[In], Out], items: Iterable[In], workers: int, window: int) -> Iterator[Out]:
    """`map(fn, items)` on `workers` threads with at most `window` items submitted but not yet consumed.

    Items are pulled from `items` lazily (backpressure: a slow consumer stops the producers). Results come in input
    order. An exception from `fn` is raised to the consumer at that item's position."""
    if workers < 1 or window < 1:
        raise ValueError("workers and window must be at least 1")
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="meterread-pre") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class BackgroundWriter:
    """Run `write(item)` calls on one thread, in submission order, with at most `depth` of them pending.

    `submit` blocks while `depth` writes are pending and re-raises the first write error; `close` waits for the
    rest and returns every result in order. Use as a context manager."""

    def __init__(self, write: Callable[[In], Out], depth: int = 2):
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._write = write
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meterread-write")
        self._pending: deque[Future] = deque()
        self.results: list[Out] = []

    def submit(self, item: In) -> None:
        while len(self._pending) >= self._depth:
            self.results.append(self._pending.popleft().result())
        self._pending.append(self._pool.submit(self._write, item))

    def close(self) -> list[Out]:
        """Wait for every pending write; raises the first write error."""
        try:
            while self._pending:
                self.results.append(self._pending.popleft().result())
        finally:
            for future in self._pending:
                future.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True)
        return self.results

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            self.close()
        else:  # the caller failed: still finish the writes already handed over (their rows are complete)
            self._pool.shutdown(wait=True)
