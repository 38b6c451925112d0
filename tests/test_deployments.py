"""prefect.yaml stays consistent with the flows it points at."""

import dataclasses
import importlib
from pathlib import Path

import yaml
from prefect.flows import Flow

from meterread.models.base import ModelSpec

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
        assert set(deployment["parameters"]) <= accepted, set(deployment["parameters"]) - accepted
        model = deployment["parameters"].get("model", {})
        assert set(model) <= {f.name for f in dataclasses.fields(ModelSpec)}
