"""Fan-out: one orchestrator lists the night's photos once and runs one `read-shard` deployment per shard on the GPU
work pool; Prefect workers (one flow run at a time each: `prefect worker start --pool gpu --limit 1`) do the reading.

    nightly-fanout (pool `control`)  plan -> shard files -> run_deployment(read-shard) x shards -> wait -> retry
                                      failed shards -> gather shard results -> night manifest + summary artifact
    read-shard     (pool `gpu`)      shard file -> preprocess + VLM + validate -> Parquet + result file

Shards are idempotent (files named by run id and shard id), so a retried shard rewrites its own files. The
orchestrator holds the output's lease for the whole night (renewing it while it waits); a shard run writes only
while that lease is its night's.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.deployments import run_deployment
from prefect.runtime import flow_run

from flows.nightly_read import (
    STORAGE_TASK,
    fold_state,
    list_source,
    publish_summary,
    release_lease,
    resolve_model,
    show_library_logs,
    take_lease,
    update_tables,
    use_credentials_block,
)
from meterread.config import ReadConfig
from meterread.models.base import spec_fingerprint
from meterread.read import fanout, lease, planning, runner
from meterread.read.meters import load_meter_profiles
from meterread.training import registry

log = logging.getLogger(__name__)
READ_SHARD_DEPLOYMENT = "read-shard/read-shard"
RENEW_LEASE_EVERY_S = 600.0  # while waiting on shard runs; the lease's TTL is hours
RETRY_RENEWAL_S = 30.0  # after storage trouble while renewing
DEFAULT_SHARD_TIMEOUT_S = 4 * 3600.0  # give up on (and cancel) an attempt's shard runs after this long


# --- read-shard: runs on a GPU worker ----------------------------------------------------------------------------


@task(cache_policy=NO_CACHE)
def read_shard_file(config: ReadConfig, shard_uri: str) -> dict:
    """No task retries: photo reads retry inside; the orchestrator reruns a failed shard as a whole."""
    return fanout.read_shard_file(config, runner.cached_reader(config.model), shard_uri)


@flow(name="read-shard")
def read_shard(config: ReadConfig, shard_uri: str, credentials_block: str | None = None) -> dict:
    """Read one shard file written by `nightly-fanout` into the output; returns the shard's result.

    `config`: the night's settings as the orchestrator validated them, with its run id and the model pinned to the
    night's registry version (`registry://URL@VERSION`); `shard_uri` names the shard file."""
    show_library_logs()
    use_credentials_block(credentials_block)
    settings = resolve_model(config.validate())  # the pinned version, fetched here
    result = read_shard_file(settings, shard_uri)
    get_run_logger().info(
        "shard %s: %d photos -> %s on %s", result["shard_id"], result["photos"], result["counts"], result["worker"]
    )
    return result


# --- nightly-fanout: the orchestrator --------------------------------------------------------------------------


@task(**STORAGE_TASK)
def plan_night(
    config: ReadConfig, run_id: str, listed: list[planning.Photo]
) -> tuple[planning.RunPlan, str, list[str]]:
    """Skip what the output has of the night's one listing, cut shards, write the shard files: (plan, fingerprint,
    shard URIs)."""
    fingerprint = spec_fingerprint(config.model)
    plan = planning.plan_run(config, fingerprint, run_id, listed)
    return plan, fingerprint, fanout.save_shards(config, plan)


@task(**STORAGE_TASK)
def check_meters_table(config: ReadConfig) -> None:
    load_meter_profiles(config.meters_table)


@task(**STORAGE_TASK)
def prune_run_folders(config: ReadConfig, run_id: str) -> list[str]:
    return fanout.prune_run_folders(config, run_id)


@task(cache_policy=NO_CACHE)
def submit_shard(deployment: str, parameters: dict, idempotency_key: str) -> UUID:
    """Create the shard's flow run (a child of this flow run) and return at once; a worker picks it up."""
    child = run_deployment(
        deployment, parameters=parameters, timeout=0, idempotency_key=idempotency_key, as_subflow=True
    )
    return child.id


@task(cache_policy=NO_CACHE)
def wait_for_runs(
    run_ids: list[UUID], timeout_seconds: float | None, held: lease.Lease | None = None
) -> dict[UUID, str]:
    """Wait on the shard runs through Prefect's flow-run futures (completion events, not polling); returns each
    one's final state type (COMPLETED, FAILED, ...), TIMED_OUT for those unfinished after `timeout_seconds`.
    Renews the orchestrator's lease `held` every RENEW_LEASE_EVERY_S meanwhile (a lost lease raises RunLocked)."""
    from prefect.futures import PrefectFlowRunFuture, wait

    futures = [PrefectFlowRunFuture(run_id) for run_id in run_ids]
    deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
    pending, next_renewal = futures, time.monotonic() + RENEW_LEASE_EVERY_S
    while True:
        if held is not None and time.monotonic() >= next_renewal:
            next_renewal = time.monotonic() + renew_while_waiting(held)
        if not pending or (deadline is not None and time.monotonic() >= deadline):
            break
        until = min(next_renewal if held is not None else float("inf"), deadline or float("inf"))
        window = None if until == float("inf") else max(until - time.monotonic(), 0.01)
        pending = list(wait(pending, timeout=window).not_done)
    return {future.flow_run_id: future.state.type.value if future not in pending else "TIMED_OUT" for future in futures}


@task(**STORAGE_TASK)
def shard_result(config: ReadConfig, run_id: str, shard_id: str) -> dict | None:
    return fanout.load_shard_result(config, run_id, shard_id)


@task(**STORAGE_TASK)
def gather(config, plan, results, fingerprint, started_at, failed) -> dict:
    return fanout.gather_manifest(config, plan, results, fingerprint, started_at, failed)


def renew_while_waiting(held: lease.Lease) -> float:
    """Renew the night's lease; seconds until the next renewal. A lost lease stops the night (RunLocked); storage
    trouble is logged and retried soon, as the lease's TTL is hours away."""
    try:
        lease.renew(held)
    except lease.RunLocked:
        raise
    except Exception as error:  # s3fs raises many types for network trouble
        log.warning("could not renew the output's lease (%s); retrying in %.0f s", error, RETRY_RENEWAL_S)
        return RETRY_RENEWAL_S
    return RENEW_LEASE_EVERY_S


@task(cache_policy=NO_CACHE)
def cancel_runs(run_ids: list[UUID]) -> None:
    """Cancel shard runs given up on (still queued: Cancelled; running: Cancelling, the worker stops it), so a
    late finisher never writes beside the next attempt's run of the same shard."""
    if not run_ids:
        return
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Cancelling

    with get_client(sync_client=True) as client:
        for run_id in run_ids:
            run = client.read_flow_run(run_id)
            if run.state is None or run.state.is_final():
                continue
            state = Cancelling() if run.state.is_running() else Cancelled()
            client.set_flow_run_state(run_id, state, force=True)


def run_shards(config: ReadConfig, plan, uris: list[str], options: dict, logger) -> tuple[list[dict], list[str]]:
    """Run every shard as a `read-shard` flow run, rerunning failed ones; returns (results, failed shard ids)."""
    pending = {shard.shard_id: uri for shard, uri in zip(plan.shards, uris)}
    results: dict[str, dict] = {}
    for attempt in range(1, options["shard_attempts"] + 1):
        if options.get("lease") is not None:
            lease.renew(options["lease"])  # start no shard runs for a night that lost its output
        launched = {
            submit_shard(
                options["read_deployment"],
                {"config": options["config"], "shard_uri": uri, "credentials_block": options["credentials_block"]},
                f"{plan.run_id}:{shard_id}:{attempt}:{flow_run.get_run_count() or 1}",  # a retried night: new runs
            ): shard_id
            for shard_id, uri in pending.items()
        }
        logger.info("attempt %d: %d shard runs submitted to %s", attempt, len(launched), options["read_deployment"])
        states = wait_for_runs(list(launched), options["shard_timeout_seconds"], options.get("lease"))
        cancel_runs([run_id for run_id, state in states.items() if state == "TIMED_OUT"])
        for run_id, shard_id in launched.items():
            result = shard_result(config, plan.run_id, shard_id) if states[run_id] == "COMPLETED" else None
            if result is not None:
                results[shard_id] = result
                pending.pop(shard_id)
            else:
                logger.warning("shard %s ended %s (attempt %d)", shard_id, states[run_id], attempt)
        if not pending:
            break
    return [results[s.shard_id] for s in plan.shards if s.shard_id in results], sorted(pending)


@flow(name="nightly-fanout")
def nightly_fanout(
    config: ReadConfig,
    credentials_block: str | None = None,
    read_deployment: str = READ_SHARD_DEPLOYMENT,
    shard_attempts: int = 2,
    shard_timeout_seconds: float | None = DEFAULT_SHARD_TIMEOUT_S,
) -> dict:
    """Read every new photo under `config.source` into `config.output` with one `read-shard` flow run per shard.

    `config` as in `nightly-read` (its `run_id` is this flow run's). `read_deployment`: the shard deployment
    (`flow-name/deployment-name`); `shard_attempts`: runs per shard before the night fails (rows of finished shards
    stay; a rerun of the night picks up the rest); `shard_timeout_seconds`: give up on an attempt's runs after this
    long (default 4 h; they are cancelled, so a late one never writes beside the next attempt; None waits forever).
    A missing source or one with no photo fails the night (nothing written) unless `config.allow_empty`."""
    logger = get_run_logger()
    show_library_logs()
    use_credentials_block(credentials_block)
    given = config.validate()
    listed = list_source(given)
    config = resolve_model(given)  # registry:// -> the version tonight reads, recorded in the night's manifest
    run_id = f"flow-{flow_run.get_id() or planning.new_run_id()}"
    pinned = registry.shard_model_settings(config.model)  # every shard reads that same version
    shard_config = given.replace(run_id=run_id, **pinned)
    started_at = datetime.now(timezone.utc)
    held = take_lease(config, run_id)
    try:
        check_meters_table(config)  # fail once here, not in every shard
        plan, fingerprint, uris = plan_night(config, run_id, listed)
        logger.info("listed %d photos, %d already done, %d shards", plan.listed, plan.already_done, len(plan.shards))
        options = {
            # only what differs from the defaults: a GPU worker fills in its own (the bundled model's path on it)
            "config": shard_config.model_dump(mode="json", exclude_defaults=True),
            "read_deployment": read_deployment,
            "credentials_block": credentials_block,
            "shard_attempts": shard_attempts,
            "shard_timeout_seconds": shard_timeout_seconds,
            "lease": held,
        }
        results, failed = run_shards(config, plan, uris, options, logger)
        manifest = gather(config, plan, results, fingerprint, started_at, failed)
        lease.renew(held)  # fold only while this night still holds the output: the state has one writer
        fold_state(config)
        update_tables(config)
        prune_run_folders(config, run_id)  # earlier nights' shard files: their manifests keep what they said
        flagged = [row for result in results for row in result["flagged"]][: runner.FLAGGED_SAMPLE]
        publish_summary(manifest, flagged)
    finally:
        release_lease(held)
    if failed:
        raise RuntimeError(f"{len(failed)} shard(s) failed after {shard_attempts} attempts: {failed}; rerun the night")
    logger.info("run %s done: %s over workers %s", run_id, manifest["counts"], manifest["workers"])
    return manifest
