"""Several ppocr checkpoints reading as one: an ensemble directory (`meterread ensemble OUT MEMBER...`) holds each
member checkpoint in a folder of its own, `ensemble.json` naming them and `meterread.json` with the input layout
they share and the ensemble's own recommended `min_confidence`.

Each member reads the image on its own; of their readings, the one all members together find likeliest is chosen
(`decoding.ctc_ensemble_path`; why and what it gains: docs/training.md "Two readers, one reading"). Members may fold
different squares: the pipeline prepares the largest and a member with a smaller one gets it scaled down. An
ensemble reads; it is not trained, averaged, restripped or published (do that to a member, then build it again).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from meterread.config import ModelSpec
from meterread.models.base import ModelLoadError, Prediction, checkpoint_facts
from meterread.models.decoding import ctc_ensemble_path, ctc_text
from meterread.models.loading import WEIGHTS_FILE, input_layout
from meterread.models.ppocr import DEFAULT_PROMPT, FAMILY, PPOCRReader, load_checkpoint, reading_decoder
from meterread.models.ppocr_network import DIGITS
from meterread.models.registry import ENSEMBLE_FILE, ensemble_members, is_ensemble
from meterread.preprocess import InputLayout


def shared_layout(checkpoints: Sequence[Path]) -> InputLayout:
    """The input layout the checkpoints share. Raises ValueError for fewer than two, one that is not a full ppocr
    checkpoint (config.json `model_type` ppocr and model.safetensors) or is an ensemble itself, or checkpoints that
    differ in layout (meterread.json: display crop, rows, local contrast; the square may differ) or vocabulary."""
    if len(checkpoints) < 2:
        raise ValueError(f"an ensemble needs two or more checkpoints, got {len(checkpoints)}")
    layouts, vocabularies = [], set()
    for path in checkpoints:
        if is_ensemble(path):
            raise ValueError(f"{path} is an ensemble itself: name its members instead")
        config_file = path / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        if config.get("model_type") != FAMILY or not (path / WEIGHTS_FILE).is_file():
            raise ValueError(f"{path} is not a full {FAMILY} checkpoint (config.json and {WEIGHTS_FILE})")
        layouts.append(input_layout(str(path)))
        vocabularies.add(config.get("vocab", DIGITS))
    if any(layout != layouts[0] for layout in layouts):
        raise ValueError(
            f"the checkpoints prepare photos differently (meterread.json): {[x.to_dict() for x in layouts]}"
        )
    if len(vocabularies) > 1:
        raise ValueError(f"the checkpoints read different vocabularies: {sorted(vocabularies)}")
    return layouts[0]


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
        per_member = [
            member.log_probs([fit_square(image, member.image_size) for image in images]) for member in self.members
        ]
        decode, fits = reading_decoder(self.spec, self.vocab), self.fits_pattern()
        decoded = [
            ctc_ensemble_path([log_probs[i] for log_probs in per_member], decode, fits) for i in range(len(images))
        ]
        elapsed = (time.perf_counter() - started) / len(images)
        return [Prediction(ctc_text(ids, self.vocab), tuple(parts), elapsed) for ids, parts in decoded]

    def fits_pattern(self) -> Callable[[list[int]], bool] | None:
        """Whether class ids spell a complete reading of the spec's pattern (None when decoding is unconstrained)."""
        if not self.spec.constrained:
            return None
        pattern = self.spec.reading_pattern()
        return lambda ids: pattern.is_complete(ctc_text(ids, self.vocab))

    def classify(self, images: Sequence[np.ndarray], prompt: str, labels: Sequence[str]) -> list[tuple[str, float]]:
        raise ValueError("the ppocr family reads digits only and cannot rank meter types; drop meter_types")


def member_readers(reader) -> tuple:
    """The readers that read for `reader`: an ensemble's members in order, else `reader` alone."""
    return tuple(getattr(reader, "members", (reader,)))


def load_ensemble(spec: ModelSpec) -> PPOCREnsembleReader:
    """The reader of the ensemble directory `spec.base`, each member on `spec`'s device and dtype. Raises
    ModelLoadError for an adapter, a broken ensemble.json, members `shared_layout` refuses or whose layout is not
    the ensemble's."""
    if spec.adapter:
        raise ModelLoadError(
            f"{spec.base} is an ensemble: adapters go on its members (merge one into a member, then build it again)"
        )
    try:
        directories = ensemble_members(spec.base)
        if directories is None:
            raise ValueError(f"{spec.base} has no {ENSEMBLE_FILE}: not an ensemble")
        layout = shared_layout(directories)
        facts = checkpoint_facts(spec, None, DEFAULT_PROMPT)
    except ValueError as error:
        raise ModelLoadError(f"{spec.base}: {error}") from error
    if layout != facts["layout"]:
        raise ModelLoadError(
            f"{spec.base}: its members' input layout {layout.to_dict()} is not the ensemble's "
            f"{facts['layout'].to_dict()} (meterread.json)"
        )
    members = tuple(load_checkpoint(spec.replace(base=str(directory))) for directory in directories)
    return PPOCREnsembleReader(
        members=members,
        image_size=max(member.image_size for member in members),
        vocab=members[0].model.config.vocab,
        **facts,
    )
