"""Model registry: a folder or s3:// prefix of versioned checkpoints with a `current.json` pointer.

    {registry}/versions/{version}/...   adapter or model, processor, metrics, recipe (copied from a checkpoint)
    {registry}/current.json             {"version", "score", "metric", "promoted_at", "path"}

Promotion is gated: a candidate replaces `current` only if it beats it on the test split by a margin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from meterread.storage import resolve, with_retries, write_bytes

POINTER = "current.json"


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate_score: float | None
    current_score: float | None


def decide(candidate: float | None, current: float | None, margin: float) -> Decision:
    """Promote when there is no current model, or the candidate beats it by at least `margin`. Pure."""
    if candidate is None:
        return Decision(False, "candidate has no score", candidate, current)
    if current is None:
        return Decision(True, "no current model: first promotion", candidate, current)
    if candidate >= current + margin:
        return Decision(
            True, f"candidate {candidate:.4f} >= current {current:.4f} + margin {margin}", candidate, current
        )
    return Decision(False, f"candidate {candidate:.4f} < current {current:.4f} + margin {margin}", candidate, current)


def read_current(registry: str) -> dict | None:
    fs, root = resolve(registry)
    fs.invalidate_cache(root)
    path = f"{root}/{POINTER}"
    return with_retries(lambda: json.loads(fs.cat_file(path)) if fs.exists(path) else None)


def publish(registry: str, checkpoint: str | Path, score: float, metric: str = "exact_match") -> dict:
    """Copy a checkpoint into `versions/{version}/` and point `current.json` at it; returns the pointer."""
    fs, root = resolve(registry)
    version = datetime.now(timezone.utc).strftime("v%Y%m%dT%H%M%S%fZ")
    target = f"{root}/versions/{version}"
    for path in sorted(Path(checkpoint).rglob("*")):
        if path.is_file() and path.name != "trainer_state.pt":
            write_bytes(fs, f"{target}/{path.relative_to(checkpoint).as_posix()}", path.read_bytes())
    pointer = {
        "version": version,
        "score": score,
        "metric": metric,
        "path": fs.unstrip_protocol(target),
        "promoted_at": datetime.now(timezone.utc).isoformat(),
    }
    write_bytes(fs, f"{root}/{POINTER}", json.dumps(pointer, indent=2).encode())
    return pointer
