"""Nightly read flow: list new photos -> read each shard (preprocess + VLM + validate) -> write Parquet -> summary.

Run locally:  python -m flows.nightly_read SOURCE OUTPUT
Deployments:  see prefect.yaml (`nightly-read` on a cron schedule, `read-now` manual).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from meterread.config import ReadConfig
from meterread.read import lease, planning, runner
from meterread.read.history import MeterHistory
from meterread.read.meters import load_meter_profiles
from meterread.read.rows import status_counts
from meterread.storage import use_s3_credentials

# Storage tasks do not retry: each storage call inside retries itself (`meterread.storage.with_retries`, the one
# retry layer), so a task retry would multiply attempts. A lost lease or a missing source fails at once.
STORAGE_TASK = {"cache_policy": NO_CACHE}
FLAGGED_SAMPLE = runner.FLAGGED_SAMPLE
NIGHTLY_REBUILD_FILES = 500  # a night rebuilds never-built tables only over an output this small (files)


@task(**STORAGE_TASK)
def list_source(config: ReadConfig) -> list[planning.Photo]:
    """SOURCE's photos, listed before the lease is taken: a missing or empty source fails the night (NothingToRead)
    with nothing written."""
    return planning.list_source(config)


@task(**STORAGE_TASK)
def resolve_model(config: ReadConfig) -> ReadConfig:
    """A model reference (`model.base: registry://URL`) -> the registry version this run reads, resolved once at
    its start (`runner.resolve_model`); a registry without a current model fails the run (ModelLoadError)."""
    resolved = runner.resolve_model(config)
    if resolved.model.reference:
        get_run_logger().info("model %s -> %s", config.model.base, resolved.model.reference)
    return resolved


@task(**STORAGE_TASK)
def plan_run(config: ReadConfig, fingerprint: str, run_id: str, listed: list[planning.Photo]) -> planning.RunPlan:
    return planning.plan_run(config, fingerprint, run_id, listed)


@task(cache_policy=NO_CACHE)
def take_lease(config: ReadConfig, run_id: str):
    """No retries: a held lease means another run is writing this output."""
    return runner.take_lease(config, run_id)


@task(**STORAGE_TASK)
def release_lease(held) -> None:
    lease.release(held)


@task(**STORAGE_TASK)
def renew_lease(held) -> None:
    lease.renew(held)


@task(**STORAGE_TASK)
def load_context(config: ReadConfig, plan: planning.RunPlan) -> tuple[MeterHistory, dict]:
    history = planning.load_history(config, planning.planned_photos(plan), plan.run_id)
    return history, load_meter_profiles(config.meters_table)


@task(cache_policy=NO_CACHE)
def process_shard(
    config: ReadConfig, shard: planning.Shard, run_id: str, history: MeterHistory, profiles: dict
) -> list[dict]:
    """No retries: storage reads inside are retried per photo, and model errors should surface."""
    reader = runner.cached_reader(config.model)
    return runner.process_shard(config, reader, shard, run_id, history, profiles)


@task(**STORAGE_TASK)
def write_shard(config: ReadConfig, rows: list[dict], run_id: str, shard_id: str) -> list[str]:
    return runner.write_rows(config, rows, run_id, shard_id)


@task(**STORAGE_TASK)
def finish_run(config, plan, counts, files, started_at) -> dict:
    return runner.finish_run(config, plan, runner.cached_reader(config.model), counts, files, started_at)


@task(cache_policy=NO_CACHE)
def fold_state(config: ReadConfig) -> None:
    """The night's rows into the output's state; never fails the night (`runner.fold_state`)."""
    runner.fold_state(config)


@task(cache_policy=NO_CACHE)
def update_tables(config: ReadConfig) -> dict | None:
    """The analyst tables, recomputed for the meters the night touched (`meterread.tables.store.update_tables`).
    Never fails the night, and rebuilds them whole only for a small output (at most NIGHTLY_REBUILD_FILES files:
    the first nights); a larger one is rebuilt by `meterread tables OUTPUT` (once after deploying on an existing
    output, or after dataset files were deleted), and the night logs that. The readings are written either way."""
    from meterread.tables.store import update_tables as update

    try:
        return update(config.output, config.meters_table, max_rebuild_files=NIGHTLY_REBUILD_FILES)
    except Exception as error:  # storage trouble, never-built tables, a bad meters table: the readings are safe
        get_run_logger().warning(
            "analyst tables not updated (%s: %s); the next night catches up", type(error).__name__, error
        )
        return None


@task(cache_policy=NO_CACHE)
def publish_summary(manifest: dict, flagged: list[dict]) -> None:
    counts = manifest["counts"]
    create_table_artifact(
        key="read-summary",
        table=[{"status": status, "photos": count} for status, count in counts.items()]
        + [{"status": "already done (skipped)", "photos": manifest["already_done"]}],
        description=f"Run {manifest['run_id']}: {manifest['processed']} photos read; {manifest['manifest_uri']}",
    )
    create_table_artifact(  # every night, empty when nothing was flagged: the newest is always this night's
        key="flagged-sample",
        table=[
            {
                "image_uri": row["image_uri"],
                "reading_text": row.get("reading_text"),
                "confidence": row.get("confidence"),
                "status": row["status"],
                "reasons": "; ".join(row["reasons"]),
            }
            for row in flagged
        ],
        description=f"Run {manifest['run_id']}: up to {FLAGGED_SAMPLE} flagged or error rows for review"
        + ("" if flagged else " (none tonight)"),
    )
    create_markdown_artifact(
        key="read-manifest", markdown=f"```json\n{json.dumps(manifest, indent=2, default=str)}\n```"
    )


class _InsideARun(logging.Filter):
    """Pass records logged inside a Prefect flow or task run only (elsewhere there is no run to attach them to)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.context import FlowRunContext, TaskRunContext

        return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def show_library_logs() -> None:
    """Send the library's log records (`meterread.*`: storage retries, skipped files, state folds) to the current
    flow run's logs in the Prefect UI, as `PREFECT_LOGGING_EXTRA_LOGGERS=meterread` would, but only from inside a run:
    the same process may use the library outside flows (tests, the CLI), whose records stay local."""
    from prefect.logging.handlers import APILogHandler

    library = logging.getLogger("meterread")
    if not any(isinstance(handler, APILogHandler) for handler in library.handlers):
        handler = APILogHandler()
        handler.addFilter(_InsideARun())
        library.addHandler(handler)
    if library.level == logging.NOTSET:
        library.setLevel(logging.INFO)


def use_credentials_block(name: str | None) -> None:
    """Load S3 credentials from a Prefect Secret block (JSON with aws_access_key_id, aws_secret_access_key,
    optional aws_session_token, endpoint_url, region) as this worker's S3 storage options
    (`meterread.storage.use_s3_credentials`; not copied into the environment). Values are never logged."""
    if not name:
        return
    from prefect.blocks.system import Secret

    secret = Secret.load(name).get()
    use_s3_credentials(json.loads(secret) if isinstance(secret, str) else dict(secret))


def read_night(
    config: ReadConfig, reader, held, listed: list[planning.Photo], started_at: datetime, logger
) -> tuple[dict, dict]:
    """The night's tasks in order: plan, then per shard read + lease renewal + write (shard k is written while
    shard k+1 is read), then manifest and summary. `held`: this run's lease on the output; `listed`: SOURCE's photos."""
    run_id = held.run_id
    plan = plan_run(config, reader.fingerprint, run_id, listed)
    logger.info(
        "listed %d photos, %d already done, %d shards to read", plan.listed, plan.already_done, len(plan.shards)
    )
    history, profiles = load_context(config, plan)
    counts = {"accepted": 0, "flagged": 0, "error": 0}
    files: list[str] = []
    flagged: list[dict] = []
    writing = None  # the previous shard's write, running while this shard is read
    for index, shard in enumerate(plan.shards, 1):
        rows = process_shard(config, shard, run_id, history, profiles)
        files += writing.result() if writing else []
        renew_lease(held)
        writing = write_shard.submit(config, rows, run_id, shard.shard_id)
        for status, count in status_counts(rows).items():
            counts[status] += count
        flagged += [row for row in rows if row["status"] != "accepted"][: FLAGGED_SAMPLE - len(flagged)]
        logger.info("shard %d/%d: %d photos, totals %s", index, len(plan.shards), len(rows), counts)
    files += writing.result() if writing else []
    manifest = finish_run(config, plan, counts, files, started_at)
    renew_lease(held)  # fold only while this run still holds the output: the state has one writer
    fold_state(config)
    update_tables(config)
    publish_summary(manifest, flagged)
    return manifest, counts


@flow(name="nightly-read", log_prints=False)
def nightly_read(config: ReadConfig, credentials_block: str | None = None) -> dict:
    """Read every new photo under `config.source` into the Parquet dataset at `config.output`; returns the run
    manifest. `config` is `meterread.config.ReadConfig` (the UI shows its fields with their defaults and help).

    `config.model.base: registry://URL` reads the model registry's current version, resolved once at the start of
    the run. `config.run_id` defaults to this flow run's id, so a retried flow run rewrites its own files. A missing
    source or one with no photo fails the run (nothing written) unless `config.allow_empty`.
    `credentials_block`: a Secret block with S3 credentials for this run (`use_credentials_block`).
    """
    logger = get_run_logger()
    show_library_logs()
    use_credentials_block(credentials_block)
    config = config.validate()
    listed = list_source(config)
    config = resolve_model(config)  # registry:// -> the version this night reads, recorded in its manifest
    run_id = config.run_id or f"flow-{flow_run.get_id() or planning.new_run_id()}"
    started_at = datetime.now(timezone.utc)
    reader = runner.cached_reader(config.model)
    logger.info("model %s (fingerprint %s) on %s", reader.model_id, reader.fingerprint, reader.device)
    held = take_lease(config, run_id)
    try:
        manifest, counts = read_night(config, reader, held, listed, started_at, logger)
    finally:
        release_lease(held)
    logger.info("run %s done: %s", run_id, counts)
    return manifest


if __name__ == "__main__":
    nightly_read(ReadConfig(source=sys.argv[1], output=sys.argv[2]))
