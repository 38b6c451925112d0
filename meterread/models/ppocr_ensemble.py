"""Several ppocr checkpoints reading as one: an ensemble directory (`meterread ensemble OUT MEMBER...`) holds each
member checkpoint in a folder of its own, `ensemble.json` naming them and `meterread.json` with the input layout
they share and the ensemble's own recommended `min_confidence`.

Each member reads the image on its own; the reading chosen is the member readings' one that all members together
find most likely (`decoding.ctc_ensemble_path`). Members trained apart err apart: on three rotations of unseen
meter makes two members of different squares and data read 3-6 points more strips exactly than the better of them
(docs/training.md "Two readers, one reading"). Members may fold different squares: the pipeline prepares the
largest and a member with a smaller one gets it scaled down. An ensemble reads; it is not trained, averaged or
restripped (do that to a member and build the ensemble again).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from meterread.config import ModelSpec
from meterread.models.base import ModelLoadError, Prediction, checkpoint_facts
from meterread.models.decoding import ctc_ensemble_path, ctc_text
from meterread.models.ppocr import DEFAULT_PROMPT, FAMILY, PPOCRReader, load_checkpoint, reading_decoder
from meterread.models.registry import ensemble_members
from meterread.preprocess import InputLayout


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """A square model input at another side (area interpolation); the image itself when it has that side."""
    if image.shape[0] == size:
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


@dataclass
class PPOCREnsembleReader:
    """The `Reader` of an ensemble directory: `members` are its checkpoints' readers; `image_size` is the largest
    member square (the pipeline prepares that one)."""

    members: tuple[PPOCRReader, ...]
    spec: ModelSpec
    model_id: str
    adapter_id: str | None
    fingerprint: str
    image_size: int
    default_prompt: str
    vocab: str
    layout: InputLayout = InputLayout()
    min_confidence: float | None = None
    family: str = FAMILY

    @property
    def device(self):
        return self.members[0].device

    def read(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[Prediction]:
        """One reading per image: the candidates are each member's own (constrained to this ensemble's spec), the
        choice and the confidence `ctc_ensemble_path`'s. Prompts are not used. Raises ValueError when the numbers
        of images and prompts differ."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if not images:
            return []
        started = time.perf_counter()
        columns = [
            member.log_probs([fit_square(image, member.image_size) for image in images]) for member in self.members
        ]
        decode = reading_decoder(self.spec, self.vocab)
        decoded = [ctc_ensemble_path([member[i] for member in columns], decode) for i in range(len(images))]
        elapsed = (time.perf_counter() - started) / len(images)
        return [Prediction(ctc_text(ids, self.vocab), tuple(parts), elapsed) for ids, parts in decoded]

    def classify(self, images: Sequence[np.ndarray], prompt: str, labels: Sequence[str]) -> list[tuple[str, float]]:
        raise ValueError("the ppocr family reads digits only and cannot rank meter types; drop meter_types")


def load_ensemble(spec: ModelSpec) -> PPOCREnsembleReader:
    """The reader of the ensemble directory `spec.base`, each member on `spec`'s device and dtype. Raises
    ModelLoadError for an adapter (train a member instead), members of other vocabularies or input layouts than the
    ensemble's, or a broken ensemble.json."""
    if spec.adapter:
        raise ModelLoadError(
            f"{spec.base} is an ensemble: adapters go on its members (merge one into a member, then build it again)"
        )
    try:
        directories = ensemble_members(spec.base) or []
    except ValueError as error:
        raise ModelLoadError(str(error)) from error
    facts = checkpoint_facts(spec, None, DEFAULT_PROMPT)
    members = tuple(load_checkpoint(spec.replace(base=str(directory))) for directory in directories)
    for directory, member in zip(directories, members):
        if member.layout != facts["layout"]:
            raise ModelLoadError(
                f"{directory}: input layout {member.layout.to_dict()} differs from the ensemble's "
                f"{facts['layout'].to_dict()} ({spec.base}/meterread.json)"
            )
    vocabularies = {member.model.config.vocab for member in members}
    if len(vocabularies) > 1:
        raise ModelLoadError(f"{spec.base}: members read different vocabularies {sorted(vocabularies)}")
    return PPOCREnsembleReader(
        members=members,
        image_size=max(member.image_size for member in members),
        vocab=vocabularies.pop(),
        **facts,
    )
