"""The vision warm start's heads: character slots (positions) and CTC over token columns (columns)."""

import pytest
import torch

from meterread.config import TrainConfig, TrainConfigError
from meterread.training.warmstart import (
    BLANK,
    CHARSET,
    ColumnHead,
    PositionHead,
    encode_labels,
    greedy_ctc,
    make_head,
    token_grid_side,
)


def one_hot_path(path: list[int]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor([path]), BLANK + 1).float()


def test_greedy_ctc_merges_repeats_and_drops_blanks():
    one, dot, five = CHARSET.index("1"), CHARSET.index("."), CHARSET.index("5")
    assert greedy_ctc(one_hot_path([one, one, BLANK, one, dot, BLANK, five, five])) == ["11.5"]
    assert greedy_ctc(one_hot_path([BLANK] * 6)) == [""]


def test_labels_read_commas_as_points_and_pad():
    assert encode_labels(["1,5"], max_chars=4).tolist() == [[1, 10, 5, 11]]


def test_column_head_needs_a_square_token_grid():
    assert token_grid_side(64) == 8
    with pytest.raises(ValueError, match="square grid of image tokens; this model has 17"):
        ColumnHead(17, 8)


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


def test_a_reading_longer_than_the_frames_costs_nothing_instead_of_infinity():
    head = ColumnHead(4, 8)  # 2 columns x 2 frames
    loss = head.loss(head(torch.randn(2, 4, 8)), ["123456", "1"])
    assert torch.isfinite(loss)


def test_heads_by_name():
    assert isinstance(make_head("positions", 16, 8), PositionHead)
    assert isinstance(make_head("columns", 16, 8), ColumnHead)
    with pytest.raises(ValueError, match="choose one of positions, columns"):
        make_head("rows", 16, 8)


def test_the_recipe_names_a_known_head():
    values = {"base": "x", "dataset": "d", "output": "o"}
    assert TrainConfig.from_mapping(values).validate().warm_start_head == "positions"
    with pytest.raises(TrainConfigError, match="warm_start_head must be one of positions, columns"):
        TrainConfig.from_mapping({**values, "warm_start_head": "rows"}).validate()
