import random
import threading
import time

import pytest

from meterread.streaming import BackgroundWriter, ordered_map


def jittered(value):
    time.sleep(random.random() * 0.005)
    return value * 10


def test_ordered_map_keeps_order_and_identity_under_jitter():
    items = list(range(200))
    assert list(ordered_map(jittered, items, workers=4, window=7)) == [i * 10 for i in items]


def test_slow_consumer_holds_back_the_producers():
    started = []
    lock = threading.Lock()

    def work(item):
        with lock:
            started.append(item)
        return item

    consumed = 0
    for _ in ordered_map(work, range(50), workers=3, window=4):
        consumed += 1
        time.sleep(0.01)  # slower than the workers
        with lock:
            assert len(started) <= consumed + 4  # never more than `window` items ahead of the consumer
    assert consumed == 50


def test_failing_item_is_raised_at_its_position_without_deadlock():
    ran = []

    def work(item):
        ran.append(item)
        if item == 5:
            raise ValueError("bad photo 5")
        time.sleep(0.002)
        return item

    received = []
    with pytest.raises(ValueError, match="bad photo 5"):
        for value in ordered_map(work, range(1000), workers=2, window=4):
            received.append(value)
    assert received == [0, 1, 2, 3, 4]
    assert len(ran) < 20  # the rest was never started: pending work is cancelled, workers joined


def test_ordered_map_rejects_empty_pools():
    with pytest.raises(ValueError):
        list(ordered_map(str, [1], workers=0, window=1))


def test_background_writer_writes_in_order_and_bounds_pending_work():
    written, in_flight, peak = [], [0], [0]
    lock = threading.Lock()

    def write(item):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.005)
        written.append(item)
        with lock:
            in_flight[0] -= 1
        return f"file-{item}"

    with BackgroundWriter(write, depth=2) as writer:
        for item in range(10):
            writer.submit(item)
    assert written == list(range(10))
    assert writer.results == [f"file-{i}" for i in range(10)]
    assert peak[0] == 1  # one writer thread


def test_background_writer_raises_a_write_error():
    def write(item):
        if item == 1:
            raise OSError("bucket gone")
        return item

    writer = BackgroundWriter(write, depth=1)
    with pytest.raises(OSError, match="bucket gone"):
        for item in range(5):
            writer.submit(item)
        writer.close()
    writer.close()  # idempotent after a failure


def test_background_writer_finishes_handed_over_writes_when_the_caller_fails():
    written = []

    def write(item):
        time.sleep(0.01)
        written.append(item)

    with pytest.raises(RuntimeError, match="model crashed"):
        with BackgroundWriter(write, depth=3) as writer:
            writer.submit("shard-a")
            writer.submit("shard-b")
            raise RuntimeError("model crashed")
    assert written == ["shard-a", "shard-b"]
