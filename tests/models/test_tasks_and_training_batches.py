"""Teacher-forced batches (loss on a known target), Florence-2 task outputs, likelihood classification, OOM backoff."""

import numpy as np
import pytest
import torch

from meterread.config import ModelSpec
from meterread.models.base import Prediction, read_with_backoff
from meterread.models.florence2 import parse_task_output
from meterread.models.generation import sequence_logprobs
from meterread.models.registry import load_reader

IMAGES = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(2)]
FAMILIES = ["paligemma", "florence2"]


def fresh_reader(request, family):
    return load_reader(ModelSpec(family=family, base=request.getfixturevalue(f"tiny_{family}"), device="cpu"))


@pytest.mark.parametrize("family", FAMILIES)
def test_model_loss_equals_our_aligned_log_likelihood(request, family):
    """Guards against shifted-twice labels (transformers #46897): the model's loss must equal the mean negative
    log-probability of exactly the answer tokens, aligned as we align them."""
    reader = fresh_reader(request, family)
    batch = reader.training_batch(IMAGES, [reader.default_prompt] * 2, ["9845.9", "12"])
    with torch.no_grad():
        loss = reader.model(**batch).loss
        total = sequence_logprobs(reader.model, batch).sum()
    answer_tokens = (batch["labels"] != -100).sum()
    if family == "paligemma":
        answer_tokens = (batch["labels"][:, 1:] != -100).sum()
    assert torch.allclose(loss, -total / answer_tokens, atol=1e-4)


def test_paligemma_batch_matches_the_processor(tiny_paligemma):
    reader = load_reader(ModelSpec(base=tiny_paligemma, device="cpu"))
    ours = reader.training_batch(IMAGES, ["extract meter value from this image"] * 2, ["9845.9", "7"])
    processor = reader.processor
    processor.tokenizer.padding_side = "right"
    theirs = processor(
        images=IMAGES,
        text=["<image>extract meter value from this image"] * 2,
        suffix=["9845.9", "7"],
        return_tensors="pt",
        padding="longest",
    )
    processor.tokenizer.padding_side = "left"
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(ours[key], theirs[key]), key
    assert torch.equal(
        ours["labels"], torch.as_tensor(theirs["labels"]).masked_fill(theirs["attention_mask"] == 0, -100)
    )
    eos = processor.tokenizer.eos_token_id
    assert (ours["labels"] == eos).sum() == 2  # <eos> is a label in every row


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_steps_on_a_known_target_teach_it(request, family):
    torch.manual_seed(0)
    reader = fresh_reader(request, family)
    reader.model.train()
    optimizer = torch.optim.AdamW(reader.model.parameters(), lr=3e-3)
    batch = reader.training_batch(IMAGES, [reader.default_prompt] * 2, ["42", "42"])
    for _ in range(40):
        reader.model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    reader.model.eval()
    assert [p.text for p in reader.read(IMAGES, [reader.default_prompt] * 2)] == ["42", "42"]


def test_ocr_with_region_text_parses_into_quad_boxes(tiny_florence2):
    reader = load_reader(ModelSpec(family="florence2", base=tiny_florence2, device="cpu"))
    locations = "".join(f"<loc_{v}>" for v in (100, 200, 500, 200, 500, 300, 100, 300))
    parsed = parse_task_output(reader.processor, f"</s><s>01234.5{locations}</s>", "<OCR_WITH_REGION>", (1000, 500))
    assert parsed["labels"] == ["01234.5"]
    (quad,) = parsed["quad_boxes"]
    assert len(quad) == 8 and quad[0] == pytest.approx(100.5, abs=1) and quad[1] == pytest.approx(100.25, abs=1)
    od = parse_task_output(reader.processor, "<s>display<loc_10><loc_20><loc_30><loc_40></s>", "<OD>", (1000, 1000))
    assert od["labels"] == ["display"] and len(od["bboxes"][0]) == 4
    assert parse_task_output(reader.processor, "<s>an electricity meter</s>", "<CAPTION>", (10, 10)) == {
        "text": "an electricity meter"
    }


@pytest.mark.parametrize("task", ["<OCR>", "<OCR_WITH_REGION>", "<OD>", "<CAPTION>"])
def test_tasks_run_through_the_same_reader(tiny_florence2, task):
    reader = load_reader(ModelSpec(family="florence2", base=tiny_florence2, device="cpu"))
    results = reader.run_task(IMAGES, task, [(640, 480)] * 2, max_new_tokens=12)
    assert len(results) == 2 and all(isinstance(result, dict) for result in results)
    with pytest.raises(ValueError, match="unsupported"):
        reader.run_task(IMAGES, "<NOPE>", [(1, 1)] * 2)


@pytest.mark.parametrize("family", FAMILIES)
def test_classify_returns_one_of_the_labels(request, family):
    reader = fresh_reader(request, family)
    labels = ["electricity lcd", "gas mechanical", "water mechanical"]
    results = reader.classify(IMAGES, "meter type", labels)
    assert len(results) == 2
    for label, probability in results:
        assert label in labels and 1 / len(labels) <= probability <= 1


class ShrinkingReader:
    """Fails with CUDA OOM for batches larger than 2."""

    def __init__(self):
        self.calls = []

    def read(self, images, prompts):
        self.calls.append(len(images))
        if len(images) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return [Prediction(text=str(i)) for i in images]


def test_cuda_oom_halves_the_batch_and_keeps_order():
    reader = ShrinkingReader()
    predictions = read_with_backoff(reader, list(range(7)), ["p"] * 7)
    assert [p.text for p in predictions] == [str(i) for i in range(7)]
    assert reader.calls == [7, 3, 1, 2, 4, 2, 2]  # 7 -> 3 + 4; 3 -> 1 + 2; 4 -> 2 + 2
