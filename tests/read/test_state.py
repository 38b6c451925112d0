"""The output's state: a night's ledger and history lookups read only the buckets they touch, give the same answer
as the whole dataset, and survive crashes at any point of a fold."""

import os
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from meterread.read import sink, state
from meterread.read.history import HISTORY_COLUMNS, LEDGER_COLUMNS, Ledger, MeterHistory
from meterread.storage import relative_path, resolve

DAY0 = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


def row(meter, day, reading, run="r1", status="accepted", codes=(), etag="e1"):
    at = DAY0 + timedelta(days=day)
    return {
        "run_id": run,
        "image_uri": f"s3://b/{meter}/{at:%Y%m%dT%H%M%S}.jpg",
        "image_etag": etag,
        "content_sha256": f"sha-{meter}-{day}-{etag}",
        "meter_id": meter,
        "captured_at": at,
        "capture_date": at.date(),
        "reading": Decimal(reading),
        "status": status,
        "reasons": [],
        "reason_codes": list(codes),
        "model_fingerprint": "fp",
        "processed_at": DAY0 + timedelta(days=day, hours=1),
    }


def write(root, rows, run="r1", shard="s1"):
    fs, path = resolve(str(root))
    return sink.write_shard(fs, path, rows, run, shard)


def many_rows(meters=40, days=5):
    return [row(f"M{m:03d}", d, 100 * m + d) for m in range(meters) for d in range(days)]


def sorted_rows(table: pa.Table, columns) -> list[tuple]:
    return sorted(zip(*(table.column(c).to_pylist() for c in columns)), key=repr)


def whole(root, columns, key, keys) -> pa.Table:
    fs, path = resolve(str(root))
    table = sink.read_output(fs, path, columns)
    return state.keep_keys(table, key, keys)


@pytest.mark.parametrize("folded", [False, True])
def test_lookups_equal_the_whole_dataset_folded_or_not(tmp_path, folded):
    write(tmp_path, many_rows()[:100], shard="a")
    write(tmp_path, many_rows()[100:], shard="b")
    fs, root = resolve(str(tmp_path))
    if folded:
        assert state.fold(fs, root) == 200
    view = state.StateView(fs, root)
    assert (view.unfolded == []) is folded
    meters = ["M003", "M017", "M999", None]
    uris = [row("M005", 2, 0)["image_uri"], row("M039", 4, 0)["image_uri"], "s3://b/nowhere.jpg"]
    assert sorted_rows(view.history(meters), HISTORY_COLUMNS) == sorted_rows(
        whole(tmp_path, HISTORY_COLUMNS, "meter_id", ["M003", "M017"]), HISTORY_COLUMNS
    )
    assert len(view.history(meters)) == 10
    assert sorted_rows(view.ledger(uris), LEDGER_COLUMNS) == sorted_rows(
        whole(tmp_path, LEDGER_COLUMNS, "image_uri", uris), LEDGER_COLUMNS
    )
    assert len(view.ledger(uris)) == 2


def test_a_lookup_opens_only_the_buckets_of_its_keys(tmp_path, monkeypatch):
    write(tmp_path, many_rows(meters=200, days=2))
    fs, root = resolve(str(tmp_path))
    state.fold(fs, root)
    opened = []
    real = sink.read_conformed
    monkeypatch.setattr(sink, "read_conformed", lambda fs, path, schema: opened.append(path) or real(fs, path, schema))
    table = state.StateView(fs, root).history(["M007", "M150"])
    buckets = {f"bucket={state.bucket_of(m):03d}" for m in ("M007", "M150")}
    assert sorted(table.column("meter_id").to_pylist()) == ["M007", "M007", "M150", "M150"]
    assert {path.split("/")[-2] for path in opened if "/meters/" in path} == buckets
    assert len([path for path in opened if "/meters/" in path]) == len(buckets)


def test_unfolded_files_of_a_crashed_run_are_read_and_folded_by_the_next(tmp_path):
    write(tmp_path, many_rows(meters=5, days=2), run="night1")
    fs, root = resolve(str(tmp_path))
    state.fold(fs, root)
    write(tmp_path, [row("M001", 9, 109, run="crashed")], run="crashed")  # written, never folded
    view = state.StateView(fs, root)
    assert [path.rsplit("/", 1)[-1] for path in view.unfolded] == ["part-crashed-s1.parquet"]
    history = MeterHistory.from_table(view.history(["M001"]))
    assert history.previous("M001", DAY0 + timedelta(days=30)).value == Decimal(109)
    assert state.fold(fs, root) == 1
    assert state.StateView(fs, root).unfolded == []
    again = MeterHistory.from_table(state.StateView(fs, root).history(["M001"]))
    assert again.readings["M001"] == history.readings["M001"]


def test_a_fold_repeated_after_a_crash_never_duplicates_rows(tmp_path):
    """A crash after the buckets were written but before the files list: the next fold folds the same files again
    and must replace, not add, their rows (a duplicated transient error would count as two failed nights)."""
    write(tmp_path, [row("M001", 1, 5, codes=("storage_error",)), row("M002", 1, 7)])
    fs, root = resolve(str(tmp_path))
    state.fold(fs, root)
    fs.rm(f"{root}/{state.FOLDED_PATH}")  # the crash: buckets written, files list not
    uri = row("M001", 1, 5)["image_uri"]
    before = state.StateView(fs, root)  # the next night reads before it folds: still one row, one failure
    assert len(before.ledger([uri])) == 1 and len(before.history(["M002"])) == 1
    assert Ledger.from_table(before.ledger([uri])).transient_failures == {(uri, "e1", "fp"): 1}
    assert state.fold(fs, root) == 2
    view = state.StateView(fs, root)
    assert len(view.ledger([uri])) == 1
    assert Ledger.from_table(view.ledger([uri])).transient_failures == {(uri, "e1", "fp"): 1}
    assert len(view.history(["M002"])) == 1


def test_a_fold_in_chunks_equals_one_fold(tmp_path):
    for shard, start in (("a", 0), ("b", 60), ("c", 120)):
        write(tmp_path / "chunked", many_rows()[start : start + 60], shard=shard)
        write(tmp_path / "whole", many_rows()[start : start + 60], shard=shard)
    chunked, whole_root = resolve(str(tmp_path / "chunked")), resolve(str(tmp_path / "whole"))
    assert state.fold(*chunked, chunk_files=1) == state.fold(*whole_root) == 180
    meters = [f"M{m:03d}" for m in range(40)]
    assert sorted_rows(state.StateView(*chunked).history(meters), HISTORY_COLUMNS) == sorted_rows(
        state.StateView(*whole_root).history(meters), HISTORY_COLUMNS
    )
    assert len(state.read_folded(*chunked)) == 15  # 3 shards x 5 capture dates


def test_rows_of_a_dataset_file_deleted_after_its_fold_are_no_history(tmp_path):
    """The dataset is the source of truth: someone removes a bad night's files, and its readings stop counting."""
    kept = write(tmp_path, [row("M001", 1, 5, run="good")], run="good")
    bad = write(tmp_path, [row("M001", 2, 900, run="bad")], run="bad")
    fs, root = resolve(str(tmp_path))
    state.fold(fs, root)
    for path in bad:
        fs.rm(path)
    view = state.StateView(fs, root)
    assert view.removed == {relative_path(root, bad[0])}
    assert view.history(["M001"]).column("reading").to_pylist() == [Decimal(5)]
    assert view.ledger([row("M001", 2, 0)["image_uri"]]).num_rows == 0  # its photo is read again
    state.fold(fs, root)
    assert set(state.read_folded(fs, root)) == {relative_path(root, kept[0])}
    assert state.StateView(fs, root).removed == frozenset()
    bucket = state.read_bucket(fs, root, state.METERS, state.bucket_of("M001"))
    assert bucket.column("reading").to_pylist() == [Decimal(5)]


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_a_dataset_file_rewritten_after_its_fold_is_read_as_it_is_now(tmp_path, where, request):
    """A shard run that went on after it was given up on rewrites its file in place (same name, new rows): the
    state must not keep answering with the rows it folded, in buckets the new rows reach or not."""
    if where == "s3":
        s3_fs, bucket = request.getfixturevalue("s3_bucket")
        output = f"s3://{bucket}/out"
    else:
        output = str(tmp_path)
    fs, root = resolve(output)
    first = sink.write_shard(fs, root, [row("M001", 1, 5), row("M002", 1, 7)], "night", "s1")
    state.fold(fs, root)
    again = sink.write_shard(fs, root, [row("M001", 1, 6)], "night", "s1")  # same file, M002's row gone
    assert again == first
    view = state.StateView(fs, root)
    assert view.changed == {relative_path(root, first[0])}
    assert view.history(["M001", "M002"]).column("reading").to_pylist() == [Decimal(6)]
    state.fold(fs, root)
    view = state.StateView(fs, root)
    assert view.changed == frozenset() and view.unfolded == []
    assert view.history(["M001", "M002"]).column("reading").to_pylist() == [Decimal(6)]
    stale = state.read_bucket(fs, root, state.METERS, state.bucket_of("M002"))
    assert stale.num_rows == 0  # dropped from the bucket the new rows never reach


def test_a_state_folded_before_versions_were_recorded_is_trusted(tmp_path):
    fs, root = resolve(str(tmp_path))
    write(tmp_path, [row("M001", 1, 5)])
    state.fold(fs, root)
    sink.write_path_list(fs, f"{root}/{state.FOLDED_PATH}", dict.fromkeys(state.read_folded(fs, root), ""))
    view = state.StateView(fs, root)
    assert view.changed == frozenset() and view.unfolded == []
    assert view.history(["M001"]).column("reading").to_pylist() == [Decimal(5)]


def test_a_bucket_keeps_one_generation_and_readers_use_the_newest(tmp_path):
    fs, root = resolve(str(tmp_path))
    write(tmp_path, [row("M001", 1, 5)], run="n1")
    state.fold(fs, root)
    write(tmp_path, [row("M001", 2, 6)], run="n2")
    state.fold(fs, root)
    folder = state.bucket_dir(root, state.METERS, state.bucket_of("M001"))
    assert [number for number, _ in state.generations(fs, folder)] == [1]
    # a writer that crashed between its new generation and removing the old one: readers take the newest
    older = state.read_bucket(fs, root, state.METERS, state.bucket_of("M001")).slice(0, 1)
    fs.pipe_file(f"{folder}/gen-00000000.parquet", sink.table_to_parquet_bytes(older))
    assert len(state.StateView(fs, root).history(["M001"])) == 2


def test_a_retried_shard_does_not_see_its_own_rows_as_history(tmp_path):
    write(tmp_path, [row("M001", 1, 5, run="night-1")], run="night-1")
    write(tmp_path, [row("M001", 2, 6, run="night-2")], run="night-2", shard="retried")
    fs, root = resolve(str(tmp_path))
    values = state.StateView(fs, root, exclude_run="night-2").history(["M001"]).column("reading").to_pylist()
    assert values == [Decimal(5)]


def test_a_short_listing_is_not_taken_for_deleted_files(tmp_path, monkeypatch):
    """A storage blip that makes the listing come back empty must fail the lookup, not empty the ledger (every
    photo would be read again)."""
    write(tmp_path, many_rows(meters=3, days=1))
    fs, root = resolve(str(tmp_path))
    state.fold(fs, root)
    monkeypatch.setattr(sink, "dataset_file_versions", lambda fs, root: {})
    real_info = type(fs).info

    def flaky_info(self, path, **kwargs):
        if "capture_date=" in path:
            raise ConnectionError("reset")
        return real_info(self, path, **kwargs)

    monkeypatch.setattr(type(fs), "info", flaky_info)
    with pytest.raises(ConnectionError):
        state.StateView(fs, root)


def test_the_state_is_not_part_of_the_dataset(tmp_path, caplog):
    write(tmp_path, many_rows(meters=3, days=1))
    fs, root = resolve(str(tmp_path))
    state.fold(fs, root)
    with caplog.at_level("WARNING"):
        assert len(sink.read_output(fs, root)) == 3
    assert "not part of the dataset" not in caplog.text
    assert ds.dataset(str(tmp_path), format="parquet", partitioning="hive").count_rows() == 3


def test_fold_and_lookup_on_s3(s3_bucket):
    fs, bucket = s3_bucket
    root = f"{bucket}/out"
    sink.write_shard(fs, root, many_rows(meters=4, days=2), "r1", "s1")
    assert state.fold(fs, root) == 8
    fs.invalidate_cache()
    view = state.StateView(fs, root)
    assert view.unfolded == []
    assert len(view.history(["M002"])) == 2
    assert fs.exists(f"{root}/{state.FOLDED_PATH}")


def test_buckets_are_stable_across_processes():
    assert state.bucket_of("MTR-0001-0001") == 235  # blake2b, not Python's salted hash()


def test_folding_and_lookups_retry_a_transient_error_opening_a_file(memory_files_that_fail_to_open_once):
    write("memory://fold-retried/out", many_rows()[:100], shard="a")
    write("memory://fold-retried/out", many_rows()[100:], shard="b")
    fs, root = resolve("memory://fold-retried/out")
    assert state.fold(fs, root) == 200
    data_files = [path for path in memory_files_that_fail_to_open_once if "capture_date=" in path]
    assert len(data_files) == 10  # 5 days x 2 shards, each opened after one failure
    write("memory://fold-retried/out", [row("M001", 9, 1000, run="r2")], run="r2")
    assert len(state.StateView(fs, root).history(["M001"])) == 6


def test_folds_and_lookups_retry_transient_storage_errors(tmp_path, storage_that_fails_each_call_once):
    write(tmp_path, many_rows()[:100], shard="a")
    write(tmp_path, many_rows()[100:], shard="b")
    fs, root = resolve(str(tmp_path))
    deleted = write(tmp_path, [row("M001", 9, 1000, run="r2")], run="r2")
    assert state.fold(fs, root, chunk_files=2) == 201
    for path in deleted:
        os.remove(path)  # its rows are forgotten: more listing, reading and deleting
    write(tmp_path, [row("M002", 9, 1000, run="r3")], run="r3")
    assert state.fold(fs, root) == 1
    view = state.StateView(fs, root)
    assert view.unfolded == [] and view.removed == frozenset()
    assert len(view.history(["M001"])) == 5 and len(view.history(["M002"])) == 6
    assert {name for name, _ in storage_that_fails_each_call_once} == {"ls", "cat_file", "info", "find", "rm", "exists"}
