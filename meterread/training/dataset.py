"""Labelled datasets: `{root}/{train,valid,test}/annotations.jsonl` + images, local or s3://.

Line format (Roboflow maestro's): `{"image": "relative/path.jpg", "prefix": prompt, "suffix": "9845.9",
"meter_id"?: str, "meter_type"?: str, "display"?: bool}`. `"display": true` marks an image that is the register
display already (a strip or a crop, as `meterread strips` writes): a layout's display search is skipped for it.
Bad lines are counted and reported with their line numbers, never dropped silently.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from meterread.storage import read_bytes, resolve

if TYPE_CHECKING:  # the dataset reader itself needs no OpenCV
    from meterread.preprocess import InputLayout

SPLITS = ("train", "valid", "test")
ANNOTATIONS = "annotations.jsonl"


@dataclass(frozen=True)
class Sample:
    image: str  # URI or path readable by fsspec
    prefix: str
    suffix: str
    meter_id: str | None = None
    meter_type: str | None = None
    meter_model: str | None = None  # make/model of the meter the digits come from (real-crop data)
    display: bool = False  # the image is the register display already: no display search (`layout_for`)


@dataclass(frozen=True)
class Split:
    name: str
    samples: tuple[Sample, ...]
    problems: tuple[str, ...] = field(default_factory=tuple)
    digest: str = ""


def parse_annotation_line(line: str, base: str) -> Sample:
    """One JSONL line -> Sample; raises ValueError saying what is wrong."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg})") from error
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    missing = [key for key in ("image", "suffix") if not isinstance(record.get(key), str) or not record.get(key)]
    if missing:
        raise ValueError(f"missing or empty {', '.join(missing)}")
    image = record["image"]
    if image.startswith("/") or ".." in image.split("/"):
        raise ValueError(f"image path {image!r} must be relative to the split and stay inside it")
    return Sample(
        image=f"{base}/{image}",
        prefix=str(record.get("prefix") or ""),
        suffix=record["suffix"],
        meter_id=record.get("meter_id"),
        meter_type=record.get("meter_type"),
        meter_model=record.get("meter_model"),
        display=record.get("display") is True,
    )


def parse_annotations(text: str, base: str, name: str) -> Split:
    """All lines of an annotations file -> Split with per-line problems. Pure."""
    samples, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            samples.append(parse_annotation_line(line, base))
        except ValueError as error:
            problems.append(f"{name}/{ANNOTATIONS} line {number}: {error}")
    digest = hashlib.sha256(text.encode()).hexdigest()
    return Split(name, tuple(samples), tuple(problems), digest)


def load_split(root: str, name: str) -> Split:
    """Read `{root}/{name}/annotations.jsonl`; an absent split is empty."""
    fs, path = resolve(f"{root.rstrip('/')}/{name}")
    annotations = f"{path}/{ANNOTATIONS}"
    if not fs.exists(annotations):
        return Split(name, ())
    text = read_bytes(fs, annotations).decode("utf-8", errors="replace")
    return parse_annotations(text, fs.unstrip_protocol(path) if "://" in root else path, name)


def load_dataset(root: str, splits: tuple[str, ...] = SPLITS) -> dict[str, Split]:
    return {name: load_split(root, name) for name in splits}


def manifest_digest(splits: dict[str, Split]) -> str:
    """Hash identifying exactly which labelled data a model saw (annotation files of every split)."""
    joined = "|".join(f"{name}:{split.digest}" for name, split in sorted(splits.items()))
    return hashlib.sha256(joined.encode()).hexdigest()[:20]


def layout_for(sample: Sample, layout: InputLayout) -> InputLayout:
    """The layout to preprocess `sample` with: `layout`, without the display search for an image that is the display
    already (a model that crops displays out of photos reads a strip as it is)."""
    return replace(layout, crop_display=False) if sample.display else layout


def read_image_bytes(sample: Sample) -> bytes:
    fs, path = resolve(sample.image)
    return read_bytes(fs, path)
