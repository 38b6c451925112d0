"""Batched greedy generation shared by the families: constrained, scored, timed."""

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
) -> list[Prediction]:
    """Greedy-decode a prepared batch; returns texts cut at EOS with each chosen token's log-probability."""
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
        text = tokenizer.decode(ids[:end], skip_special_tokens=True).strip()
        predictions.append(Prediction(text=text, token_logprobs=tuple(logprobs[:end]), elapsed_s=elapsed))
    return predictions


def pixel_values(images: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Stack RGB uint8 HxWx3 images into a normalised float NCHW tensor (no PIL round trip)."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return batch.sub_(mean_t).div_(std_t)
