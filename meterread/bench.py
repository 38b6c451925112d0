"""`meterread bench` / `python -m meterread.bench`: where the time goes, measured in one run.

CPU (default, the bundled demo model on N synthetic 2560x1440 JPEGs):
  preprocessing   ours (reduced JPEG decode + OpenCV) vs the naive path of the seed notebooks
                  (PIL open + full-size convert + the Hugging Face processor), one thread each
  model-only      `reader.read` on preprocessed images (the model's share of a run)
  end-to-end      `run_read` from a local bucket to Parquet, in a fresh process, at N and at `scale` x N photos,
                  with that process's peak RSS (memory must be flat in the number of photos)

Architecture (`--size tiny|full`, e.g. on a GPU; `meterread.bench_architecture`): the real PaliGemma-2-3B-224 or
Florence-2-base architecture built from config with random weights, generating a fixed number of tokens, against a
FLOP-based upper bound. History (`--history ROWS`; `meterread.bench_history`): a night's cost against the output's
size. Training (`--training`; `meterread.bench_training`): a ppocr training step, channels-last strips against
contiguous ones.

This module imports neither Prefect nor s3fs (nor typer): it runs on a bare torch + transformers machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from meterread.config import DEMO_MODEL_FAMILY
from meterread.models.registry import known_families

PHOTO_SIZE = (2560, 1440)
SIZES = ("demo", "tiny", "full")


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run. `size=demo` measures the product path on CPU; `tiny`/`full` measure an architecture."""

    n: int = 128
    scale: int = 10
    batch_size: int = 32
    workers: int = 2
    seed: int = 0
    device: str = "auto"
    family: str = DEMO_MODEL_FAMILY
    size: str = "demo"
    model: str | None = None  # a model dir for size=demo (default: the bundled demo model)
    new_tokens: int = 10
    repeats: int = 5
    compile: bool = False
    peak_tflops: float | None = None
    out: str = "bench.json"
    workdir: str | None = None

    def validate(self) -> BenchConfig:
        problems = []
        if self.size not in SIZES:
            problems.append(f"size must be one of {', '.join(SIZES)}")
        if self.family not in known_families():
            problems.append(f"family must be one of {', '.join(known_families())}")
        for name in ("n", "scale", "batch_size", "workers", "new_tokens", "repeats"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        if self.size == "demo" and self.family != DEMO_MODEL_FAMILY and not self.model:
            problems.append(f"the bundled demo model is a {DEMO_MODEL_FAMILY}; give --model for another family")
        if problems:
            raise ValueError("invalid bench config:\n  - " + "\n  - ".join(problems))
        return self


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


# --- photos -------------------------------------------------------------------------------------------------------


def make_photos(folder: Path, n: int, seed: int) -> tuple[list[Path], float]:
    """N synthetic 2560x1440 meter photos in the bucket key layout; returns their paths and synthesis images/s."""
    from meterread.data.synth import write_bucket

    started = time.perf_counter()
    samples = write_bucket(folder, n, seed, PHOTO_SIZE)
    elapsed = time.perf_counter() - started
    return [folder / sample.key for sample in samples], rate(n, elapsed)


def replicate_bucket(photos: list[Path], root: Path, folder: Path, copies: int) -> int:
    """`copies` x the photos under distinct keys (`copyK-<meter>/<time>.jpg`), hard-linked: no extra disk."""
    count = 0
    for copy in range(copies):
        for photo in photos:
            relative = photo.relative_to(root)
            target = folder / f"copy{copy}-{relative.parts[0]}" / Path(*relative.parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(photo, target)
            except OSError:  # another filesystem: copy
                target.write_bytes(photo.read_bytes())
            count += 1
    return count


# --- preprocessing ----------------------------------------------------------------------------------------------


def naive_preprocess(data: bytes, image_processor) -> object:
    """The seed notebooks' path: PIL decode at full size, convert, let the processor resize and normalise."""
    from PIL import Image

    return image_processor(images=Image.open(io.BytesIO(data)).convert("RGB"), return_tensors="pt")["pixel_values"]


def our_preprocess(data: bytes, size: int, layout, mean, std) -> object:
    """Our path: reduced decode + display crop + fold (`preprocess_photo`) and the NCHW tensor the model gets."""
    from meterread.models.generation import pixel_values
    from meterread.preprocess import preprocess_photo

    return pixel_values([preprocess_photo(data, size, layout=layout).image], mean, std)


def preprocess_paths(reader) -> tuple:
    """(ours, naive): photo bytes -> the tensor `reader`'s network gets. Ours: `our_preprocess`; naive (the seed
    notebooks' path): PIL decode at full size, then the family's processor on the whole photo (a VLM's Hugging Face
    image processor; the ppocr family's strip scaling, which has no image processor, and whose reader's `pixels`
    is our path's last step)."""
    from PIL import Image

    from meterread.models.ppocr_ensemble import member_readers

    # an ensemble (`ppocr_ensemble`) is prepared at its largest member's square: time that member's path
    reader = max(member_readers(reader), key=lambda member: member.image_size)
    size, layout = reader.image_size, reader.layout
    processor = getattr(reader.processor, "image_processor", None)
    if processor is not None:
        mean, std = processor.image_mean, processor.image_std
        return (lambda d: our_preprocess(d, size, layout, mean, std), lambda d: naive_preprocess(d, processor))

    def ours(data: bytes):
        from meterread.preprocess import preprocess_photo

        return reader.pixels([preprocess_photo(data, size, layout=layout).image])

    return ours, lambda d: reader.processor([np.asarray(Image.open(io.BytesIO(d)).convert("RGB"))], 1)


def time_each(fn, items, repeats: int = 1) -> float:
    """Items per second of `fn` over `items`, single thread."""
    started = time.perf_counter()
    for _ in range(repeats):
        for item in items:
            fn(item)
    return rate(len(items) * repeats, time.perf_counter() - started)


def bench_preprocessing(datas: list[bytes], reader, workers: int) -> dict:
    """Ours vs naive on one thread each, and ours on the pipeline's worker pool (`workers` threads)."""
    import cv2

    from meterread.streaming import ordered_map

    ours_path, naive_path = preprocess_paths(reader)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one thread each: a fair per-core comparison
    try:
        ours = time_each(ours_path, datas)
        naive = time_each(naive_path, datas)
        started = time.perf_counter()
        for _ in ordered_map(ours_path, datas, workers, 64):
            pass
        pool = rate(len(datas), time.perf_counter() - started)
    finally:
        cv2.setNumThreads(threads)
    return {"ours_images_per_s": ours, "naive_images_per_s": naive, "speedup": ours / naive, "pool_images_per_s": pool}


# --- model ----------------------------------------------------------------------------------------------------------


def bench_model_only(reader, images: list[np.ndarray], batch_size: int, passes: int) -> float:
    """Images/s of `reader.read` on preprocessed images: the median of `passes` passes (after a warm-up batch)."""
    import statistics

    prompt = reader.default_prompt
    reader.read(images[:batch_size], [prompt] * min(batch_size, len(images)))
    rates = []
    for _ in range(passes):
        started = time.perf_counter()
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            reader.read(chunk, [prompt] * len(chunk))
        rates.append(rate(len(images), time.perf_counter() - started))
    return statistics.median(rates)


def end_to_end(source: str, output: str, model: str, family: str, batch_size: int, workers: int) -> dict:
    """One `run_read` over `source` with the model loaded and warmed up first; images/s and this process's peak RSS.
    Meant to run in a fresh process (see `bench_end_to_end`)."""
    from meterread.config import ModelSpec, ReadConfig
    from meterread.read.runner import cached_reader, run_read

    spec = ModelSpec(family=family, base=model, device="cpu")
    reader = cached_reader(spec)
    blank = np.zeros((reader.image_size, reader.image_size, 3), np.uint8)
    reader.read([blank] * batch_size, [reader.default_prompt] * batch_size)
    config = ReadConfig(source=source, output=output, model=spec, batch_size=batch_size, preprocess_workers=workers)
    started = time.perf_counter()
    manifest = run_read(config, progress=False)
    elapsed = time.perf_counter() - started
    return {
        "photos": manifest["processed"],
        "images_per_s": rate(manifest["processed"], elapsed),
        "peak_rss_mb": peak_rss_mb(),
        "counts": manifest["counts"],
    }


def bench_end_to_end(source: Path, model: str, family: str, batch_size: int, workers: int) -> dict:
    """`end_to_end` in a fresh Python process, so its peak RSS is its own."""
    with tempfile.TemporaryDirectory(prefix="meterread-bench-out-") as output:
        command = [sys.executable, "-m", "meterread.bench", "--end-to-end", str(source), output, model]
        command += ["--family", family, "--batch-size", str(batch_size), "--workers", str(workers)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"end-to-end bench failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_cpu(config: BenchConfig, log=print) -> dict:
    """The product path with the bundled demo model (or `config.model`)."""
    import torch

    from meterread.config import DEMO_MODEL_DIR, ModelSpec
    from meterread.models.registry import load_reader
    from meterread.preprocess import preprocess_photo

    model = config.model or str(DEMO_MODEL_DIR)
    reader = load_reader(ModelSpec(family=config.family, base=model, device="cpu"))
    with tempfile.TemporaryDirectory(prefix="meterread-bench-", dir=config.workdir) as work:
        root = Path(work) / "photos"
        log(f"synthesising {config.n} photos of {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} ...")
        photos, synth_rate = make_photos(root, config.n, config.seed)
        datas = [path.read_bytes() for path in photos]
        log("preprocessing: ours vs naive ...")
        preprocessing = bench_preprocessing(datas, reader, config.workers)
        images = [preprocess_photo(data, reader.image_size, layout=reader.layout).image for data in datas]
        log("model only ...")
        model_only = bench_model_only(reader, images, config.batch_size, config.repeats)
        del images, datas
        log(f"end to end: {config.n} photos ...")
        small = bench_end_to_end(root, model, config.family, config.batch_size, config.workers)
        big_root = Path(work) / "photos-x"
        replicate_bucket(photos, root, big_root, config.scale)
        log(f"end to end: {config.n * config.scale} photos ...")
        big = bench_end_to_end(big_root, model, config.family, config.batch_size, config.workers)
    return {
        "kind": "cpu-product-path",
        "model": model,
        "photo_size": list(PHOTO_SIZE),
        "n": config.n,
        "scale": config.scale,
        "batch_size": config.batch_size,
        "workers": config.workers,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "synth_images_per_s": synth_rate,
        "preprocessing": preprocessing,
        "model_only_images_per_s": model_only,
        "end_to_end": {"n": small, "scaled": big},
        "end_to_end_over_model_only": big["images_per_s"] / model_only,
        # Bounds for end to end: min(model, preprocessing) when they run on separate hardware (GPU + CPU cores);
        # 1 / (1/model + 1/preprocessing) when they share the same cores, as on a CPU-only machine.
        "bound_separate_hardware_images_per_s": min(model_only, preprocessing["pool_images_per_s"]),
        "bound_shared_cores_images_per_s": 1 / (1 / model_only + 1 / preprocessing["pool_images_per_s"]),
        "end_to_end_over_shared_bound": big["images_per_s"] * (1 / model_only + 1 / preprocessing["pool_images_per_s"]),
        "peak_rss_ratio_scaled_over_n": big["peak_rss_mb"] / small["peak_rss_mb"],
    }


# --- entry points ---------------------------------------------------------------------------------------------------


def run_bench(config: BenchConfig, log=print) -> dict:
    """Run the benchmark `config` asks for, write `config.out` (JSON) and return the results."""
    config.validate()
    if config.size == "demo":
        results = bench_cpu(config, log)
    else:
        from meterread.bench_architecture import bench_architecture

        results = bench_architecture(config, log)
    results["config"] = asdict(config)
    Path(config.out).parent.mkdir(parents=True, exist_ok=True)
    Path(config.out).write_text(json.dumps(results, indent=2))
    return results


def format_results(results: dict) -> str:
    """Human-readable table of `run_bench` results."""
    if results["kind"] == "architecture":
        bound = results["flop_bound_images_per_s"]
        lines = [
            f"{results['family']} {results['size']} ({results['parameters'] / 1e6:,.1f}M parameters) "
            f"on {results['device']}",
            f"  images/s ({results['new_tokens']} new tokens, batch {results['batch_size']}): "
            f"{results['images_per_s']:.1f}",
            f"  FLOPs per image: {results['flops_per_image'] / 1e9:.1f} GFLOP",
        ]
        if bound:
            lines.append(
                f"  FLOP upper bound at {results['peak_tflops']:.0f} TFLOPS: {bound:.0f} images/s "
                f"(measured = {results['fraction_of_flop_bound']:.1%} of it)"
            )
        return "\n".join(lines)
    pre, e2e = results["preprocessing"], results["end_to_end"]
    n, scaled = e2e["n"], e2e["scaled"]
    rows = [
        ("preprocessing, ours (1 thread)", f"{pre['ours_images_per_s']:.1f} images/s"),
        ("preprocessing, naive PIL + processor (1 thread)", f"{pre['naive_images_per_s']:.1f} images/s"),
        ("  ratio ours / naive (bar >= 4)", f"{pre['speedup']:.2f}x"),
        (f"preprocessing, ours ({results['workers']} worker threads)", f"{pre['pool_images_per_s']:.1f} images/s"),
        ("model only", f"{results['model_only_images_per_s']:.1f} images/s"),
        (f"end to end, {n['photos']} photos", f"{n['images_per_s']:.1f} images/s"),
        (f"end to end, {scaled['photos']} photos", f"{scaled['images_per_s']:.1f} images/s"),
        ("  ratio end to end / model only (bar >= 0.9)", f"{results['end_to_end_over_model_only']:.2f}"),
        ("  bound if model and preprocessing share the cores", f"{results['bound_shared_cores_images_per_s']:.1f}"),
        ("  ratio end to end / shared-cores bound", f"{results['end_to_end_over_shared_bound']:.2f}"),
        (f"peak RSS, {n['photos']} photos", f"{n['peak_rss_mb']:.0f} MiB"),
        (f"peak RSS, {scaled['photos']} photos", f"{scaled['peak_rss_mb']:.0f} MiB"),
        ("  ratio (bar <= 1.2)", f"{results['peak_rss_ratio_scaled_over_n']:.3f}"),
    ]
    width = max(len(name) for name, _ in rows)
    header = (
        f"meterread bench: {results['n']} photos of {results['photo_size'][0]}x{results['photo_size'][1]}, "
        f"batch {results['batch_size']}, {results['cpu_count']} CPUs, torch threads {results['torch_threads']}"
    )
    return "\n".join([header] + [f"  {name.ljust(width)}  {value}" for name, value in rows])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m meterread.bench", description=__doc__.split("\n\n")[0])
    defaults = BenchConfig()
    parser.add_argument("--n", type=int, default=defaults.n, help="photos (end to end also at scale x n)")
    parser.add_argument("--scale", type=int, default=defaults.scale)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--workers", type=int, default=defaults.workers, help="preprocessing threads")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=defaults.device, help="auto, cpu or cuda[:N]")
    parser.add_argument("--family", default=defaults.family, choices=list(known_families()))
    parser.add_argument("--size", default=defaults.size, choices=SIZES, help="demo: product path; tiny/full: arch")
    parser.add_argument("--model", default=None, help="model dir for --size demo (default: bundled demo model)")
    parser.add_argument("--new-tokens", type=int, default=defaults.new_tokens)
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--compile", action="store_true", help="torch.compile + static cache (fixed shapes)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for the FLOP bound")
    parser.add_argument("--out", default=defaults.out, help="results JSON")
    parser.add_argument("--workdir", default=None, help="where the synthetic photos go (default: temp dir)")
    parser.add_argument(
        "--history", default=None, metavar="ROWS", help="e.g. 0,1000000: one night into outputs holding ROWS rows"
    )
    parser.add_argument("--night", type=int, default=24, help="photos in the --history night")
    parser.add_argument(
        "--training", action="store_true", help="a ppocr training step (--model, --batch-size), both memory layouts"
    )
    parser.add_argument("--end-to-end", nargs=3, metavar=("SOURCE", "OUTPUT", "MODEL"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.end_to_end:  # the child process of bench_end_to_end
        print(json.dumps(end_to_end(*args.end_to_end, args.family, args.batch_size, args.workers)))
        return
    if args.history is not None:
        history_main(args)
        return
    if args.training:
        from meterread.bench_training import training_main

        training_main(args)
        return
    values = {k: v for k, v in vars(args).items() if k not in ("end_to_end", "history", "night", "training")}
    try:
        config = BenchConfig(**values).validate()
    except ValueError as error:
        raise SystemExit(f"meterread bench: {error}") from None
    results = run_bench(config)
    print(format_results(results))
    print(f"results: {args.out}")


def history_main(args: argparse.Namespace) -> None:
    """`--history ROWS`: the night-cost-versus-history benchmark (`meterread.bench_history`)."""
    from meterread.bench_history import bench_history, dump, format_history, parse_history

    try:
        sizes = parse_history(args.history)
    except ValueError as error:
        raise SystemExit(f"meterread bench: {error}") from None
    results = bench_history(sizes, args.night, args.seed, args.model, args.batch_size, args.workdir)
    dump(results, args.out)
    print(format_history(results))
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
