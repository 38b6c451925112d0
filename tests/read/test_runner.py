"""The read run without Prefect, on a local folder bucket: one row per photo, reruns add nothing."""

import os
import re
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from meterread.config import ConfigError, ModelSpec, ReadConfig
from meterread.data.synth import write_bucket
from meterread.keys import DEFAULT_KEY_PATTERN
from meterread.models.base import Prediction, spec_fingerprint
from meterread.models.ppocr import build_tiny
from meterread.models.prompts import DEFAULT_PROMPTS
from meterread.models.tiny import TinySize
from meterread.read import fetching, lease, planning, rows, runner, sink
from meterread.read.history import MeterHistory
from meterread.read.meters import MetersTableError
from meterread.read.planning import shard_bounds
from meterread.read.runner import run_read
from meterread.read.validate import MeterProfile, Rules
from meterread.storage import ObjectInfo, resolve
from meterread.training.ensemble import build_ensemble
from tests.factories import BAD_FILES, ScriptedReader, meter_jpeg


def config_for(tmp_path, model, **overrides):
    """A read of tmp_path/bucket into tmp_path/out with `model` on the CPU, batches of 4, shards of 5."""
    settings = {"batch_size": 4, "shard_size": 5, **overrides}
    return ReadConfig(
        source=str(tmp_path / "bucket"),
        output=str(tmp_path / "out"),
        model=ModelSpec(base=model, device="cpu"),
        **settings,
    ).validate()


def output_rows(config):
    fs, root = resolve(config.output)
    return sink.read_output(fs, root)


def test_every_photo_gets_one_row_and_reruns_add_none(tmp_path, tiny_paligemma):
    samples = write_bucket(tmp_path / "bucket", 12, seed=3)
    config = config_for(tmp_path, tiny_paligemma)
    first = run_read(config, progress=False)
    meters_grouped = sorted(s.meter_id for s in samples)
    assert first["processed"] == 12 and first["shards"] == len(shard_bounds(meters_grouped, 5)) > 1
    table = output_rows(config)
    assert table.num_rows == 12 and table.schema == sink.SCHEMA
    assert sorted(table.column("image_uri").to_pylist()) == sorted(
        (tmp_path / "bucket" / s.key).as_uri() for s in samples
    )
    assert set(table.column("meter_id").to_pylist()) == {s.meter_id for s in samples}
    assert {d for d in table.column("capture_date").to_pylist()} == {s.captured_at.date() for s in samples}

    again = run_read(config, progress=False)
    assert (again["processed"], again["already_done"]) == (0, 12)
    assert output_rows(config).num_rows == 12


def test_bad_files_become_error_rows_and_the_run_succeeds(tmp_path, tiny_paligemma):
    write_bucket(tmp_path / "bucket", 3, seed=4)
    for name, (data, _) in BAD_FILES.items():
        path = tmp_path / "bucket" / "MTR-BAD" / f"2026010{len(name) % 9 + 1}T00000{len(name) % 10}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        (tmp_path / "bucket" / f"{name}.jpg").write_bytes(data)  # also a key off the layout
    manifest = run_read(config_for(tmp_path, tiny_paligemma), progress=False)
    table = output_rows(config_for(tmp_path, tiny_paligemma)).to_pylist()
    assert len(table) == manifest["processed"] == 3 + 2 * len(BAD_FILES) - 0  # every listed photo, once
    errors = {row["image_uri"].rsplit("/", 1)[1]: row for row in table if row["status"] == "error"}
    for name, (_, reason) in BAD_FILES.items():
        row = errors[f"{name}.jpg"]
        assert any(reason in r for r in row["reasons"]), row["reasons"]
        assert row["meter_id"] is None and any("does not match the photo layout" in r for r in row["reasons"])


def test_new_photo_adds_exactly_one_row(tmp_path, tiny_paligemma):
    write_bucket(tmp_path / "bucket", 6, seed=5)
    config = config_for(tmp_path, tiny_paligemma)
    run_read(config, progress=False)
    write_bucket(tmp_path / "extra", 1, seed=6)
    extra = next((tmp_path / "extra").rglob("*.jpg"))
    target = tmp_path / "bucket" / "MTR-NEW" / extra.name
    target.parent.mkdir()
    target.write_bytes(extra.read_bytes())
    manifest = run_read(config, progress=False)
    assert (manifest["processed"], manifest["already_done"]) == (1, 6)
    assert output_rows(config).num_rows == 7


def test_a_run_that_lost_its_lease_stops_before_writing(tmp_path, tiny_paligemma, monkeypatch):
    write_bucket(tmp_path / "bucket", 8, seed=3)
    config = config_for(tmp_path, tiny_paligemma)
    process_shard = runner.process_shard

    def taken_over_while_reading(*args, **kwargs):  # another run takes the output while shard 1 is read
        rows = process_shard(*args, **kwargs)
        fs, root = resolve(config.output)
        fs.rm_file(f"{root}/{lease.LEASE_PATH}")
        lease.acquire(fs, root, "other-run")
        return rows

    monkeypatch.setattr(runner, "process_shard", taken_over_while_reading)
    with pytest.raises(lease.RunLocked, match="lost the output's lease: run other-run holds it"):
        run_read(config, progress=False)
    fs, root = resolve(config.output)
    assert not fs.glob(f"{root}/**/*.parquet")  # nothing written beside the new holder
    with pytest.raises(lease.RunLocked, match="locked by run other-run"):  # and its lease was left alone
        lease.acquire(fs, root, "third")


def test_limit_and_manifest(tmp_path, tiny_paligemma):
    write_bucket(tmp_path / "bucket", 6, seed=7)
    config = config_for(tmp_path, tiny_paligemma, limit=2, run_id="night-1")
    manifest = run_read(config, progress=False)
    assert manifest["processed"] == 2 and manifest["run_id"] == "night-1"
    assert (tmp_path / "out" / "_manifests" / "night-1.json").is_file()
    assert sum(manifest["counts"].values()) == 2
    assert all(date.fromisoformat(f.split("capture_date=")[1][:10]) for f in manifest["files"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"min_confidence": 2.0}, "min_confidence"),
        ({"key_pattern": "("}, "key_pattern"),
        ({"run_id": "../x"}, "run_id"),
        ({"output": "/same"}, "differ"),
        ({"model": {"base": "x", "pattern": "20"}}, "20 integer digits; the reading column"),
        ({"model": {"base": "x", "pattern": "6.7"}}, "7 decimals; the reading column .* would be rounded"),
    ],
)
def test_config_errors_are_actionable(overrides, message):
    values = {"source": "/same", "output": "/out", "model": {"base": "x"}, **overrides}
    with pytest.raises(ConfigError, match=message):
        ReadConfig.from_mapping(values).validate()


def test_unknown_settings_are_rejected():
    with pytest.raises(ConfigError, match="unknown read setting"):
        ReadConfig.from_mapping({"source": "a", "output": "b", "batchsize": 3})


@pytest.mark.parametrize("family", ["florence2", "ppocr"])
def test_every_family_runs_through_the_same_pipeline(request, tmp_path, family):
    """The read path is family-agnostic: one row per photo with the family's prompt, model id and a numeric reading."""
    base = request.getfixturevalue(f"tiny_{family}")
    write_bucket(tmp_path / "bucket", 3, seed=8)
    config = ReadConfig(
        source=str(tmp_path / "bucket"),
        output=str(tmp_path / "out"),
        model=ModelSpec(family=family, base=base, device="cpu"),
    ).validate()
    manifest = run_read(config, progress=False)
    table = output_rows(config)
    assert manifest["processed"] == table.num_rows == 3
    assert set(table.column("prompt").to_pylist()) == {DEFAULT_PROMPTS[family]}
    assert set(table.column("model_id").to_pylist()) == {base}
    assert set(table.column("status").to_pylist()) <= {"accepted", "flagged"}
    assert all(
        text and text.replace(",", ".").replace(".", "", 1).isdigit()
        for text in table.column("reading_text").to_pylist()
    )


def test_meter_type_and_florence_tasks_are_recorded(tmp_path, tiny_florence2):
    write_bucket(tmp_path / "bucket", 2, seed=9)
    config = ReadConfig(
        source=str(tmp_path / "bucket"),
        output=str(tmp_path / "out"),
        model=ModelSpec(family="florence2", base=tiny_florence2, device="cpu"),
        meter_types=("electricity-lcd", "gas-mechanical"),
        tasks=("<OCR_WITH_REGION>", "<CAPTION>"),
    ).validate()
    run_read(config, progress=False)
    rows = output_rows(config).to_pylist()
    assert len(rows) == 2
    for row in rows:
        assert row["meter_type"] in ("electricity-lcd", "gas-mechanical") and 0.5 <= row["meter_type_confidence"] <= 1
        outputs = __import__("json").loads(row["task_outputs"])
        assert set(outputs) == {"<OCR_WITH_REGION>", "<CAPTION>"}
        assert set(outputs["<OCR_WITH_REGION>"]) == {"quad_boxes", "labels"} and "text" in outputs["<CAPTION>"]


def test_tasks_need_florence2_and_known_task_tokens():
    with pytest.raises(ConfigError, match="need the florence2 family"):
        ReadConfig.from_mapping({"source": "a", "output": "b", "model": {"base": "x"}, "tasks": ["<OCR>"]}).validate()
    with pytest.raises(ConfigError, match="unknown Florence-2 task"):
        ReadConfig.from_mapping(
            {"source": "a", "output": "b", "model": {"family": "florence2", "base": "x"}, "tasks": ["<SING>"]}
        ).validate()


@pytest.mark.parametrize(
    ("meters", "size", "expected"),
    [
        ("aabbcc", 2, [(0, 2), (2, 4), (4, 6)]),
        ("aaabbc", 2, [(0, 3), (3, 5), (5, 6)]),  # a meter is not split across shards
        ("aaaaaab", 2, [(0, 6), (6, 7)]),  # ... even past twice the shard size: one bigger shard
        ("abcdef", 4, [(0, 4), (4, 6)]),
        ([None] * 5, 2, [(0, 2), (2, 4), (4, 5)]),  # photos without a meter may be cut anywhere
        ("", 3, []),
    ],
)
def test_shards_keep_a_meters_photos_together(meters, size, expected):
    assert shard_bounds(list(meters), size) == expected


def listed(*keys: str) -> list[planning.Photo]:
    """Photos as the listing gives them (in key order), described by the default key pattern."""
    infos = [ObjectInfo(f"file:///b/{key}", f"/b/{key}", key, 1, "e", None) for key in sorted(keys)]
    return [planning.photo_from_object(info, DEFAULT_KEY_PATTERN) for info in infos]


def test_shards_hold_each_meters_photos_whole_and_in_capture_order():
    photos = listed(  # day-first date folders: key order is not capture order
        *(f"{d:02}-0{m}-2026/{meter}/20260{m}{d:02}T120000Z.jpg" for d in (1, 9, 15) for m in (1, 2) for meter in "AB"),
        "loose-2.jpg",
        "loose-1.jpg",
    )
    shards = planning.shard_photos(photos, 2)
    by_meter = [[photo.meter_id for photo in shard.photos] for shard in shards]
    assert by_meter == [["A"] * 6, ["B"] * 6, [None, None]]  # never split, though each meter has 3 x shard_size
    for shard in shards[:2]:
        times = [photo.captured_at for photo in shard.photos]
        assert times == sorted(times) and len(set(times)) == 6
    assert [photo.key for photo in shards[2].photos] == ["loose-1.jpg", "loose-2.jpg"]
    assert planning.shard_photos(list(reversed(photos)), 2) == shards  # the same work, the same shards


def judged(history: MeterHistory, key: str, text: str) -> dict:
    """Judge one late photo against `history` as a run does (accepted readings join it)."""
    (photo,) = listed(key)
    row = {"processed_at": datetime(2026, 2, 1, tzinfo=timezone.utc), "meter_id": photo.meter_id}
    return rows.judge(row, Prediction(text, (0.0,)), photo, history, None, Rules())[0]


def test_a_late_photo_is_judged_against_the_accepted_readings_on_both_sides():
    history = MeterHistory()
    history.add("M1", datetime(2026, 1, 1, tzinfo=timezone.utc), Decimal("451935.9"))
    history.add("M1", datetime(2026, 1, 10, tzinfo=timezone.utc), Decimal("451963.9"))
    late = judged(history, "M1/20260105T120000Z.jpg", "452038.8")
    assert late["status"] == "flagged" and "exceeds the later accepted reading 451963.9" in late["reasons"][0]
    fits = judged(history, "M1/20260106T120000Z.jpg", "451950.0")
    assert (fits["status"], fits["reasons"]) == ("accepted", [])
    assert len(history.readings["M1"]) == 3  # the accepted late reading joined the history; old ones untouched


def test_a_photo_before_every_known_reading_has_no_previous():
    history = MeterHistory()
    history.add("M1", datetime(2026, 1, 10, tzinfo=timezone.utc), Decimal("200"))
    first = judged(history, "M1/20260105T120000Z.jpg", "190")
    assert (first["status"], first["reasons"]) == ("accepted", [])


@pytest.mark.parametrize("state", ["missing", "empty", "no photos"])
def test_a_source_with_nothing_to_read_fails_before_anything_is_written(tmp_path, state):
    if state != "missing":
        (tmp_path / "bucket").mkdir()
    if state == "no photos":
        (tmp_path / "bucket" / "notes.txt").write_text("not a photo")
    config = ReadConfig(source=str(tmp_path / "bucket"), output=str(tmp_path / "out"), model=ModelSpec(base="x"))
    with pytest.raises(planning.NothingToRead, match="does not exist" if state == "missing" else "lists no photos"):
        run_read(config.validate(), progress=False)  # fails before the (unloadable) model "x" is needed
    assert not (tmp_path / "out").exists()  # no _manifests, no lease
    assert planning.list_source(config.replace(allow_empty=True)) == []


def test_a_night_lists_only_its_date_prefixes_and_says_so_when_they_are_empty(tmp_path):
    for key in ("2026-11-26/M1/20261126T200000.jpg", "2026-11-27/M1/20261127T200000.jpg"):
        (tmp_path / "bucket" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "bucket" / key).write_bytes(meter_jpeg())
    pattern = r"(?:^|/)(?P<meter_id>[^/]+)/(?P<timestamp>\d{8}T\d{6}Z?)\.jpg$"
    config = ReadConfig(
        source=str(tmp_path / "bucket"), output=str(tmp_path / "out"), model=ModelSpec(base="x"), key_pattern=pattern
    )
    night = config.replace(prefixes=("2026-11-27/",)).validate()
    assert [photo.key for photo in planning.list_source(night)] == ["2026-11-27/M1/20261127T200000.jpg"]
    after = config.replace(list_after="2026-11-26/M1/20261126T200000.jpg").validate()
    assert [photo.meter_id for photo in planning.list_source(after)] == ["M1"]
    with pytest.raises(planning.NothingToRead, match=r"under prefixes \['2026-11-28/'\]"):
        planning.list_source(config.replace(prefixes=("2026-11-28/",)).validate())
    with pytest.raises(ConfigError, match="relative to source"):
        config.replace(prefixes=("/abs/",)).validate()


def test_a_meters_table_typo_stops_the_run_up_front_naming_the_row(tmp_path):
    write_bucket(tmp_path / "bucket", 1, seed=3)
    (tmp_path / "meters.csv").write_text("meter_id,digits\nMTR-000,5\nMTR-001,1000000\n")
    config = ReadConfig(
        source=str(tmp_path / "bucket"),
        output=str(tmp_path / "out"),
        model=ModelSpec(base="x"),
        meters_table=str(tmp_path / "meters.csv"),
    ).validate()
    with pytest.raises(MetersTableError, match=r"meters.csv: row 2 \(line 3\), column digits: 1000000 is outside"):
        run_read(config, progress=False)
    assert not (tmp_path / "out").exists()


def test_photos_under_odd_s3_keys_are_read(s3_bucket):
    fs, bucket = s3_bucket
    for key in ("site::a/MTR-1/20260301T120000.jpg", "site?versionId=2/MTR-2/20260301T120000.jpg"):
        fs.call_s3("put_object", Bucket=bucket, Key=f"in/{key}", Body=meter_jpeg())  # s3fs could not write these
    config = ReadConfig(source=f"s3://{bucket}/in", output=f"s3://{bucket}/out", model=ModelSpec(base="x")).validate()
    photos = planning.list_source(config)
    assert [photo.meter_id for photo in photos] == ["MTR-1", "MTR-2"]
    for photo in photos:
        fetched = fetching.fetch_and_preprocess(photo, 64, config)
        assert fetched.error is None and fetched.image is not None, (photo.key, fetched.error)


def test_a_contradicted_jump_is_flagged_and_later_readings_are_not(tmp_path):
    bucket = tmp_path / "bucket"
    stamps = ["20260301T120000", "20260302T120000", "20260303T120000", "20260304T120000", "20990101T000000"]
    for stamp in stamps:
        meter = "MTR-2" if stamp.startswith("2099") else "MTR-1"
        (bucket / meter).mkdir(parents=True, exist_ok=True)
        (bucket / meter / f"{stamp}.jpg").write_bytes(meter_jpeg(seed=len(stamp)))
    config = config_for(tmp_path, "x")
    photos = planning.list_source(config)
    shard = planning.Shard("s1", tuple(photos))
    reader = ScriptedReader(["100", "900", "105", "110", "5"])
    rows = runner.process_shard(config, reader, shard, "run-1", MeterHistory(), {})
    assert [row["status"] for row in rows] == ["accepted", "flagged", "accepted", "accepted", "flagged"]
    assert any("contradicted by the next reading 105" in reason for reason in rows[1]["reasons"])
    assert any("looks like a misread" in reason for reason in rows[2]["reasons"])
    assert any("implausible capture time 2099-01-01" in reason for reason in rows[4]["reasons"])


def scripted_night(config, monkeypatch, texts):
    """One run_read with a ScriptedReader answering `texts` in order (a StopIteration if it is asked for more)."""
    monkeypatch.setattr(runner, "cached_reader", lambda spec: ScriptedReader(texts))
    return run_read(config, progress=False)


def rows_of(config, uri_part):
    return [row for row in output_rows(config).to_pylist() if uri_part in row["image_uri"]]


def put(path, data, mtime):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))  # the local etag is size-mtime


def test_a_new_version_of_a_photo_is_read_again_without_its_own_stale_reading(tmp_path, monkeypatch):
    bucket = tmp_path / "bucket" / "MTR-1"
    put(bucket / "20260301T120000.jpg", meter_jpeg(seed=1), 1_000)
    put(bucket / "20260302T120000.jpg", meter_jpeg(seed=2), 1_000)
    config = config_for(tmp_path, "x")
    scripted_night(config, monkeypatch, ["100", "900"])  # the second photo was misread as 900
    put(bucket / "20260302T120000.jpg", meter_jpeg(seed=3), 2_000)  # re-uploaded: new content, new etag
    second = scripted_night(config, monkeypatch, ["150"])
    assert (second["processed"], second["already_done"]) == (1, 1)
    newest = max(rows_of(config, "20260302"), key=lambda row: row["processed_at"])
    assert newest["status"] == "accepted", newest["reasons"]  # not "decreased" against its own stale 900
    put(bucket / "20260303T120000.jpg", meter_jpeg(seed=4), 3_000)
    scripted_night(config, monkeypatch, ["160"])  # history holds the photo's current reading, 150, not 900
    (third,) = rows_of(config, "20260303")
    assert third["status"] == "accepted", third["reasons"]


def test_the_same_content_under_a_new_etag_is_not_read_again(tmp_path, monkeypatch):
    photo = tmp_path / "bucket" / "MTR-1" / "20260301T120000.jpg"
    put(photo, meter_jpeg(seed=1), 1_000)
    config = config_for(tmp_path, "x")
    scripted_night(config, monkeypatch, ["100"])
    os.utime(photo, (5_000, 5_000))  # a `touch`: new etag, same bytes
    again = scripted_night(config, monkeypatch, [])  # the model is not asked
    assert (again["listed"], again["already_done"], again["processed"]) == (1, 0, 0)
    assert len(rows_of(config, "20260301")) == 1
    assert scripted_night(config.replace(reprocess=True), monkeypatch, ["100"])["processed"] == 1  # unless asked


def test_stray_files_in_the_output_do_not_stop_a_night(tmp_path, monkeypatch):
    put(tmp_path / "bucket" / "MTR-1" / "20260301T120000.jpg", meter_jpeg(seed=1), 1_000)
    config = config_for(tmp_path, "x")
    scripted_night(config, monkeypatch, ["100"])
    out = tmp_path / "out"
    (out / "README.txt").write_text("readings, one Parquet file per shard\n")
    (out / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    put(out / "photos" / "MTR-9" / "20260301T120000.jpg", meter_jpeg(seed=9), 1_000)
    put(tmp_path / "bucket" / "MTR-1" / "20260302T120000.jpg", meter_jpeg(seed=2), 1_000)
    night = scripted_night(config, monkeypatch, ["101"])
    assert (night["processed"], night["already_done"]) == (1, 1)
    assert output_rows(config).num_rows == 2


@pytest.mark.parametrize(
    ("source", "output", "says"),
    [
        ("/data/photos", "/data/photos/readings", "output /data/photos/readings lies inside source /data/photos"),
        ("/data/photos/", "/data", "source /data/photos/ lies inside output /data"),
        ("s3://b/in", "s3://b/in/out", "output s3://b/in/out lies inside source s3://b/in"),
        ("s3://b/x/in", "s3a://b/x", "source s3://b/x/in lies inside output s3a://b/x"),
    ],
)
def test_source_and_output_inside_one_another_are_refused_up_front(source, output, says):
    with pytest.raises(ConfigError, match=says):
        ReadConfig(source=source, output=output, model=ModelSpec(base="x")).validate()
    ReadConfig(source=source.rstrip("/") + "-other", output=output + "-other", model=ModelSpec(base="x")).validate()


def test_photos_read_again_tonight_are_no_reference_for_each_other(tmp_path):
    """The night after a promotion reads every photo again: the old model's accepted misread of a later photo must
    not flag the new, right reading of an earlier one (it did, as `exceeds_later_reading`)."""
    first, misread = listed("M1/20260101T120000Z.jpg", "M1/20260102T120000Z.jpg")
    old = [
        {
            "run_id": "old",
            "image_uri": photo.uri,
            "meter_id": "M1",
            "captured_at": photo.captured_at,
            "capture_date": photo.captured_at.date(),
            "reading": Decimal(value),
            "status": "accepted",
            "reasons": [],
            "processed_at": datetime(2026, 1, 3, tzinfo=timezone.utc),
        }
        for photo, value in ((first, "100"), (misread, "50"))  # the old model's rows; 50 is a misread
    ]
    config = config_for(tmp_path, "x")
    fs, root = resolve(config.output)
    sink.write_shard(fs, root, old, "old", "s1")
    history = planning.load_history(config, [first, misread], "tonight")
    assert history.following("M1", first.captured_at) is None and history.previous("M1", misread.captured_at) is None
    judged_first = rows.judge(
        {"processed_at": datetime(2026, 2, 1, tzinfo=timezone.utc), "meter_id": "M1"},
        Prediction("100", (0.0,)),
        first,
        history,
        None,
        Rules(),
    )[0]
    assert (judged_first["status"], judged_first["reasons"]) == ("accepted", [])
    (later,) = listed("M1/20260105T120000Z.jpg")
    others = planning.load_history(config, [later], "tonight")  # photos not read tonight keep their readings
    assert others.previous("M1", later.captured_at).value == Decimal("50")


def test_planning_reads_the_state_through_one_retry_layer(tmp_path, monkeypatch):
    """Each storage call retries itself; a retry around the whole lookup on top multiplied the attempts (4 x 4)."""
    from fsspec.implementations.local import LocalFileSystem

    from meterread import storage

    write_bucket(tmp_path / "bucket", 2, seed=3)
    (tmp_path / "out").mkdir()
    config = config_for(tmp_path, "x")
    listed = planning.list_source(config)
    monkeypatch.setattr(storage, "retry_pause", lambda _: None)
    calls = []

    def throttled_find(self, path, *args, **kwargs):
        calls.append(path)
        raise TimeoutError("slow down")

    monkeypatch.setattr(LocalFileSystem, "find", throttled_find)
    with pytest.raises(TimeoutError):
        planning.plan_run(config, "fingerprint", listed=listed)
    assert len(calls) == storage.STORAGE_ATTEMPTS


def test_a_meter_whose_register_the_meters_table_knows_is_read_within_it(tmp_path, tiny_ppocr):
    """A real (untrained) reader, whose free readings have any shape: the first meter's readings take the 4.2
    register the table gives it, whatever the pixels; the second (digits only, decimals unknown) is read freely."""
    samples = write_bucket(tmp_path / "bucket", 12, seed=3)
    known_meter, other_meter = sorted({s.meter_id for s in samples})[:2]
    (tmp_path / "meters.csv").write_text(f"meter_id,digits,decimals\n{known_meter},4,2\n{other_meter},5,\n")
    config = ReadConfig(
        source=str(tmp_path / "bucket"),
        output=str(tmp_path / "out"),
        model=ModelSpec(family="ppocr", base=tiny_ppocr, device="cpu"),
        meters_table=str(tmp_path / "meters.csv"),
        batch_size=8,
    ).validate()
    run_read(config, progress=False)
    rows = output_rows(config).to_pylist()
    known = [row["reading_text"] for row in rows if row["meter_id"] == known_meter]
    free = [row["reading_text"] for row in rows if row["meter_id"] != known_meter]
    assert len(rows) == 12 and known and free
    assert all(re.fullmatch(r"\d{4}\.\d{2}", text) for text in known), known
    assert not all(re.fullmatch(r"\d{4}\.\d{2}", text or "") for text in free), free
    held = {(row["meter_id"] == known_meter, row["reading_pattern"]) for row in rows}
    assert held == {(True, "4.2"), (False, None)}  # each row says what its reading was held to


def test_read_batch_hands_the_reader_each_meters_register_pattern(tmp_path):
    bucket = tmp_path / "bucket"
    for meter in ("M1", "M2"):
        put(bucket / meter / "20260301T120000.jpg", meter_jpeg(seed=len(meter)), 1_000)
    config = config_for(tmp_path, "x")
    shard = planning.Shard("s1", tuple(planning.list_source(config)))
    reader = ScriptedReader(["1234.5", "77"])
    profiles = {"M1": MeterProfile(digits=4, decimals=1), "M2": MeterProfile(decimals=2)}
    rows = runner.process_shard(config, reader, shard, "run-1", MeterHistory(), profiles)
    assert reader.patterns_read == ["4.1", None]  # M2's register is not known whole: the run's own pattern
    assert [(row["reading_text"], row["reading_pattern"]) for row in rows] == [("1234.5", "4.1"), ("77", None)]
    for setting, recorded in (
        ({"constrained": False}, None),
        ({"compile": True, "pattern": "5.0"}, "5"),
    ):
        spec = ModelSpec(family="paligemma", base="fake", **setting)
        free = ScriptedReader(["1234.5", "77", "0", "0"], spec=spec)  # no pattern applies / one shape all night
        read = runner.process_shard(config, free, shard, "run-2", MeterHistory(), profiles)  # compiled: padded to 4
        assert free.patterns_read and set(free.patterns_read) == {spec.pattern}, setting  # never the table's
        assert [row["reading_pattern"] for row in read] == [recorded, recorded], setting


def test_an_ensemble_of_checkpoints_reads_a_bucket_as_one_model(tmp_path):
    """Members of different squares: every photo one row, each row naming the ensemble and its fingerprint."""
    members = [build_tiny(tmp_path / "a", seed=1), build_tiny(tmp_path / "b", TinySize(image_size=96), seed=2)]
    ensemble = build_ensemble(tmp_path / "ensemble", members)
    write_bucket(tmp_path / "bucket", 6, seed=3)
    config = config_for(tmp_path, str(ensemble))
    assert run_read(config, progress=False)["processed"] == 6
    rows = output_rows(config).to_pylist()
    assert len(rows) == 6 and {row["model_id"] for row in rows} == {str(ensemble)}
    assert {row["model_fingerprint"] for row in rows} == {spec_fingerprint(config.model)}
    assert all(row["reading_text"] and row["confidence"] is not None for row in rows)  # every photo was read
    assert run_read(config, progress=False)["processed"] == 0
