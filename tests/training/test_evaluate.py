import pytest

from meterread.training.evaluate import (
    Scored,
    accuracy_at_coverage,
    calibration_bins,
    character_error_rate,
    is_digits_exact,
    is_exact,
    levenshtein,
    prediction_rows,
    recommend_threshold,
    register_pattern_of,
    risk_coverage_curve,
    summarise,
    threshold_table,
)


@pytest.mark.parametrize(
    ("label", "text", "exact"),
    [
        ("9845.9", "9845.9", True),
        ("09845.9", "9845.9", True),
        ("9845.9", "9845,9", True),
        ("9845.9", "9845.8", False),
        ("9845.9", None, False),
        ("9845.9", "", False),
        ("9845.9", "abc", False),
        ("12", "12.0", True),
    ],
)
def test_exact_match_compares_parsed_values(label, text, exact):
    assert is_exact(Scored(label, text)) is exact


@pytest.mark.parametrize(
    ("label", "text", "digits_exact"),
    [
        ("455025", "4550.25", True),  # only the point is wrong
        ("0045.25", "45.25", True),
        ("12.0", "12", True),  # exact (same value) is digits-exact too
        ("45.20", "45.2", True),
        ("4552.9", "4552.7", False),
        ("455025", "45502", False),
        ("455025", None, False),
        ("455025", "4550x25", False),
    ],
)
def test_digits_exact_match_sets_the_decimal_point_aside(label, text, digits_exact):
    assert is_digits_exact(Scored(label, text)) is digits_exact
    summary = summarise([Scored(label, text)])
    assert summary["digits_exact_match"] == float(digits_exact) and summary["exact_match"] <= float(digits_exact)


@pytest.mark.parametrize(
    ("a", "b", "distance"), [("", "", 0), ("abc", "", 3), ("kitten", "sitting", 3), ("12.5", "12.5", 0)]
)
def test_levenshtein(a, b, distance):
    assert levenshtein(a, b) == distance


def test_cer_counts_edits_over_label_characters():
    examples = [Scored("1234", "1234"), Scored("1234", "1244"), Scored("12.5", None)]
    assert character_error_rate(examples) == pytest.approx((0 + 1 + 4) / 12)
    assert character_error_rate([]) is None


def test_accuracy_at_coverage_abstains_low_confidence_first():
    examples = [Scored("1", "1", 0.9), Scored("2", "2", 0.8), Scored("3", "9", 0.1), Scored("4", "4", None)]
    assert accuracy_at_coverage(examples, 0.5) == 1.0
    assert accuracy_at_coverage(examples, 1.0) == 0.75
    assert accuracy_at_coverage([], 0.9) is None
    assert risk_coverage_curve(examples, points=4)[-1] == (1.0, 0.75)


def test_summary_handles_empty_and_unparsable_predictions():
    empty = summarise([])
    assert empty["count"] == 0 and empty["exact_match"] is None and empty["worst"] == []
    summary = summarise([Scored("1.5", "zz", 0.99, "gas"), Scored("2", "2", 0.5, "gas"), Scored("3", "3", 0.4)])
    assert summary["exact_match"] == pytest.approx(2 / 3) and summary["parse_rate"] == pytest.approx(2 / 3)
    assert summary["by_meter_type"] == {
        "gas": {"count": 2, "exact_match": 0.5, "digits_exact_match": 0.5},
        "unknown": {"count": 1, "exact_match": 1.0, "digits_exact_match": 1.0},
    }
    assert summary["worst"][0]["text"] == "zz"


THRESHOLD_CASES = [Scored("1", "1", 0.95), Scored("2", "2", 0.85), Scored("3", "8", 0.75), Scored("4", "4", 0.4)]


def test_threshold_table_gives_flagged_and_wrong_accepted_shares():
    rows = {r["min_confidence"]: r for r in threshold_table(THRESHOLD_CASES, (0.0, 0.5, 0.8, 0.99))}
    assert rows[0.0] == {"min_confidence": 0.0, "flagged_share": 0.0, "wrong_accepted_share": 0.25}
    assert rows[0.5]["flagged_share"] == 0.25 and rows[0.5]["wrong_accepted_share"] == pytest.approx(1 / 3)
    assert rows[0.8] == {"min_confidence": 0.8, "flagged_share": 0.5, "wrong_accepted_share": 0.0}
    assert rows[0.99]["flagged_share"] == 1.0 and rows[0.99]["wrong_accepted_share"] is None


def test_recommended_threshold_is_the_lowest_that_keeps_accepted_readings_right():
    assert recommend_threshold(THRESHOLD_CASES, max_wrong=0.01, max_flagged=0.5) == 0.8
    assert recommend_threshold(THRESHOLD_CASES, max_wrong=0.01) is None  # 0.8 flags half: too many by default
    assert recommend_threshold(THRESHOLD_CASES, max_wrong=0.5) == 0.0
    assert recommend_threshold([Scored("1", "2", 0.999)]) is None
    mostly_unsure = [Scored("1", "1", 0.995)] + [Scored("2", "3", 0.5)] * 9  # trusted only by flagging 90%
    assert recommend_threshold(mostly_unsure) is None and recommend_threshold(mostly_unsure, max_flagged=0.95) == 0.6


def test_calibration_bins_pair_confidence_with_accuracy():
    bins = calibration_bins(THRESHOLD_CASES + [Scored("5", "5", 1.0)], bins=4)
    assert [b["count"] for b in bins] == [0, 1, 0, 4]  # 0.4 | 0.75, 0.85, 0.95 and 1.0 (in the last bin)
    assert bins[1]["accuracy"] == 1.0 and bins[3]["accuracy"] == 0.75  # the one read at 0.75 was wrong
    assert bins[3]["mean_confidence"] == pytest.approx((0.75 + 0.85 + 0.95 + 1.0) / 4)
    assert bins[0]["accuracy"] is None


def test_summary_breaks_down_by_meter_model():
    summary = summarise([Scored("1", "1", 0.9, "gas", meter_model="gasmeter/gmt"), Scored("2", "3", 0.9, "gas")])
    assert summary["by_meter_model"] == {
        "gasmeter/gmt": {"count": 1, "exact_match": 1.0, "digits_exact_match": 1.0},
        "unknown": {"count": 1, "exact_match": 0.0, "digits_exact_match": 0.0},
    }


def test_report_answers_which_threshold_and_shows_calibration_and_the_baseline():
    from meterread.training.report import accuracy_floor, render_html

    examples = THRESHOLD_CASES + [Scored("5", "5", 1.0, meter_model="lcd/lcd2")]
    metrics = {**summarise(examples), "baseline": {"name": "ppocr", **summarise([Scored("1", "7", 0.9)])}}
    curve = risk_coverage_curve(examples, points=5)
    page = render_html("eval", metrics, curve, [])
    assert "Which threshold?" in page and "wrong among accepted" in page and page.count("<svg") == 2
    assert "baseline: ppocr" in page and "lcd/lcd2" in page and "Reliability" in page
    assert "digits exact (point aside)" in page and page.count("digits (point aside)") == 2  # per type, per model
    assert accuracy_floor([(0.5, 0.97), (1.0, 0.93)]) == 0.9  # the risk-coverage axis zooms to where it moves
    assert accuracy_floor([]) == 0.0
    assert accuracy_floor([(0.5, 1.0), (1.0, 1.0)]) == 0.95  # all right: still an axis, not a flat line


def test_prediction_rows_are_one_per_example_with_the_baseline_beside():
    ours = [Scored("12.5", "12.5", 0.9, "gas", "a.jpg", "gasmeter/gmt"), Scored("3.1", "31", 0.4, image="b.jpg")]
    peer = [Scored("12.5", "17.5", 0.8, image="a.jpg"), Scored("3.1", "3.1", 0.7, image="b.jpg")]

    rows = prediction_rows(ours, peer)

    assert [row["image"] for row in rows] == ["a.jpg", "b.jpg"]
    assert [(row["exact"], row["digits_exact"]) for row in rows] == [(True, True), (False, True)]
    assert [(row["baseline_text"], row["baseline_exact"]) for row in rows] == [("17.5", False), ("3.1", True)]
    assert rows[0]["meter_model"] == "gasmeter/gmt" and rows[1]["confidence"] == 0.4
    assert "baseline_text" not in prediction_rows(ours)[0]
    with pytest.raises(ValueError, match="same samples"):
        prediction_rows(ours, peer[::-1])
    with pytest.raises(ValueError, match="same samples"):  # same labels, another image
        prediction_rows(ours, [peer[0], Scored("3.1", "3.1", 0.7, image="c.jpg")])


def test_predictions_parquet_keeps_its_schema_with_and_without_a_baseline(tmp_path):
    import pyarrow.parquet as pq

    from meterread.training.report import write_predictions

    ours = [Scored("12.5", None, None, image="a.jpg")]
    alone = pq.read_table(write_predictions(tmp_path / "alone.parquet", prediction_rows(ours)))
    beside = pq.read_table(write_predictions(tmp_path / "beside.parquet", prediction_rows(ours, ours), True))
    empty = pq.read_table(write_predictions(tmp_path / "empty.parquet", [], with_baseline=True))

    assert "baseline_text" not in alone.column_names and beside.column_names == empty.column_names
    assert set(beside.column_names) == set(prediction_rows(ours, ours)[0])  # the rows' keys are the schema
    assert beside.column_names[-2:] == ["baseline_exact", "baseline_digits_exact"]
    assert str(alone.schema.field("text").type) == "string" and alone.column("text").to_pylist() == [None]
    assert str(alone.schema.field("confidence").type) == "double" and empty.num_rows == 0
    assert beside.column("baseline_exact").to_pylist() == [False]
    with pytest.raises(ValueError, match="exactly the columns"):
        write_predictions(tmp_path / "x.parquet", prediction_rows(ours, ours))  # baseline rows, no baseline schema


@pytest.mark.parametrize(
    ("label", "pattern"),
    [("012345.6", "6.1"), ("4433", "4"), ("9.567", "1.3"), ("0.5", "1.1"), ("abc", None), ("", None)],
)
def test_register_pattern_of_a_label_is_its_registers_shape_leading_zeros_included(label, pattern):
    assert register_pattern_of(label) == pattern
