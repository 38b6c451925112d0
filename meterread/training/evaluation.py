"""Reading a labelled split with a model (and a peer baseline) and scoring it: `meterread eval`, the validation
during training and the promotion gate all go through here. Metrics themselves are pure (`training.evaluate`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from meterread.config import ModelSpec
from meterread.models.base import read_by_pattern, read_in_length_order
from meterread.models.decoding import confidence_from_logprobs
from meterread.models.registry import load_reader
from meterread.preprocess import DecodeError, InputLayout, preprocess_photo
from meterread.training.dataset import (
    ANNOTATIONS,
    Split,
    layout_for,
    load_dataset,
    manifest_digest,
    read_image_bytes,
)
from meterread.training.evaluate import Scored, prediction_rows, register_pattern_of, summarise


def prepare_images(
    split: Split, size: int, layout: InputLayout, progress: bool, workers: int = 2
) -> tuple[list[np.ndarray], list[int], list[str]]:
    """Preprocess a split once, in a thread pool: (images, indices of usable samples, problems)."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    def load(sample):
        try:
            return preprocess_photo(read_image_bytes(sample), size, layout=layout_for(sample, layout)).image, None
        except (DecodeError, OSError) as error:
            return None, f"{split.name}: {sample.image}: {error}"

    images, kept, problems = [], [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(load, split.samples)
        for index, (image, problem) in enumerate(
            tqdm(results, total=len(split.samples), desc=f"preprocessing {split.name}", disable=not progress)
        ):
            if image is None:
                problems.append(problem)
            else:
                images.append(image)
                kept.append(index)
    return images, kept, problems


def evaluate_reader(
    reader,
    images: Sequence[np.ndarray],
    samples: Sequence,
    batch_size: int,
    progress: bool = False,
    known_register: bool = False,
) -> list[Scored]:
    """Read every image (constrained, greedy) and pair predictions with labels. `known_register`: each image is
    read constrained to its label's register (`register_pattern_of`), as the read path reads a meter whose
    digits and decimals the meters table holds."""
    from tqdm.auto import tqdm

    scored = []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="reading", unit="batch", disable=not progress, leave=False):
        chunk = samples[start : start + batch_size]
        prompts = [sample.prefix or reader.default_prompt for sample in chunk]
        patterns = [register_pattern_of(sample.suffix) if known_register else None for sample in chunk]
        predictions = read_by_pattern(
            reader, images[start : start + batch_size], prompts, patterns, read_in_length_order
        )
        for sample, prediction in zip(chunk, predictions):
            scored.append(
                Scored(
                    sample.suffix,
                    prediction.text,
                    confidence_from_logprobs(list(prediction.token_logprobs)),
                    sample.meter_type,
                    sample.image,
                    sample.meter_model,
                )
            )
    return scored


def evaluate_split(
    spec: ModelSpec,
    dataset: str,
    split: str = "test",
    batch_size: int = 32,
    out_dir: str | None = None,
    progress: bool = True,
    baseline: str | None = None,
    known_register: bool = False,
) -> dict:
    """`meterread eval`: read a whole split, compute metrics (and a peer `baseline`'s on the same photos),
    optionally write metrics.json, report.html and predictions.parquet (one row per image, the baseline's reading
    beside the model's). `known_register`: see `evaluate_reader` (the baseline gets each label's decimal places
    either way, `baseline.baseline_text`). Raises FileNotFoundError when the split has no labelled samples."""
    from meterread.training.evaluate import risk_coverage_curve
    from meterread.training.report import thumbnail_data_uri, write_report

    if known_register and spec.pattern:
        raise ValueError("--known-register reads each photo within its own register; drop --pattern")
    data = load_dataset(dataset, (split,))[split]
    if not data.samples:
        raise FileNotFoundError(f"no labelled samples in {dataset.rstrip('/')}/{split}/{ANNOTATIONS}")
    reader = load_reader(spec)
    images, kept, problems = prepare_images(data, reader.image_size, reader.layout, progress)
    samples = [data.samples[i] for i in kept]
    scored = evaluate_reader(reader, images, samples, batch_size, progress=progress, known_register=known_register)
    metrics = {
        **summarise(scored),
        "known_register": known_register,
        "split": split,
        "dataset": dataset,
        "model": spec.base,
        "adapter": spec.adapter,
        "dataset_manifest": manifest_digest({split: data}),
        "problems": list(data.problems) + problems,
    }
    peer = score_baseline(baseline, samples, reader.layout, progress) if baseline else None
    if peer is not None:
        metrics["baseline"] = {"name": baseline, **summarise(peer)}
    if out_dir:
        index = {sample.image: i for i, sample in enumerate(samples)}
        gallery = [{**item, "thumbnail": thumbnail_data_uri(images[index[item["image"]]])} for item in metrics["worst"]]
        write_report(
            out_dir,
            f"meterread eval: {spec.base} on {dataset}/{split}" + (", register known" if known_register else ""),
            metrics,
            risk_coverage_curve(scored),
            gallery,
            prediction_rows(scored, peer),
        )
    return metrics


def score_baseline(name: str, samples: Sequence, layout, progress: bool = True) -> list[Scored]:
    """Read `samples` with a peer baseline (see `meterread.training.baseline`) and pair its readings with the labels."""
    from tqdm.auto import tqdm

    from meterread.training.baseline import baseline_text, load_baseline, register_image

    reader = load_baseline(name)
    scored = []
    for sample in tqdm(samples, desc=f"baseline {name}", disable=not progress):
        raw, score = reader.read(register_image(read_image_bytes(sample), layout_for(sample, layout)))
        text = baseline_text(raw, sample.suffix)
        scored.append(Scored(sample.suffix, text, score, sample.meter_type, sample.image, sample.meter_model))
    return scored
