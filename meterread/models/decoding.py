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
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
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


def ctc_best_path(log_probs: np.ndarray) -> tuple[list[int], list[float]]:
    """CTC greedy decoding of (T, classes) log-probabilities, blank = class 0: the best path's classes with repeats
    collapsed and blanks dropped, and one log-probability per emitted class: the path's columns from the class's
    first column up to the next emitted class (the first also takes the leading columns), so they add up to the
    whole path's log-probability. An empty reading gets one entry, the whole path."""
    best = log_probs.argmax(-1)
    path = log_probs[np.arange(len(best)), best]
    ids, starts = [], []
    for t, k in enumerate(best.tolist()):
        if k and (t == 0 or k != best[t - 1]):
            ids.append(k)
            starts.append(t)
    bounds = [0, *starts[1:], len(best)]
    return ids, [float(path[start:stop].sum()) for start, stop in zip(bounds, bounds[1:])]


def ctc_text(ids: Sequence[int], vocab: str) -> str:
    """CTC class ids (1-based into `vocab`; 0 is the blank) -> the text they spell."""
    return "".join(vocab[i - 1] for i in ids)


def ctc_constrained_path(
    log_probs: np.ndarray, vocab: str, pattern: ReadingPattern, beam: int = 16
) -> tuple[list[int], list[float]]:
    """A likely CTC path whose reading fits `pattern`: a beam search keeping the `beam` best (reading, last class)
    states, the best path into each (an approximation: the most likely fitting path can fall out of the beam). A
    reading that cannot grow into a valid one, or not within the columns left, is never entered, so a complete
    reading is found whenever the columns can hold one. Split per class as in `ctc_best_path`; the plain best path
    when it fits (then it is the most likely fitting path: no search) or when no complete reading is possible."""
    best = ctc_best_path(log_probs)
    if pattern.is_complete(ctc_text(best[0], vocab)) or pattern.shortest_completion("") > len(log_probs):
        return best
    beams: dict[tuple[tuple[int, ...], int], tuple[float, tuple[float, ...]]] = {((), 0): (0.0, (0.0,))}
    for t, row in enumerate(log_probs.tolist()):
        left = len(log_probs) - t - 1
        extended: dict[tuple[tuple[int, ...], int], tuple[float, tuple[float, ...]]] = {}
        for (ids, last), (score, parts) in beams.items():
            reading = ctc_text(ids, vocab)
            for k, lp in enumerate(row):
                if k == 0 or k == last:  # a blank, or the same class again: the reading does not change
                    if pattern.shortest_completion(reading) > left:
                        continue
                    key, grown = (ids, k), parts[:-1] + (parts[-1] + lp,)
                else:
                    text = reading + vocab[k - 1]
                    if not pattern.is_prefix(text) or pattern.shortest_completion(text) > left:
                        continue
                    key, grown = ((*ids, k), k), (parts[0] + lp,) if not ids else (*parts, lp)
                if key not in extended or extended[key][0] < score + lp:
                    extended[key] = (score + lp, grown)
        beams = dict(sorted(extended.items(), key=lambda item: -item[1][0])[:beam])
    complete = [item for item in beams.items() if pattern.is_complete(ctc_text(item[0][0], vocab))]
    if not complete:  # a pattern no reading of these classes completes
        return best
    (ids, _), (_, parts) = max(complete, key=lambda item: item[1][0])
    return list(ids), list(parts)


def ctc_log_likelihood(log_probs: np.ndarray, ids: list[int]) -> float:
    """log P(reading | image) under CTC: the sum over every path that collapses to `ids` (classes, blank = 0) of
    (T, classes) log-probabilities, by the forward algorithm. At least the best such path's log-probability."""
    extended = np.zeros(2 * len(ids) + 1, dtype=np.int64)
    extended[1::2] = ids
    # a path may skip a blank only between two different classes
    can_skip = np.zeros(len(extended), dtype=bool)
    can_skip[3::2] = extended[3::2] != extended[1:-2:2]
    alpha = np.full(len(extended), -np.inf)
    alpha[: min(2, len(extended))] = log_probs[0, extended[:2]]
    for row in log_probs[1:]:
        step = np.concatenate(([-np.inf], alpha[:-1]))
        skip = np.where(can_skip, np.concatenate(([-np.inf, -np.inf], alpha[:-2]))[: len(alpha)], -np.inf)
        alpha = np.logaddexp(np.logaddexp(alpha, step), skip) + row[extended]
    return float(np.logaddexp(alpha[-1], alpha[-2]) if ids else alpha[-1])


def with_reading_likelihood(
    log_probs: np.ndarray, decoded: tuple[list[int], list[float]]
) -> tuple[list[int], list[float]]:
    """A decoded path's per-class log-probabilities rescaled to add up to the reading's CTC log-likelihood (every
    alignment of it, not only the decoded one), keeping their proportions: a confidence that does not fall because
    the reading's probability is spread over many alignments."""
    ids, parts = decoded
    path, reading = sum(parts), ctc_log_likelihood(log_probs, ids)
    if path >= 0.0:  # a certain path: nothing to rescale
        return ids, parts
    return ids, [part * reading / path for part in parts]


def ctc_ensemble_path(
    member_log_probs: Sequence[np.ndarray],
    decode: Callable[[np.ndarray], tuple[list[int], list[float]]],
    fits: Callable[[list[int]], bool] | None = None,
) -> tuple[list[int], list[float]]:
    """The reading several CTC readers of one image find likeliest together: each member's (T_m, classes)
    log-probabilities decoded on their own (`decode`, e.g. `ctc_constrained_path` with a pattern) propose a reading;
    the proposal with the highest summed `ctc_log_likelihood` over all members wins (members may have different
    column counts), ties to the earlier member's; with `fits` (e.g. "completes the reading pattern"), only proposals
    that fit compete when any does, so a member whose decoding fell back to an unfitting reading cannot outvote the
    others. Its parts add up to the members' mean log-likelihood of it (their geometric mean probability; -inf when
    a member cannot spell it at all), split per class in the proposer's proportions. Raises ValueError without
    members (docs/training.md "Two readers, one reading": why not average the columns)."""
    if not member_log_probs:
        raise ValueError("an ensemble needs at least one member")
    candidates: dict[tuple[int, ...], list[float]] = {}
    for log_probs in member_log_probs:
        ids, parts = decode(log_probs)
        candidates.setdefault(tuple(ids), parts)
    pool = [ids for ids in candidates if fits is None or fits(list(ids))] or list(candidates)
    scores = {ids: sum(ctc_log_likelihood(log_probs, list(ids)) for log_probs in member_log_probs) for ids in pool}
    chosen = max(scores, key=scores.__getitem__)  # max keeps the first of equal scores: dicts keep insertion order
    parts, mean = candidates[chosen], scores[chosen] / len(member_log_probs)
    path = sum(parts)
    if path >= 0.0 or not np.isfinite(mean):  # a certain proposer, or a member that cannot spell it: all in one part
        return list(chosen), [mean, *[0.0] * (len(parts) - 1)]
    return list(chosen), [part * mean / path for part in parts]
