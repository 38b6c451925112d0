"""`meterread restrip`: a ppocr checkpoint set to read another strip size, same weights, and its refusals."""

import json

import cv2
import numpy as np
import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from meterread.cli import app
from meterread.config import ModelSpec
from meterread.models.registry import load_reader
from meterread.preprocess import preprocess_photo
from meterread.training.restrip import RESTRIP_FILE, restrip_checkpoint, restripped_config


def same_weights(a, b) -> bool:
    """Whether checkpoint folders `a` and `b` hold the same tensors."""
    first, second = load_file(f"{a}/model.safetensors"), load_file(f"{b}/model.safetensors")
    return first.keys() == second.keys() and all((first[k] == second[k]).all() for k in first)


def test_the_config_changes_only_the_strip_size():
    config = {"model_type": "ppocr", "image_size": 128, "strip_width": 320, "neck_hidden": 120}
    assert restripped_config(config, 424, 64) == {**config, "strip_width": 424, "strip_height": 64}
    assert restripped_config(config, 424, 64, image_size=212)["image_size"] == 212
    with pytest.raises(ValueError, match="must be even"):
        restripped_config(config, 424, 64, image_size=211)
    with pytest.raises(ValueError, match="multiple of 16"):
        restripped_config(config, 424, 56)
    with pytest.raises(ValueError, match="multiple of 8"):
        restripped_config(config, 420, 64)
    with pytest.raises(ValueError, match="only ppocr checkpoints"):
        restripped_config({**config, "model_type": "paligemma"}, 424, 64)
    assert restripped_config({"model_type": "ppocr"}, 424, 64)["strip_height"] == 64  # PPOCRConfig's image_size


def test_a_larger_square_gives_the_strip_its_pixels_across_with_the_same_weights(tmp_path, tiny_ppocr):
    def restripped(name: str, *square: str):
        command = ["restrip", tiny_ppocr, str(tmp_path / name), "--strip-width", "256", "--strip-height", "64"]
        result = CliRunner().invoke(app, [*command, *square])
        assert result.exit_code == 0, result.output
        return load_reader(ModelSpec(base=str(tmp_path / name), device="cpu"))

    same, wide = restripped("same"), restripped("wide", "--image-size", "128")
    record = json.loads((tmp_path / "wide" / RESTRIP_FILE).read_text())
    assert (record["square_before"], record["square_after"]) == (same.image_size, wide.image_size) == (64, 128)
    stripes = np.zeros((64, 256, 3), dtype=np.uint8)
    stripes[:, ::2] = 255  # one-pixel columns: a 256 px strip keeps them only if the square is 256 px across
    photo = cv2.imencode(".png", stripes)[1].tobytes()

    def column_contrast(reader) -> float:
        image = preprocess_photo(photo, reader.image_size, layout=reader.layout).image
        strip = reader.pixels([image])[0]
        assert tuple(strip.shape) == (3, 64, 256)
        return float((strip[:, :, 1:] - strip[:, :, :-1]).abs().mean())

    assert column_contrast(wide) > 1.5 > 0.1 > column_contrast(same)
    assert same_weights(tiny_ppocr, tmp_path / "wide")


def test_a_restripped_checkpoint_has_the_same_weights_and_reads_the_new_size(tmp_path, tiny_ppocr):
    result = CliRunner().invoke(
        app, ["restrip", tiny_ppocr, str(tmp_path / "tall"), "--strip-width", "256", "--strip-height", "64"]
    )
    assert result.exit_code == 0, result.output
    tall = tmp_path / "tall"
    assert same_weights(tiny_ppocr, tall)
    assert json.loads((tall / RESTRIP_FILE).read_text())["strip_after"] == [64, 256]
    reader = load_reader(ModelSpec(base=str(tall), device="cpu"))
    image = np.zeros((reader.image_size, reader.image_size, 3), dtype=np.uint8)
    assert tuple(reader.pixels([image]).shape) == (1, 3, 64, 256)
    assert len(reader.read([image], [reader.default_prompt])) == 1
    original = load_reader(ModelSpec(base=tiny_ppocr, device="cpu"))
    assert tuple(original.pixels([image]).shape[2:]) != (64, 256)  # the source folder is left as it was


def test_what_cannot_be_restripped_is_refused_before_anything_is_written(tmp_path, tiny_ppocr, tiny_paligemma):
    with pytest.raises(ValueError, match="not a full checkpoint"):
        restrip_checkpoint(tmp_path / "nothing", tmp_path / "out", 256, 64)
    with pytest.raises(ValueError, match="only ppocr checkpoints"):
        restrip_checkpoint(tiny_paligemma, tmp_path / "out", 256, 64)
    with pytest.raises(ValueError, match="must not be SOURCE"):
        restrip_checkpoint(tiny_ppocr, tiny_ppocr, 256, 64)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "trainer_state.pt").write_text("an earlier run's")
    with pytest.raises(ValueError, match="not empty"):
        restrip_checkpoint(tiny_ppocr, tmp_path / "used", 256, 64)
    result = CliRunner().invoke(
        app, ["restrip", tiny_ppocr, str(tmp_path / "out"), "--strip-width", "256", "--strip-height", "50"]
    )
    assert result.exit_code == 2 and "multiple of 16" in result.output
    assert not (tmp_path / "out").exists()
