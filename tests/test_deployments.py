"""prefect.yaml stays consistent with the flows it points at."""

import importlib
from pathlib import Path

import yaml
from prefect.flows import Flow

from meterread.config import ReadConfig

ROOT = Path(__file__).resolve().parents[1]
SPEC = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in SPEC["deployments"]}


def load_entrypoint(entrypoint: str) -> Flow:
    path, name = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, name)


def test_finetune_deployment_points_at_an_existing_recipe():
    finetune = DEPLOYMENTS["finetune"]
    assert isinstance(load_entrypoint(finetune["entrypoint"]), Flow)
    assert (ROOT / finetune["parameters"]["recipe"]).is_file()


def test_read_deployments_follow_the_model_registry_the_finetune_deployment_promotes_to():
    from meterread.models.references import parse_reference

    registry = DEPLOYMENTS["finetune"]["parameters"]["registry_url"]
    assert registry == "{{ $METERREAD_REGISTRY }}"
    for name in ("nightly-read", "read-now", "nightly-fanout"):
        model = DEPLOYMENTS[name]["parameters"]["config"]["model"]
        assert model == {"base": f"registry://{registry}"}, name
        assert parse_reference(model["base"].replace(registry, "s3://meter-models/registry")) == (
            "s3://meter-models/registry",
            None,
        )


def test_finetune_deployment_scores_the_makefiles_eval_sets():
    import re

    from flows.finetune import parse_eval_set

    parameters = DEPLOYMENTS["finetune"]["parameters"]
    assert parameters["floor"] is None  # the current model's score, never below MIN_PROMOTION_FLOOR
    deployed = [parse_eval_set(text) for text in parameters["eval_sets"]]
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    listed = re.search(r"^EVAL_SETS := (.*)$", makefile, re.MULTILINE).group(1).replace("$(DATA)", "data").split()
    assert [f"{s.name}:{s.dataset}:{s.split}" for s in deployed] == listed


def test_nightly_and_manual_deployments_point_at_the_same_flow():
    assert {"nightly-read", "read-now"} <= set(DEPLOYMENTS)
    nightly, manual = DEPLOYMENTS["nightly-read"], DEPLOYMENTS["read-now"]
    assert nightly["entrypoint"] == manual["entrypoint"] == "flows/nightly_read.py:nightly_read"
    assert isinstance(load_entrypoint(nightly["entrypoint"]), Flow)
    assert nightly["schedules"] == [{"cron": "0 2 * * *", "timezone": "UTC", "active": True}]
    assert "schedules" not in manual


def test_deployment_parameters_are_flow_parameters():
    for deployment in DEPLOYMENTS.values():
        flow = load_entrypoint(deployment["entrypoint"])
        accepted = set(flow.parameters.properties)
        assert set(deployment.get("parameters", {})) <= accepted, set(deployment["parameters"]) - accepted


def test_read_deployments_hold_only_what_differs_from_the_defaults():
    """The read settings are declared once (ReadConfig); prefect.yaml names a value only where it differs."""
    defaults = ReadConfig(source="s", output="o")
    for name in ("nightly-read", "read-now", "nightly-fanout"):
        parameters = DEPLOYMENTS[name]["parameters"]
        config = ReadConfig.from_mapping(parameters["config"]).validate()  # unknown keys would raise here
        flow = load_entrypoint(DEPLOYMENTS[name]["entrypoint"])
        assert set(parameters) == {"config"}, name  # the flows' other parameters keep their declared defaults
        for key in parameters["config"]:
            default = getattr(defaults, key)
            given = getattr(config, key)
            assert given != default or key in ("source", "output"), (name, key)
        assert set(parameters["config"]["model"]) == {"base"} and config.model.family == defaults.model.family
        assert flow.parameters.properties["config"]["$ref"].endswith("/ReadConfig")  # a form, not free JSON


def test_fanout_orchestrator_runs_the_read_shard_deployment_on_the_gpu_pool():
    fanout, shard = DEPLOYMENTS["nightly-fanout"], DEPLOYMENTS["read-shard"]
    flow_name = load_entrypoint(shard["entrypoint"]).name
    orchestrator = load_entrypoint(fanout["entrypoint"])
    assert orchestrator.parameters.properties["read_deployment"]["default"] == f"{flow_name}/{shard['name']}"
    assert shard["work_pool"]["name"] == "gpu" and DEPLOYMENTS["nightly-read"]["work_pool"]["name"] == "gpu"
    assert fanout["work_pool"]["name"] == "control"  # never holds a GPU slot while it waits for shards
    assert load_entrypoint(fanout["entrypoint"]).name == "nightly-fanout"
    for deployment in DEPLOYMENTS.values():
        for schedule in deployment.get("schedules", []):
            assert schedule["timezone"] and schedule["cron"]
    active = [d["name"] for d in DEPLOYMENTS.values() for s in d.get("schedules", []) if s["active"]]
    assert active == ["nightly-read"]  # one nightly writer at a time; the fan-out schedule is the alternative


def test_workers_pull_from_the_project_directory_given_at_deploy_time():
    (step,) = SPEC["pull"]
    assert step["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ $METERREAD_PROJECT_DIR }}"


def test_nightly_deployments_run_one_flow_run_at_a_time():
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    for name in ("nightly-read", "read-now", "nightly-fanout"):
        limit = ConcurrencyLimitConfig.model_validate(DEPLOYMENTS[name]["concurrency_limit"])  # as prefect deploy
        assert limit.limit == 1, name
        assert limit.collision_strategy in (ConcurrencyLimitStrategy.CANCEL_NEW, ConcurrencyLimitStrategy.ENQUEUE)
    assert "concurrency_limit" not in DEPLOYMENTS["read-shard"]  # a night's shards run side by side
