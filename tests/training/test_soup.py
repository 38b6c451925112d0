"""Weight averaging (`meterread average`): the mean itself, its refusals, and a loadable averaged checkpoint."""

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from meterread.cli import app
from meterread.config import ModelSpec
from meterread.models.registry import load_reader
from meterread.models.tiny import build_tiny
from meterread.training.soup import SOUP_FILE, average_checkpoints, average_state_dicts


def test_the_mean_is_weighted_keeps_dtypes_and_takes_counters_from_the_last():
    a = {
        "w": torch.tensor([0.0, 4.0]),
        "h": torch.tensor([2.0], dtype=torch.float16),
        "bn.num_batches_tracked": torch.tensor(3),
    }
    b = {
        "w": torch.tensor([2.0, 8.0]),
        "h": torch.tensor([4.0], dtype=torch.float16),
        "bn.num_batches_tracked": torch.tensor(7),
    }
    equal = average_state_dicts([a, b])
    assert torch.equal(equal["w"], torch.tensor([1.0, 6.0])) and equal["h"].dtype == torch.float16
    assert float(equal["h"]) == 3.0 and int(equal["bn.num_batches_tracked"]) == 7
    weighted = average_state_dicts([a, b], [3, 1])  # normalised: 0.75 / 0.25
    assert torch.allclose(weighted["w"], torch.tensor([0.5, 5.0]))


@pytest.mark.parametrize(
    ("states", "weights", "message"),
    [
        ([{"w": torch.zeros(2)}], None, "at least two"),
        ([{"mask": torch.tensor([1, 0])}, {"mask": torch.tensor([0, 1])}], None, "non-float tensor 'mask' differs"),
        ([{"w": torch.zeros(2)}, {"v": torch.zeros(2)}], None, "other tensors"),
        ([{"w": torch.zeros(2)}, {"w": torch.zeros(3)}], None, "different shapes"),
        ([{"w": torch.zeros(2)}, {"w": torch.zeros(2)}], [1.0], "one non-negative weight"),
        ([{"w": torch.zeros(2)}, {"w": torch.zeros(2)}], [1.0, -1.0], "one non-negative weight"),
        ([{"w": torch.zeros(2)}, {"w": torch.zeros(2)}], [0.0, 0.0], "not all zero"),
    ],
)
def test_what_cannot_be_averaged_is_refused(states, weights, message):
    with pytest.raises(ValueError, match=message):
        average_state_dicts(states, weights)


def test_two_checkpoints_average_into_one_that_loads_and_reads(tmp_path):
    first = build_tiny("ppocr", tmp_path / "a", seed=1)
    second = build_tiny("ppocr", tmp_path / "b", seed=2)
    result = CliRunner().invoke(app, ["average", str(tmp_path / "soup"), str(first), str(second), "--weights", "1,3"])
    assert result.exit_code == 0, result.output
    soup = tmp_path / "soup"
    a, b, mean = (load_file(path / "model.safetensors") for path in (first, second, soup))
    floats = [key for key in mean if mean[key].is_floating_point()]
    assert floats and all(torch.allclose(mean[k], 0.25 * a[k] + 0.75 * b[k], atol=1e-6) for k in floats)
    record = json.loads((soup / SOUP_FILE).read_text())
    assert (record["ingredients"], record["weights"]) == ([str(first), str(second)], [0.25, 0.75])
    assert len(record["recipes"]) == 2
    reader = load_reader(ModelSpec(base=str(soup), device="cpu"))  # the family comes from the copied config.json
    assert reader.family == "ppocr"
    image = torch.zeros(reader.image_size, reader.image_size, 3, dtype=torch.uint8).numpy()
    assert len(reader.read([image], [reader.default_prompt])) == 1


def test_a_checkpoint_without_full_weights_or_of_another_family_is_refused(tmp_path, tiny_ppocr, tiny_paligemma):
    (tmp_path / "adapter").mkdir()
    with pytest.raises(ValueError, match="only full, unsharded checkpoints"):
        average_checkpoints(tmp_path / "out", [tiny_ppocr, tmp_path / "adapter"])
    with pytest.raises(ValueError, match="different model types"):
        average_checkpoints(tmp_path / "out", [tiny_ppocr, tiny_paligemma])
    result = CliRunner().invoke(app, ["average", str(tmp_path / "out"), tiny_ppocr, tiny_ppocr, "--weights", "1,x"])
    assert result.exit_code == 2 and "could not convert" in result.output


def test_checkpoints_that_read_differently_shaped_inputs_are_refused(tmp_path, tiny_ppocr):
    import shutil

    cropped = tmp_path / "cropped"
    shutil.copytree(tiny_ppocr, cropped)
    (cropped / "meterread.json").write_text(json.dumps({"crop_display": True, "display_rows": 2}))
    with pytest.raises(ValueError, match="differently prepared inputs"):
        average_checkpoints(tmp_path / "out", [tiny_ppocr, cropped])
    assert not (tmp_path / "out").exists()  # refused before anything is written
    equalised = tmp_path / "equalised"
    shutil.copytree(cropped, equalised)
    layout = {"crop_display": True, "display_rows": 2}
    (equalised / "meterread.json").write_text(json.dumps({**layout, "local_contrast": True}))
    with pytest.raises(ValueError, match="differently prepared inputs"):
        average_checkpoints(tmp_path / "out", [cropped, equalised])
    (equalised / "meterread.json").write_text(json.dumps({**layout, "local_contrast": False}))
    assert (average_checkpoints(tmp_path / "out", [cropped, equalised]) / "model.safetensors").is_file()  # older json


def test_a_vision_language_checkpoint_averages_with_its_tokenizer_and_loads(tmp_path):
    first = build_tiny("paligemma", tmp_path / "a", seed=1)
    second = build_tiny("paligemma", tmp_path / "b", seed=2)
    soup = average_checkpoints(tmp_path / "soup", [first, second])
    assert (soup / "tokenizer.json").is_file() or (soup / "tokenizer_config.json").is_file()
    reader = load_reader(ModelSpec(base=str(soup), device="cpu"))
    assert reader.family == "paligemma"


def test_checkpoints_of_different_architectures_are_refused(tmp_path, tiny_ppocr):
    import shutil

    wider = tmp_path / "wider"
    shutil.copytree(tiny_ppocr, wider)
    config = json.loads((wider / "config.json").read_text())
    config["transformers_version"] = "0.0.1"  # volatile keys do not count
    (wider / "config.json").write_text(json.dumps(config))
    assert average_checkpoints(tmp_path / "same", [tiny_ppocr, wider]).is_dir()
    config["hidden_size_that_differs"] = 7
    (wider / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="different config.json"):
        average_checkpoints(tmp_path / "out", [tiny_ppocr, wider])
