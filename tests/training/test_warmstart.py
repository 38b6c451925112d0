"""The vision warm start's heads: character slots (positions) and CTC over token columns (columns)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from meterread.config import WARM_START_HEADS, TrainConfig, TrainConfigError
from meterread.training.warmstart import (
    BLANK,
    CHARSET,
    HEADS,
    ColumnHead,
    PositionHead,
    ctc_frames_needed,
    encode_labels,
    greedy_ctc,
    make_head,
    token_grid,
    warm_start_vision,
)


def one_hot_path(path: list[int]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor([path]), BLANK + 1).float()


def test_greedy_ctc_merges_repeats_and_drops_blanks():
    one, dot, five = CHARSET.index("1"), CHARSET.index("."), CHARSET.index("5")
    assert greedy_ctc(one_hot_path([one, one, BLANK, one, dot, BLANK, five, five])) == ["11.5"]
    assert greedy_ctc(one_hot_path([BLANK] * 6)) == [""]


def test_labels_read_commas_as_points_and_pad():
    assert encode_labels(["1,5"], max_chars=4).tolist() == [[1, 10, 5, 11]]


def test_column_head_needs_a_square_token_grid_after_at_most_one_pooled_token():
    assert token_grid(64) == (8, 0)  # PaliGemma: the grid alone
    assert token_grid(17) == (4, 1)  # Florence-2: the spatial mean first, then the grid
    with pytest.raises(ValueError, match="square grid of image tokens; this model has 18"):
        ColumnHead(18, 8)


def test_a_leading_pooled_token_feeds_no_column():
    head = ColumnHead(17, 4, frames=2)
    features = torch.zeros(1, 17, 4, requires_grad=True)
    head(features).sum().backward()
    assert features.grad[0, 0].abs().sum() == 0 and features.grad[0, 1:].abs().sum(-1).min() > 0


def test_each_column_of_tokens_feeds_only_its_own_frames():
    """Row-major tokens: column j of the grid (tokens j, j+side, ...) must drive frames 2j and 2j+1 only."""
    head = ColumnHead(16, 4, frames=2)
    features = torch.zeros(1, 16, 4, requires_grad=True)
    head(features)[0, 2:4].sum().backward()  # the frames of column 1
    touched = sorted(set(features.grad[0].abs().sum(-1).nonzero().flatten().tolist()))
    assert touched == [1, 5, 9, 13]


def test_column_head_learns_readings_of_every_length():
    torch.manual_seed(0)
    head = ColumnHead(64, 16)
    features, labels = torch.randn(4, 64, 16), ["12345.6", "0011", "9,87", "5"]
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(150):
        loss = head.loss(head(features), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert greedy_ctc(head(features)) == ["12345.6", "0011", "9.87", "5"]
    assert head.accuracy(head(features), labels) == 1.0


def test_heads_name_the_labels_they_cannot_hold():
    """CTC needs a blank between repeats: "11" takes 3 frames; ctc_loss would score an unfit label as zero loss."""
    assert [ctc_frames_needed(label) for label in ("123", "11", "1,1")] == [3, 3, 3]
    columns = ColumnHead(4, 8)  # 2 columns x 2 frames
    assert columns.unfit(["1234", "12345", "111", "11"]) == ["12345", "111"]
    assert PositionHead(4, 8, max_chars=4).unfit(["1234", "123.4"]) == ["123.4"]


class GridEncoder(torch.nn.Module):
    """A stand-in vision tower: 16 image tokens (a 4 x 4 grid) of 8 features."""

    device = torch.device("cpu")

    def __init__(self):
        super().__init__()
        self.vision = torch.nn.Linear(3, 16 * 8)

    def get_image_features(self, pixel_values):
        return self.vision(pixel_values.mean((2, 3))).view(-1, 16, 8)


def test_a_warm_start_refuses_labels_its_head_cannot_hold_before_any_step():
    model = GridEncoder()
    before = model.vision.weight.detach().clone()
    reader = SimpleNamespace(model=model, processor=SimpleNamespace(image_processor=SimpleNamespace(
        image_mean=[0.5] * 3, image_std=[0.5] * 3)))  # fmt: skip
    images = [np.zeros((8, 8, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match="1 of 2 labels do not fit the columns head"):
        warm_start_vision(reader, images, ["12", "123456789"], 5, 1e-2, 2, head_kind="columns", log=lambda _: None)
    assert torch.equal(model.vision.weight, before)
    warm_start_vision(reader, images, ["12", "1234"], 2, 1e-2, 2, head_kind="columns", log=lambda _: None)
    assert not torch.equal(model.vision.weight, before)  # a fitting set does train the tower


def test_heads_by_name():
    assert set(HEADS) == set(WARM_START_HEADS)  # the recipe's names and the heads are one list
    assert isinstance(make_head("positions", 16, 8), PositionHead)
    assert isinstance(make_head("columns", 16, 8), ColumnHead)
    with pytest.raises(ValueError, match="choose one of positions, columns"):
        make_head("rows", 16, 8)


def test_the_recipe_names_a_known_head():
    values = {"base": "x", "dataset": "d", "output": "o"}
    assert TrainConfig.from_mapping(values).validate().warm_start_head == "positions"
    with pytest.raises(TrainConfigError, match="warm_start_head must be one of positions, columns"):
        TrainConfig.from_mapping({**values, "warm_start_head": "rows"}).validate()
    with pytest.raises(TrainConfigError, match="'columns' reads the image left to right: it needs display_rows 1"):
        TrainConfig.from_mapping({**values, "warm_start_head": "columns", "display_rows": 2}).validate()
