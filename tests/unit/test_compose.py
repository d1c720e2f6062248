"""The production deployment (docker-compose.yml + deploy/) renders and keeps its promises.

`docker-compose config` (Debian's docker-compose 1.29) validates the file against its schema and
interpolates the environment; the assertions run on what it renders, not on the raw YAML.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.triton import KEEPALIVE_FLAGS

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = shutil.which("docker-compose")
DUMMY_KEY = "test-key-not-a-secret"
# The Triton replicas: one service each, both also named `triton` on the network.
TRITONS = ("triton-1", "triton-2")

needs_compose = pytest.mark.skipif(
    COMPOSE is None,
    reason="the docker-compose binary is missing (Debian package `docker-compose`; "
    "`make install` installs it)",
)


def _compose_config(api_keys: str | None, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EPITHRE_API_KEYS"}
    env.update(variables)
    if api_keys is not None:
        env["EPITHRE_API_KEYS"] = api_keys
    assert COMPOSE is not None
    return subprocess.run(
        [COMPOSE, "-f", "docker-compose.yml", "config"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    if COMPOSE is None:
        pytest.skip("the docker-compose binary is missing (Debian package `docker-compose`)")
    result = _compose_config(DUMMY_KEY)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, Any]:
    return config["services"]


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            pairs.append((instruction.upper(), args.strip()))
    return pairs


def _healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


# --- the file itself ------------------------------------------------------------------------


@needs_compose
def test_compose_file_validates_with_docker_compose_1_29(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {*TRITONS, "gateway", "prometheus"}


@needs_compose
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_compose_refuses_to_render_without_api_keys(value: str | None) -> None:
    result = _compose_config(value)
    assert result.returncode != 0
    assert "set EPITHRE_API_KEYS" in result.stderr


# --- triton ---------------------------------------------------------------------------------


@needs_compose
@pytest.mark.parametrize("triton", TRITONS)
def test_triton_is_built_from_the_pinned_tritonserver_24_10_py3_image(
    triton: str,
    services: dict[str, Any],
) -> None:
    build = services[triton]["build"]
    dockerfile = Path(build["context"]) / build["dockerfile"]
    assert dockerfile.resolve() == DEPLOY / "triton.Dockerfile"
    bases = [args for inst, args in _dockerfile_instructions(dockerfile) if inst == "FROM"]
    assert bases == ["nvcr.io/nvidia/tritonserver:24.10-py3"]


def test_triton_image_installs_pinned_python_backend_dependencies() -> None:
    runs = " ".join(
        args
        for inst, args in _dockerfile_instructions(DEPLOY / "triton.Dockerfile")
        if inst == "RUN"
    )
    assert "tokenizers==0.23.3" in runs
    assert "numpy==1.26.4" in runs
    assert re.search(r"\bpillow==\d+\.\d+\.\d+", runs)
    # The tower runs on the native onnxruntime backend in production.
    assert "onnxruntime" not in runs


def _gpus(services: dict[str, Any], triton: str) -> list[str]:
    devices = services[triton]["deploy"]["resources"]["reservations"]["devices"]
    assert [(d["driver"], d["capabilities"]) for d in devices] == [("nvidia", ["gpu"])]
    return devices[0]["device_ids"]


@needs_compose
def test_each_triton_reserves_one_nvidia_gpu_the_first_unless_told(
    services: dict[str, Any],
) -> None:
    assert [_gpus(services, triton) for triton in TRITONS] == [["0"], ["0"]]


@needs_compose
def test_the_second_triton_takes_the_gpu_it_is_given() -> None:
    result = _compose_config(DUMMY_KEY, TRITON_2_GPU="1")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert [_gpus(services, triton) for triton in TRITONS] == [["0"], ["1"]]


@needs_compose
def test_every_triton_answers_to_the_gateways_target_name(services: dict[str, Any]) -> None:
    for triton in TRITONS:
        assert services[triton]["networks"]["default"]["aliases"] == ["triton"]


@needs_compose
@pytest.mark.parametrize("triton", TRITONS)
def test_triton_mounts_the_model_repository_read_only_at_models(
    triton: str,
    services: dict[str, Any],
) -> None:
    mounts = [
        v for v in services[triton]["volumes"] if isinstance(v, dict) and v["target"] == "/models"
    ]
    assert len(mounts) == 1
    assert Path(mounts[0]["source"]) == REPO / "model_repository"
    assert mounts[0]["type"] == "bind"
    assert mounts[0]["read_only"] is True


@needs_compose
@pytest.mark.parametrize("triton", TRITONS)
def test_triton_serves_the_production_tower_config(triton: str, services: dict[str, Any]) -> None:
    command = services[triton]["command"]
    assert command[0] == "tritonserver"
    for flag in (
        "--model-repository=/models",
        "--model-config-name=production",
        "--strict-readiness=true",
        "--metrics-port=8002",
        "--exit-on-error=true",
    ):
        assert flag in command


@needs_compose
@pytest.mark.parametrize("triton", TRITONS)
def test_triton_has_shared_memory_for_the_python_backend(
    triton: str, services: dict[str, Any]
) -> None:
    assert services[triton]["shm_size"] in ("1gb", "1g", 1024**3)


@needs_compose
@pytest.mark.parametrize("triton", TRITONS)
def test_triton_ports_are_internal_only(triton: str, services: dict[str, Any]) -> None:
    service = services[triton]
    assert "ports" not in service
    assert {str(p) for p in service["expose"]} >= {"8001", "8002"}


@needs_compose
@pytest.mark.parametrize("triton", TRITONS)
def test_triton_health_is_its_readiness_endpoint(triton: str, services: dict[str, Any]) -> None:
    assert ":8000/v2/health/ready" in _healthcheck_command(services[triton])


# --- gateway --------------------------------------------------------------------------------


@needs_compose
def test_gateway_starts_only_after_the_tritons_are_healthy(services: dict[str, Any]) -> None:
    depends_on = services["gateway"]["depends_on"]
    assert {triton: depends_on[triton]["condition"] for triton in TRITONS} == dict.fromkeys(
        TRITONS, "service_healthy"
    )


@needs_compose
def test_gateway_talks_to_triton_grpc_and_is_published_on_8000(services: dict[str, Any]) -> None:
    gateway = services["gateway"]
    env = gateway["environment"]
    assert env["EPITHRE_TRITON_URL"] == "triton:8001"
    assert env["EPITHRE_HOST"] == "0.0.0.0"
    assert str(env["EPITHRE_PORT"]) == "8000"
    assert env["EPITHRE_API_KEYS"] == DUMMY_KEY
    assert any(int(p["target"]) == 8000 and int(p["published"]) == 8000 for p in gateway["ports"])


@needs_compose
def test_gateway_health_is_its_readiness_endpoint(services: dict[str, Any]) -> None:
    assert ":8000/health/ready" in _healthcheck_command(services["gateway"])


@needs_compose
def test_gateway_image_holds_only_the_gateway_package_and_the_wire_contract(
    services: dict[str, Any],
) -> None:
    build = services["gateway"]["build"]
    assert Path(build["context"]) == REPO
    dockerfile = REPO / build["dockerfile"]
    assert dockerfile == DEPLOY / "gateway.Dockerfile"
    instructions = _dockerfile_instructions(dockerfile)
    assert next(a for i, a in instructions if i == "FROM").startswith("python:3.11-slim")
    sources = [a.split()[0] for i, a in instructions if i == "COPY"]
    assert "gateway/" in sources
    assert "model_repository/wire.py" in sources
    allowed = ("gateway/", "model_repository/wire.py")
    assert all(s in allowed or s.startswith("deploy/") for s in sources), sources


def test_gateway_requirements_are_all_pinned() -> None:
    lines = [
        line.split("#")[0].strip()
        for line in (DEPLOY / "gateway-requirements.txt").read_text().splitlines()
    ]
    requirements = [line for line in lines if line]
    assert requirements
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[\w.]+", r) for r in requirements)
    names = {re.split(r"[\[=]", r)[0].lower().replace("_", "-") for r in requirements}
    served = {"starlette", "uvicorn", "orjson", "numpy", "tritonclient", "prometheus-client"}
    assert served | {"pydantic", "pydantic-core"} <= names
    assert "numpy==1.26.4" in requirements


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    """A `python` on PATH that records its arguments instead of starting the gateway."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "started: $*"\n')
    fake.chmod(0o755)
    return tmp_path


def _run_entrypoint(bin_dir: Path, api_keys: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    if api_keys is not None:
        env["EPITHRE_API_KEYS"] = api_keys
    return subprocess.run(
        ["sh", str(DEPLOY / "gateway-entrypoint.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("value", [None, "", " , "], ids=["unset", "empty", "blank"])
def test_gateway_image_refuses_to_start_without_api_keys(
    fake_python: Path, value: str | None
) -> None:
    result = _run_entrypoint(fake_python, value)
    assert result.returncode != 0
    assert "EPITHRE_API_KEYS" in result.stderr
    assert "started" not in result.stdout


def test_gateway_image_starts_the_gateway_when_api_keys_are_set(fake_python: Path) -> None:
    result = _run_entrypoint(fake_python, "k1,k2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started: -m gateway"


def test_gateway_dockerfile_enters_through_the_api_key_check() -> None:
    instructions = _dockerfile_instructions(DEPLOY / "gateway.Dockerfile")
    entrypoints = [a for i, a in instructions if i == "ENTRYPOINT"]
    assert entrypoints == ['["/usr/local/bin/gateway-entrypoint"]']
    assert any(
        i == "COPY"
        and a.split()[:2] == ["deploy/gateway-entrypoint.sh", "/usr/local/bin/gateway-entrypoint"]
        for i, a in instructions
    )


# --- prometheus -----------------------------------------------------------------------------


@needs_compose
def test_prometheus_image_is_pinned(services: dict[str, Any]) -> None:
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", services["prometheus"]["image"])


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """target -> source of a service's bind mounts."""
    return {
        v["target"]: Path(v["source"])
        for v in service["volumes"]
        if isinstance(v, dict) and v["type"] == "bind"
    }


@needs_compose
def test_gateway_serves_metrics_on_an_internal_port_of_its_own(services: dict[str, Any]) -> None:
    gateway = services["gateway"]
    port = int(gateway["environment"]["EPITHRE_METRICS_PORT"])
    assert port != int(gateway["environment"]["EPITHRE_PORT"])
    assert str(port) in {str(p) for p in gateway["expose"]}
    assert all(int(p["target"]) != port for p in gateway["ports"])


@needs_compose
def test_prometheus_scrapes_triton_and_the_gateways_metrics_port(
    services: dict[str, Any],
) -> None:
    config = "/etc/prometheus/prometheus.yml"
    assert f"--config.file={config}" in services["prometheus"]["command"]
    assert _bind_mounts(services["prometheus"])[config] == DEPLOY / "prometheus" / "prometheus.yml"

    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())[
        "scrape_configs"
    ]
    targets = {
        job["job_name"]: (
            [target for static in job["static_configs"] for target in static["targets"]],
            job.get("metrics_path", "/metrics"),
        )
        for job in scrape
    }
    metrics_port = services["gateway"]["environment"]["EPITHRE_METRICS_PORT"]
    # Each replica by its own name: `triton` resolves to any one of them.
    assert targets == {
        "triton": ([f"{triton}:8002" for triton in TRITONS], "/metrics"),
        "gateway": ([f"gateway:{metrics_port}"], "/metrics"),
    }


@needs_compose
def test_prometheus_loads_the_alert_rules_mounted_beside_its_config(
    services: dict[str, Any],
) -> None:
    mounts = _bind_mounts(services["prometheus"])
    rule_files = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())[
        "rule_files"
    ]
    assert rule_files == ["alerts.yml"]
    # Prometheus reads rule_files relative to the folder of its config file.
    assert mounts["/etc/prometheus/alerts.yml"] == DEPLOY / "prometheus" / "alerts.yml"


def _triton_entrypoint_command(models: Path, *args: str) -> list[str]:
    """The command line deploy/triton-entrypoint.sh hands NVIDIA's entrypoint for `models`."""
    script = (DEPLOY / "triton-entrypoint.sh").read_text().replace("/models", str(models))
    script = script.replace("exec /opt/nvidia/nvidia_entrypoint.sh", "echo")
    result = subprocess.run(
        ["sh", "-c", script, "sh", *args], capture_output=True, text=True, check=True
    )
    return result.stdout.split()


def test_triton_loads_only_the_exported_ensembles(tmp_path: Path) -> None:
    models = tmp_path / "models"
    for name, config in (
        ("embed_text", 'platform: "ensemble"'),
        ("text_encoder", 'backend: "python"'),
        ("embed_image", None),  # committed folder of a text-only export: no config
    ):
        (models / name).mkdir(parents=True)
        if config:
            (models / name / "config.pbtxt").write_text(config)
    command = _triton_entrypoint_command(models, "tritonserver", "--x=1")
    assert [flag for flag in command if not flag.startswith("--grpc-")] == [
        "tritonserver",
        "--x=1",
        "--model-control-mode=explicit",
        "--load-model=embed_text",
    ]


def test_triton_accepts_the_gateways_keepalive_as_the_local_server_does(tmp_path: Path) -> None:
    command = _triton_entrypoint_command(tmp_path, "tritonserver")
    assert [flag for flag in command if flag.startswith("--grpc-")] == list(KEEPALIVE_FLAGS)
