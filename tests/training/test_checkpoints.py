"""Checkpoint folders are replaced whole: a save or a swap killed half-way leaves the previous checkpoint usable."""

from meterread.training.checkpoints import publish, recover_checkpoints


def folder(path, text):
    path.mkdir(parents=True)
    (path / "weights").write_text(text)
    return path


def test_publish_puts_the_new_folder_in_place_and_leaves_nothing_aside(tmp_path):
    latest = folder(tmp_path / "latest", "step 2")
    publish(folder(tmp_path / "latest.partial", "step 4"), latest)
    assert (latest / "weights").read_text() == "step 4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]
    publish(folder(tmp_path / "best.partial", "step 4"), tmp_path / "best")  # a first save has nothing to replace
    assert (tmp_path / "best" / "weights").read_text() == "step 4"


def test_recovery_puts_back_a_folder_set_aside_by_a_killed_swap_and_drops_half_written_ones(tmp_path):
    folder(tmp_path / "latest.old", "step 2")  # killed between publish's two renames
    folder(tmp_path / "latest.partial", "step 4, maybe half")
    folder(tmp_path / "best", "step 4")
    folder(tmp_path / "best.old", "step 2")  # killed before the last clean-up: best/ is whole
    folder(tmp_path / "notes.old", "the user's")  # not a checkpoint: left alone
    done = recover_checkpoints(tmp_path)
    assert (tmp_path / "latest" / "weights").read_text() == "step 2"
    assert (tmp_path / "best" / "weights").read_text() == "step 4"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "latest", "notes.old"]
    assert [line.split()[0] for line in done] == ["restored", "removed"]
    assert recover_checkpoints(tmp_path) == []
