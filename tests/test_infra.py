"""infra/ validated statically (no Docker engine or cluster here): files parse, references resolve, and they agree
with prefect.yaml and the project layout."""

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
PREFECT = yaml.safe_load((ROOT / "prefect.yaml").read_text())
POOLS = {d["work_pool"]["name"] for d in PREFECT["deployments"]}


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (INFRA / "Dockerfile.worker").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def compose() -> dict:
    return yaml.safe_load((INFRA / "compose.yaml").read_text())


def test_worker_image_is_pytorch_cuda_with_the_project_and_a_gpu_worker():
    instructions = dockerfile_instructions()
    base = next(arg for op, arg in instructions if op == "FROM")
    assert re.fullmatch(r"pytorch/pytorch:[\w.]+-cuda[\w.]+-cudnn\d+-runtime", base)
    for op, arg in instructions:
        if op == "COPY":
            *sources, _ = arg.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source} does not exist"
    workdir = next(arg for op, arg in instructions if op == "WORKDIR")
    env = " ".join(arg for op, arg in instructions if op == "ENV")
    assert f"METERREAD_PROJECT_DIR={workdir}" in env  # the directory prefect.yaml's pull step goes to
    run = " ".join(arg for op, arg in instructions if op == "RUN")
    assert '".[pipeline]"' in run and "torchvision" not in run
    command = json.loads(next(arg for op, arg in instructions if op == "CMD"))
    assert command[:3] == ["prefect", "worker", "start"]
    assert command[command.index("--pool") + 1] == "gpu" and "--limit" in command


def test_compose_stack_is_consistent():
    stack = compose()
    services = stack["services"]
    assert {"postgres", "prefect-server", "s3", "gpu-worker", "control-worker"} <= set(services)
    for name, service in services.items():
        depends = service.get("depends_on", [])
        assert set(depends) <= set(services), f"{name} depends on an unknown service"
        if "image" in service and "build" not in service:
            assert ":" in service["image"], f"{name}: pin the image tag"
        if "build" in service:
            build = service["build"]
            assert (INFRA / build["context"] / build["dockerfile"]).is_file()
    server = services["prefect-server"]
    assert "@postgres:5432/" in server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    port = server["command"][server["command"].index("--port") + 1]
    workers = [s for s in services.values() if "worker" in " ".join(s.get("command", []))]
    pools = set()
    for worker in workers:
        env = worker["environment"]
        assert env["PREFECT_API_URL"] == f"http://prefect-server:{port}/api"
        assert env["AWS_ENDPOINT_URL_S3"].startswith("http://s3:")
        for name in ("METERREAD_PROJECT_DIR", "METERREAD_SOURCE", "METERREAD_OUTPUT", "AWS_ACCESS_KEY_ID"):
            assert env.get(name), f"worker env lacks {name}"
        pools.add(worker["command"][worker["command"].index("--pool") + 1])
    assert pools == POOLS  # a worker for every work pool prefect.yaml deploys to
    gpu = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and gpu["count"] == 1
    assert "--limit" in services["gpu-worker"]["command"]


def test_kubernetes_gpu_job_template_requests_one_gpu_and_declares_every_variable():
    template = json.loads((INFRA / "k8s" / "gpu-base-job-template.json").read_text())
    variables = template["variables"]["properties"]
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
    assert used <= set(variables), used - set(variables)
    (container,) = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpus }}"
    assert variables["gpus"]["default"] == 1
    assert variables["image"]["default"] == compose()["services"]["gpu-worker"]["image"]
    assert variables["env"]["default"]["METERREAD_PROJECT_DIR"] == "/opt/meterread"


def test_infra_readme_documents_each_file():
    readme = (INFRA / "README.md").read_text()
    for name in ("Dockerfile.worker", "compose.yaml", "k8s/gpu-base-job-template.json", "prefect deploy --all"):
        assert name in readme


def test_compose_deploy_service_sets_every_variable_prefect_yaml_templates():
    templated = set(re.findall(r"\{\{\s*\$(\w+)\s*\}\}", json.dumps(PREFECT)))  # values, not comments
    deploy = compose()["services"]["deploy"]
    assert deploy["command"][-2:] == ["deploy", "--all"]
    assert templated and templated <= set(deploy["environment"]), templated - set(deploy["environment"])
