"""Constrained decoding to meter readings, and confidence from token log-probabilities.

The constraint is a `LogitsProcessor`: at each step only tokens that keep the generated text a valid prefix of
a reading (digits, at most one decimal separator, optional exact digit counts) and, once the text is a complete
reading, EOS, keep their logits; everything else gets -inf. Tokens are classified once from the vocabulary, so
it works for one-digit-per-token vocabularies (Gemma) and multi-digit BPE tokens (BART / Florence-2) alike.

Confidence = exp(sum of the chosen tokens' log-probabilities, EOS included) under the constrained,
renormalised distribution: the model's probability that the whole reading is exactly this string.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from transformers import LogitsProcessor

from meterread.models.patterns import SEPARATORS, ReadingPattern

__all__ = ["SEPARATORS", "ReadingConstraint", "ReadingPattern", "confidence_from_logprobs", "numeric_tokens"]


def numeric_tokens(tokenizer) -> dict[int, str]:
    """Vocabulary ids whose text is only digits or a single separator (word-start markers stripped)."""
    found = {}
    for token, token_id in tokenizer.get_vocab().items():
        text = tokenizer.convert_tokens_to_string([token]).strip()
        if text and len(text) == len(token.lstrip("▁Ġ ")) and (text.isdigit() and text.isascii() or text in SEPARATORS):
            found[token_id] = text
    if not any(text.isdigit() for text in found.values()):
        raise ValueError("tokenizer has no digit tokens: constrained decoding is impossible")
    return found


class ReadingConstraint(LogitsProcessor):
    """Allow only tokens that extend the generated text towards a valid reading, and EOS when it is complete.

    `prompt_length` is the number of ids before the first generated one in `input_ids` passed to the processor
    (the padded prompt for decoder-only models, 1 for encoder-decoders that start from `decoder_start_token_id`).
    """

    def __init__(
        self,
        tokenizer,
        pattern: ReadingPattern,
        eos_token_id: int,
        prompt_length: int,
        forced_first_id: int | None = None,
    ):
        self.pattern = pattern
        self.eos_token_id = eos_token_id
        self.prompt_length = prompt_length
        self.forced_first_id = forced_first_id  # e.g. BART's forced <s> before the answer
        self.tokens = numeric_tokens(tokenizer)
        self._allowed = lru_cache(maxsize=4096)(self._allowed_ids)

    def _allowed_ids(self, text: str) -> tuple[int, ...]:
        allowed = [i for i, piece in self.tokens.items() if self.pattern.is_prefix(text + piece)]
        if self.pattern.is_complete(text):
            allowed.append(self.eos_token_id)
        return tuple(allowed) or (self.eos_token_id,)

    def text_of(self, generated: list[int]) -> str:
        return "".join(self.tokens.get(i, "") for i in generated)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, -math.inf)
        generated = input_ids[:, self.prompt_length :].tolist()
        for row, ids in enumerate(generated):
            if self.forced_first_id is not None and not ids:
                mask[row, self.forced_first_id] = 0.0
                continue
            allowed = torch.tensor(self._allowed(self.text_of(ids)), device=scores.device)
            mask[row, allowed] = 0.0
        return scores + mask


def confidence_from_logprobs(logprobs: list[float]) -> float | None:
    """exp(sum of log-probabilities); None for an empty sequence."""
    if not logprobs:
        return None
    return float(math.exp(sum(logprobs)))
