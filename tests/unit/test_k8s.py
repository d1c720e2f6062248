"""The Kubernetes base (deploy/k8s/) validates offline and its pieces fit together.

kubernetes-validate holds the Kubernetes API schemas: every built-in resource is checked against
those of the oldest and the newest Kubernetes it bundles, strictly (an unknown field, such as a
misspelt one, is an error). Custom resources (ServiceMonitor, PodMonitor) have no bundled schema:
their required fields are checked here, and kustomization.yaml has none either. The other tests
hold the manifests to what the gateway, Triton's image, docker-compose.yml and the alert rules
expect of them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.routes import ENDPOINTS
from gateway.settings import PREFIX, Settings
from gateway.triton import PROBE_TIMEOUT_S
from model_repository import wire
from tests.promql import metric_names, needs_promtool, promtool

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
ADAPTER_VALUES = K8S / "prometheus-adapter" / "values.yaml"
KUBECTL = shutil.which("kubectl")
# The oldest and the newest schemas kubernetes-validate 1.37 bundles.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
# Prometheus Operator's kinds, each with the list of its scrape endpoints.
MONITORS = {"ServiceMonitor": "endpoints", "PodMonitor": "podMetricsEndpoints"}
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
COMPONENTS = ("triton", "gateway")
# The Triton Deployment gets this long to finish its inferences (--exit-timeout-secs' default).
TRITON_EXIT_TIMEOUT_S = 30

MANIFEST_PATHS = sorted(path for path in K8S.glob("*.yaml") if path != KUSTOMIZATION)


def _load(path: Path) -> dict[str, Any]:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert len(documents) == 1, f"{path.name}: one resource per file"
    return documents[0]


MANIFESTS = {path.name: _load(path) for path in MANIFEST_PATHS}


def _resource(kind: str, component: str) -> dict[str, Any]:
    (found,) = (
        m
        for m in MANIFESTS.values()
        if m["kind"] == kind and m["metadata"]["labels"][COMPONENT] == component
    )
    return found


def _pod(component: str) -> dict[str, Any]:
    return _resource("Deployment", component)["spec"]["template"]


def _container(component: str) -> dict[str, Any]:
    (container,) = _pod(component)["spec"]["containers"]
    return container


def _container_ports(component: str) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in _container(component)["ports"]}


def _probes(component: str) -> dict[str, tuple[str, str]]:
    """probe -> (path, port name) of the HTTP probes of the component's container."""
    container = _container(component)
    return {
        probe: (container[probe]["httpGet"]["path"], container[probe]["httpGet"]["port"])
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, "only matchLabels selectors are checked here"
    return selector["matchLabels"].items() <= labels.items()


def _literal_env(component: str) -> dict[str, str]:
    return {e["name"]: e["value"] for e in _container(component)["env"] if "value" in e}


def _gateway_settings() -> Settings:
    """What the gateway makes of the environment its manifest gives it (Secrets left out)."""
    return Settings.from_env(_literal_env("gateway"))


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


# --- the base as a whole --------------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_nothing_else() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == [path.name for path in MANIFEST_PATHS]


def test_the_base_is_namespace_agnostic() -> None:
    assert "namespace" not in yaml.safe_load(KUSTOMIZATION.read_text())
    assert [name for name, m in MANIFESTS.items() if "namespace" in m["metadata"]] == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "name", [name for name, m in MANIFESTS.items() if m["kind"] not in MONITORS]
)
def test_manifest_validates_against_the_kubernetes_schemas(name: str, version: str) -> None:
    try:
        validated = kubernetes_validate.validate(MANIFESTS[name], version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path)
        pytest.fail(f"{name} against Kubernetes {version}: {path}: {exc.message}")
    assert validated == version.rsplit(".", 1)[0]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is missing (it builds kustomizations)")
def test_kustomize_builds_the_base_into_the_same_resources() -> None:
    assert KUBECTL is not None
    built = subprocess.run(
        [KUBECTL, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    resources = [doc for doc in yaml.safe_load_all(built) if doc]
    assert sorted((r["kind"], r["metadata"]["name"]) for r in resources) == sorted(
        (m["kind"], m["metadata"]["name"]) for m in MANIFESTS.values()
    )


def test_every_resource_is_labelled_with_the_app_and_one_component() -> None:
    labels = {name: m["metadata"].get("labels", {}) for name, m in MANIFESTS.items()}
    assert {name: found.get(PART_OF) for name, found in labels.items()} == dict.fromkeys(
        MANIFESTS, "epithre"
    )
    # Each file is named after the component its resource belongs to.
    assert {name: found.get(COMPONENT) for name, found in labels.items()} == {
        name: name.split("-")[0] for name in MANIFESTS
    }


def _pod_selectors(component: str) -> dict[str, dict[str, Any]]:
    """kind -> the selector of the pods of `component` that the resource of that kind holds."""
    selectors = {
        kind: _resource(kind, component)["spec"]["selector"]
        for kind in ("Deployment", "PodDisruptionBudget")
    }
    selectors["Service"] = {"matchLabels": _resource("Service", component)["spec"]["selector"]}
    if component == "triton":
        selectors["NetworkPolicy"] = _resource("NetworkPolicy", component)["spec"]["podSelector"]
    return selectors


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_selector_picks_the_pods_of_its_own_component_only(component: str) -> None:
    (other,) = (c for c in COMPONENTS if c != component)
    for kind, selector in _pod_selectors(component).items():
        assert _selects(selector, _pod(component)["metadata"]["labels"]), kind
        assert not _selects(selector, _pod(other)["metadata"]["labels"]), kind


def test_images_are_the_ones_docker_compose_builds() -> None:
    services = _compose()["services"]
    assert _container("triton")["image"] == services["triton-1"]["image"] == "epithre-triton:24.10"
    assert _container("gateway")["image"] == services["gateway"]["image"] == "epithre-gateway:0.1.0"


# --- scaling and disruptions ----------------------------------------------------------------


@pytest.mark.parametrize("component", COMPONENTS)
def test_the_autoscaler_alone_sets_the_replica_count(component: str) -> None:
    hpa = _resource("HorizontalPodAutoscaler", component)
    deployment = _resource("Deployment", component)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    # A `replicas` in the manifest would reset the autoscaler's choice at every apply.
    assert "replicas" not in deployment["spec"]


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_voluntary_disruption_leaves_at_least_one_pod_serving(component: str) -> None:
    budget = _resource("PodDisruptionBudget", component)["spec"]
    minimum = _resource("HorizontalPodAutoscaler", component)["spec"]["minReplicas"]
    assert budget["maxUnavailable"] == 1
    assert minimum - budget["maxUnavailable"] >= 1


def _adapter_rule() -> dict[str, Any]:
    (rule,) = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    return rule


def test_triton_scales_on_the_queue_time_per_request_the_adapter_serves() -> None:
    (metric,) = _resource("HorizontalPodAutoscaler", "triton")["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == _adapter_rule()["name"]["as"] == "avg_time_queue_us"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "100000"}


def test_the_adapter_rule_divides_queue_time_by_requests_of_the_towers_per_pod() -> None:
    rule = _adapter_rule()
    assert re.fullmatch(rule["name"]["matches"], "nv_inference_queue_duration_us")
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    numerator, denominator = rule["metricsQuery"].split(" / ")
    assert metric_names(numerator) == {"nv_inference_queue_duration_us"}
    assert metric_names(denominator) == {"nv_inference_request_success"}
    for part in (numerator, denominator):
        assert "{<<.LabelMatchers>>," in part
        assert "by (<<.GroupBy>>)" in part
        (models,) = re.findall(r'model=~"([^"]+)"', part)
        assert set(models.split("|")) == {wire.TEXT_ENCODER, wire.IMAGE_ENCODER}


@needs_promtool
def test_the_adapter_query_is_valid_promql(tmp_path: Path) -> None:
    # What the adapter sends for one HPA: its matchers for the target's pods, grouped by pod.
    query = (
        _adapter_rule()["metricsQuery"]
        .replace(
            "<<.LabelMatchers>>", 'namespace="epithre",pod=~"epithre-triton-a|epithre-triton-b"'
        )
        .replace("<<.GroupBy>>", "pod")
    )
    rules = {"groups": [{"name": "adapter", "rules": [{"record": "q", "expr": query}]}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gateways_scale_on_the_cpu_they_request() -> None:
    (metric,) = _resource("HorizontalPodAutoscaler", "gateway")["spec"]["metrics"]
    assert metric == {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
    }
    # Utilization is a share of the request: without one the autoscaler has nothing to divide by.
    assert _container("gateway")["resources"]["requests"]["cpu"] == "1"


# --- triton ---------------------------------------------------------------------------------


def test_triton_runs_the_images_entrypoint_with_the_compose_arguments() -> None:
    container = _container("triton")
    # Without `command`, the image's entrypoint runs and adds the keepalive flags
    # (test_compose.py checks that they are runner.triton.KEEPALIVE_FLAGS).
    assert "command" not in container
    assert container["args"] == _compose()["services"]["triton-1"]["command"]
    assert "--model-config-name=production" in container["args"]


def test_triton_gets_one_nvidia_gpu() -> None:
    resources = _container("triton")["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in resources.get("requests", {})


def _volume_mounts(component: str) -> dict[str, dict[str, Any]]:
    """volume name -> (the volume, its mount)."""
    volumes = {v["name"]: v for v in _pod(component)["spec"]["volumes"]}
    return {
        m["name"]: {"volume": volumes[m["name"]], "mount": m}
        for m in _container(component)["volumeMounts"]
    }


def test_triton_has_a_memory_backed_dev_shm_as_large_as_in_compose() -> None:
    shm = _volume_mounts("triton")["shm"]
    assert shm["mount"]["mountPath"] == "/dev/shm"
    assert shm["volume"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    # Docker reads `1gb` as GiB.
    assert _compose()["services"]["triton-1"]["shm_size"] == "1gb"


def test_triton_mounts_the_model_repository_read_only_where_its_entrypoint_looks() -> None:
    (repository,) = re.findall(
        r"^repository=(\S+)$", (DEPLOY / "triton-entrypoint.sh").read_text(), re.MULTILINE
    )
    models = _volume_mounts("triton")["models"]
    assert models["mount"] == {"name": "models", "mountPath": repository, "readOnly": True}
    assert f"--model-repository={repository}" in _container("triton")["args"]
    claim = models["volume"]["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    pvc = MANIFESTS["triton-models-pvc.yaml"]
    assert pvc["kind"] == "PersistentVolumeClaim"
    assert claim["claimName"] == pvc["metadata"]["name"]
    # Triton pods on several nodes mount it at once.
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_triton_probes_ask_tritons_health_endpoints_on_its_http_port() -> None:
    assert _probes("triton") == {
        "startupProbe": ("/v2/health/ready", "http"),
        "readinessProbe": ("/v2/health/ready", "http"),
        "livenessProbe": ("/v2/health/live", "http"),
    }
    assert _container_ports("triton")["http"] == 8000


def test_triton_may_load_its_models_for_ten_minutes_before_liveness_applies() -> None:
    startup = _container("triton")["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 600


def test_triton_gets_longer_than_its_exit_timeout_to_finish_its_inferences() -> None:
    assert "--exit-timeout-secs" not in " ".join(_container("triton")["args"])
    grace = _pod("triton")["spec"]["terminationGracePeriodSeconds"]
    assert grace > TRITON_EXIT_TIMEOUT_S


def test_the_headless_service_publishes_tritons_grpc_and_metrics_ports_by_name() -> None:
    service = _resource("Service", "triton")["spec"]
    assert service["clusterIP"] == "None"
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]}
    assert ports == {"grpc": (8001, "grpc"), "metrics": (8002, "metrics")}
    container_ports = _container_ports("triton")
    assert {name: container_ports[name] for name in ports} == {"grpc": 8001, "metrics": 8002}
    # 8001 is Triton's default gRPC port; its metrics port is an argument.
    assert f"--metrics-port={container_ports['metrics']}" in _container("triton")["args"]


def test_only_the_gateways_reach_tritons_grpc_and_only_prometheus_its_metrics() -> None:
    policy = _resource("NetworkPolicy", "triton")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    allowed = {}
    for rule in policy["ingress"]:
        (peer,) = rule["from"]
        (port,) = rule["ports"]
        allowed[port["port"]] = peer
    assert set(allowed) == {"grpc", "metrics"}
    assert set(allowed) <= set(_container_ports("triton"))
    # The gateways of the same namespace: a pod selector alone.
    assert allowed["grpc"] == {
        "podSelector": _resource("Deployment", "gateway")["spec"]["selector"]
    }
    assert set(allowed["metrics"]) == {"namespaceSelector", "podSelector"}
    assert allowed["metrics"]["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/name": "prometheus"}
    }


# --- gateway --------------------------------------------------------------------------------


def test_the_gateway_reaches_every_triton_through_the_headless_service() -> None:
    service = _resource("Service", "triton")
    grpc = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
    settings = _gateway_settings()
    assert settings.triton_url == f"dns:///{service['metadata']['name']}:{grpc['port']}"
    # Resolved again now and then, which is how gateways find Tritons added by a scale-up.
    assert settings.triton_reopen_s > 0


def test_every_epithre_variable_in_the_manifests_is_a_gateway_setting() -> None:
    settings = {PREFIX + f.name.upper() for f in fields(Settings)}
    for component in COMPONENTS:
        names = {e["name"] for e in _container(component).get("env", [])}
        unknown = {n for n in names if n.startswith(PREFIX)} - settings
        assert unknown == set(), component


def test_the_gateways_secrets_come_from_secrets_never_from_the_manifest() -> None:
    env = {e["name"]: e for e in _container("gateway")["env"]}
    secrets = {
        name: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for name, e in env.items()
        if "valueFrom" in e
    }
    assert secrets == {
        "EPITHRE_API_KEYS": ("epithre-api-keys", "api-keys"),
        "EPITHRE_RATE_LIMIT_STORAGE": ("epithre-redis", "url"),
        "EPITHRE_DATABASE_URL": ("epithre-postgres", "url"),
    }
    # Redis and PostgreSQL are existing ones that the Secrets name: the base runs neither.
    assert {m["kind"] for m in MANIFESTS.values()} & {"StatefulSet", "Secret"} == set()
    assert all(
        "redis" not in name and "postgres" not in name
        for name in (m["metadata"]["name"] for m in MANIFESTS.values())
    )


def test_every_gateway_mounts_one_shared_data_volume_where_it_keeps_the_files() -> None:
    data = _volume_mounts("gateway")["data"]
    assert data["mount"] == {"name": "data", "mountPath": _gateway_settings().data_dir}
    pvc = MANIFESTS["gateway-data-pvc.yaml"]
    assert data["volume"]["persistentVolumeClaim"] == {"claimName": pvc["metadata"]["name"]}
    # Gateway pods on several nodes mount it at once, and write to it as the image's user.
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert _pod("gateway")["spec"]["securityContext"]["fsGroup"] == 10001


def test_no_service_link_variable_lands_in_the_gateways_settings_prefix() -> None:
    # Kubernetes would set EPITHRE_GATEWAY_PORT and the like for the Service epithre-gateway.
    assert _pod("gateway")["spec"]["enableServiceLinks"] is False


def test_gateway_probes_ask_paths_the_gateway_serves_without_a_key() -> None:
    served = {e.path for e in ENDPOINTS if e.method == "GET" and not e.authenticated}
    probes = _probes("gateway")
    assert probes == {
        "startupProbe": ("/health/live", "http"),
        "readinessProbe": ("/health/ready", "http"),
        "livenessProbe": ("/health/live", "http"),
    }
    assert {path for path, _ in probes.values()} <= served
    assert _container_ports("gateway")["http"] == _gateway_settings().port


def test_the_gateway_startup_probe_outwaits_the_gateways_own_startup_timeout() -> None:
    startup = _container("gateway")["startupProbe"]
    budget_s = startup["periodSeconds"] * startup["failureThreshold"]
    assert budget_s > _gateway_settings().startup_timeout_s


def test_the_gateway_readiness_probe_outwaits_the_probe_embeddings_deadline() -> None:
    # /health/ready embeds a probe text through Triton: a slow answer must come back as 503.
    assert _container("gateway")["readinessProbe"]["timeoutSeconds"] > PROBE_TIMEOUT_S


def test_the_gateway_stops_only_after_its_drain_and_a_last_requests_body_and_deadline() -> None:
    settings = _gateway_settings()
    spec = _pod("gateway")["spec"]
    assert settings.drain_s > 0
    # The drain starts at SIGTERM: a preStop hook would postpone it with readiness still 200.
    assert "lifecycle" not in _container("gateway")
    assert (
        spec["terminationGracePeriodSeconds"]
        > settings.drain_s + settings.body_timeout_s + settings.request_timeout_s
    )


def test_gateway_metrics_are_on_their_own_pod_port_and_off_the_service() -> None:
    metrics_port = _gateway_settings().metrics_port
    assert _container_ports("gateway") == {
        "http": _gateway_settings().port,
        "metrics": metrics_port,
    }
    service_ports = _resource("Service", "gateway")["spec"]["ports"]
    assert [(p["name"], p["targetPort"]) for p in service_ports] == [("http", "http")]


# --- monitors -------------------------------------------------------------------------------


def _monitors() -> dict[str, dict[str, Any]]:
    return {name: m for name, m in MANIFESTS.items() if m["kind"] in MONITORS}


def test_there_is_one_monitor_per_component() -> None:
    components = sorted(m["metadata"]["labels"][COMPONENT] for m in _monitors().values())
    assert components == sorted(COMPONENTS)


@pytest.mark.parametrize("name", sorted(_monitors()))
def test_monitor_has_the_fields_prometheus_operator_requires(name: str) -> None:
    monitor = MANIFESTS[name]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", monitor["metadata"]["name"])
    spec = monitor["spec"]
    assert set(spec["selector"]) == {"matchLabels"}
    endpoints = spec[MONITORS[monitor["kind"]]]
    assert endpoints
    assert all(isinstance(e["port"], str) and e["path"] == "/metrics" for e in endpoints)


def test_the_triton_service_monitor_scrapes_a_named_port_of_the_headless_service() -> None:
    monitor = _resource("ServiceMonitor", "triton")
    service = _resource("Service", "triton")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert not _selects(
        monitor["spec"]["selector"], _resource("Service", "gateway")["metadata"]["labels"]
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}


def test_the_gateway_pod_monitor_scrapes_a_named_port_of_the_gateway_pods() -> None:
    monitor = _resource("PodMonitor", "gateway")
    assert _selects(monitor["spec"]["selector"], _pod("gateway")["metadata"]["labels"])
    assert not _selects(monitor["spec"]["selector"], _pod("triton")["metadata"]["labels"])
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
    assert "metrics" in _container_ports("gateway")


def test_monitors_give_the_job_names_the_alert_rules_match() -> None:
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    compose_jobs = sorted(job["job_name"] for job in scrape["scrape_configs"])
    jobs = {}
    for monitor in _monitors().values():
        (endpoint,) = monitor["spec"][MONITORS[monitor["kind"]]]
        (relabel,) = endpoint["relabelings"]
        assert relabel["targetLabel"] == "job"
        jobs[monitor["metadata"]["labels"][COMPONENT]] = relabel["replacement"]
    assert jobs == {"triton": "triton", "gateway": "gateway"}
    assert sorted(jobs.values()) == compose_jobs
