"""Batched greedy generation shared by the families: constrained, scored, timed; every family's `read`
(`read_readings`) and `classify` (`classify_by_likelihood`)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from transformers import LogitsProcessorList

from meterread.models.base import Prediction
from meterread.models.decoding import ReadingConstraint


@torch.inference_mode()
def generate_predictions(
    model,
    inputs: dict,
    tokenizer,
    max_new_tokens: int,
    constraint: ReadingConstraint | None,
    prompt_length: int,
    skip_special_tokens: bool = True,
) -> list[Prediction]:
    """Greedy-decode a prepared batch; returns texts cut at EOS with each chosen token's log-probability.

    `skip_special_tokens=False` keeps markup such as Florence-2's `<loc_N>` tokens for task post-processing."""
    started = time.perf_counter()
    processors = LogitsProcessorList([constraint] if constraint else [])
    output = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        logits_processor=processors,
        output_scores=True,
        return_dict_in_generate=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    generated = output.sequences[:, prompt_length:] if not model.config.is_encoder_decoder else output.sequences[:, 1:]
    scores = torch.stack(output.scores, dim=1).float().log_softmax(dim=-1)
    chosen = scores.gather(-1, generated[:, : scores.shape[1], None]).squeeze(-1)
    elapsed = (time.perf_counter() - started) / max(len(generated), 1)
    predictions = []
    for ids, logprobs in zip(generated.tolist(), chosen.tolist()):
        end = ids.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in ids else len(ids)
        text = tokenizer.decode(ids[:end], skip_special_tokens=skip_special_tokens)
        if not skip_special_tokens:
            text = text.replace(tokenizer.pad_token, "")
        text = text.strip()
        predictions.append(Prediction(text=text, token_logprobs=tuple(logprobs[:end]), elapsed_s=elapsed))
    return predictions


def read_readings(
    reader, images: Sequence[np.ndarray], prompts: Sequence[str], extra_tokens: int, forced_first_id: int | None = None
) -> list[Prediction]:
    """A family reader's `read`: one prediction per (image, prompt) from `reader.prepare`, greedy, at most
    `spec.max_new_tokens` or the reading pattern's length + `extra_tokens` (EOS, and a forced first token if any)
    new tokens, constrained to the pattern when `spec.constrained` (the constraint counts from the end of the padded
    prompt for decoder-only models, from the decoder start token for encoder-decoders). Raises ValueError when the
    numbers of images and prompts differ."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
    if not images:
        return []
    inputs = reader.prepare(images, prompts)
    pattern = reader.spec.reading_pattern()
    tokenizer = reader.processor.tokenizer
    prompt_length = 1 if reader.model.config.is_encoder_decoder else inputs["input_ids"].shape[1]
    constraint = (
        ReadingConstraint(tokenizer, pattern, tokenizer.eos_token_id, prompt_length, forced_first_id=forced_first_id)
        if reader.spec.constrained
        else None
    )
    max_new_tokens = reader.spec.max_new_tokens or pattern.max_length() + extra_tokens
    return generate_predictions(reader.model, inputs, tokenizer, max_new_tokens, constraint, prompt_length)


def pixel_values(images: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Stack RGB uint8 HxWx3 images into a normalised float NCHW tensor (no PIL round trip)."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return batch.sub_(mean_t).div_(std_t)


def sequence_logprobs(model, batch: dict) -> torch.Tensor:
    """Sum of log-probabilities of each row's `labels` tokens (-100 ignored), teacher-forced.

    Decoder-only models predict token t+1 at position t (logits shifted here); encoder-decoders already align
    logits with labels (the model shifts labels right into decoder inputs). Consistent with `model(...).loss`.
    """
    labels = batch["labels"]
    logits = model(**batch).logits.float()
    if not model.config.is_encoder_decoder:
        logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != -100
    logprobs = logits.log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return (logprobs * mask).sum(-1)


@torch.inference_mode()
def classify_by_likelihood(reader, images: Sequence[np.ndarray], prompt: str, labels: Sequence[str]):
    """Pick, per image, the label whose text the model finds most likely after `prompt`.

    Returns (label, probability) pairs, probability = softmax over the labels' sequence log-likelihoods."""
    scores = []
    for label in labels:
        batch = reader.training_batch(images, [prompt] * len(images), [label] * len(images))
        scores.append(sequence_logprobs(reader.model, batch))
    probabilities = torch.stack(scores, dim=1).softmax(dim=1)
    best = probabilities.argmax(dim=1)
    return [(labels[i], float(probabilities[row, i])) for row, i in enumerate(best.tolist())]
