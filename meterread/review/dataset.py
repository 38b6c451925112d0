"""Corrections -> a labelled dataset in the format `meterread train` reads (`meterread.training.dataset`). Pure.

Each corrected photo goes to one split by a hash of its URI (80/10/10 train/valid/test: the same photo always lands
in the same split, whatever else was corrected), as `images/<content hash><suffix>` with one annotation line whose
`suffix` is the reviewer's text (leading zeros kept, as the register shows them). No `prefix`: training and
evaluation use the model family's default prompt.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping

from meterread.training.dataset import SPLITS

SPLIT_BUCKETS = {"train": range(0, 8), "valid": range(8, 9), "test": range(9, 10)}  # of 10 buckets
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,5}$")


def split_of(image_uri: str) -> str:
    """The split of a photo: bucket `sha256(image_uri) mod 10` in SPLIT_BUCKETS."""
    bucket = int(hashlib.sha256(image_uri.encode()).hexdigest(), 16) % 10
    return next(name for name, buckets in SPLIT_BUCKETS.items() if bucket in buckets)


def image_name(image_uri: str, content_sha256: str) -> str:
    """Where the photo goes inside its split: named by its content, with the URI's file suffix when it has one."""
    suffix = _SUFFIX.search(image_uri.rsplit("/", 1)[-1])
    return f"images/{content_sha256[:32]}{suffix.group(0).lower() if suffix else ''}"


def annotation(correction: Mapping, meter_type: str | None) -> dict:
    """The annotation line of one correction (`meterread.training.dataset.parse_annotation_line` reads it)."""
    line = {
        "image": image_name(correction["image_uri"], correction["content_sha256"]),
        "suffix": correction["corrected_text"],
        "meter_id": correction["meter_id"],
        "meter_type": meter_type,
        "source_uri": correction["image_uri"],
        "content_sha256": correction["content_sha256"],
        "corrected_by": correction["corrected_by"],
    }
    return {key: value for key, value in line.items() if value is not None}


def plan_splits(corrections: Iterable[Mapping], meter_types: Mapping[str, str | None]) -> dict[str, list[dict]]:
    """Per split (all of SPLITS), the annotation lines of `corrections` (one per photo), ordered by image name.
    `meter_types`: image_uri -> the photo's meter type."""
    splits: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for correction in corrections:
        uri = correction["image_uri"]
        splits[split_of(uri)].append(annotation(correction, meter_types.get(uri)))
    return {name: sorted(lines, key=lambda line: line["image"]) for name, lines in splits.items()}


def annotations_text(lines: Iterable[Mapping]) -> str:
    """JSONL: one line per annotation, sorted keys."""
    return "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
