"""Deployment files checked offline: Kubernetes manifests against the API's JSON schemas (bundled by
kubernetes-validate), and the wiring between manifests, images and docker-compose.yml that schemas cannot see.

The containers themselves are built and run by deploy/ci/containers.sh in CI.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
K8S = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.37.0"  # the newest schema set kubernetes-validate 1.37.0 bundles
PATCHES = K8S / "patches"  # strategic merge patches for `kubectl patch`, not objects of their own
MANIFESTS = sorted(path for path in K8S.rglob("*.yaml") if PATCHES not in path.parents)


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def objects() -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every object by (file's folder relative to k8s/, kind, name)."""
    found = {}
    for path in MANIFESTS:
        for doc in documents(path):
            found[(str(path.parent.relative_to(K8S)), doc["kind"], doc["metadata"]["name"])] = doc
    return found


DEPLOYMENTS = {
    variant: doc for (variant, kind, _), doc in objects().items() if kind == "Deployment"
}  # ".", "gpu", "tls", "training" (serving the volume the training Job writes)


def server_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_is_valid_against_the_kubernetes_schemas(path: Path) -> None:
    for doc in documents(path):
        # strict: unknown fields (a typo such as `readinesProbe`) fail instead of being ignored.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_schema_validation_catches_a_misspelled_field() -> None:
    deployment = yaml.safe_load((K8S / "deployment.yaml").read_text())
    server_container(deployment)["readinesProbe"] = server_container(deployment).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_variants_are_the_plain_deployment_gpu_tls_and_the_shared_volume_one() -> None:
    assert set(DEPLOYMENTS) == {".", "gpu", "tls", "training"}


def test_the_plain_and_gpu_deployments_probe_grpc_health_on_the_grpc_port() -> None:
    for variant in (".", "gpu"):
        container = server_container(DEPLOYMENTS[variant])
        grpc_port = {port["name"]: port["containerPort"] for port in container["ports"]}["grpc"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == grpc_port == 8500, (variant, probe)


def test_the_tls_variant_probes_over_tls_with_the_secret_ca() -> None:
    container = server_container(DEPLOYMENTS["tls"])
    env = {item["name"]: item["value"] for item in container["env"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert env["CLASSIFY_TLS_CERT_FILE"].startswith(mounts["tls"] + "/")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[:2] == ["classify", "health"]
        assert command[command.index("--tls-ca") + 1].startswith(mounts["tls"] + "/")


def test_every_variant_has_requests_and_limits_and_the_gpu_one_a_gpu() -> None:
    for variant, deployment in DEPLOYMENTS.items():
        resources = server_container(deployment)["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"]), variant
    assert server_container(DEPLOYMENTS["gpu"])["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in server_container(DEPLOYMENTS["."])["resources"]["limits"]


def test_the_headless_service_selects_every_variant_and_exposes_its_ports() -> None:
    service = objects()[(".", "Service", "classify-server")]
    assert service["spec"]["clusterIP"] == "None"  # DNS answers with pod addresses: client-side balancing
    selector = service["spec"]["selector"].items()
    for variant, deployment in DEPLOYMENTS.items():
        assert selector <= deployment["spec"]["template"]["metadata"]["labels"].items(), variant
        container_ports = {port["name"] for port in server_container(deployment)["ports"]}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= container_ports


def strategic_merge(base: Any, patch: Any) -> Any:
    """kubectl's strategic merge for what the patches use: maps merge, null deletes a key, and lists of
    named items (containers) merge item by item on their name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(base.get(key), value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and all("name" in item for item in patch):
        by_name = {item["name"]: item for item in patch}
        return [strategic_merge(item, by_name.pop(item["name"], {})) for item in base] + list(
            by_name.values()
        )
    return patch


@pytest.mark.parametrize("variant", [".", "gpu"])
def test_the_http_probe_patch_gives_valid_probes_on_the_http_port(variant: str) -> None:
    patch = yaml.safe_load((PATCHES / "http-probes.yaml").read_text())
    patched = strategic_merge(DEPLOYMENTS[variant], patch)
    kubernetes_validate.validate(patched, KUBERNETES_VERSION, strict=True)
    container = server_container(patched)
    http_port = {port["name"]: port["containerPort"] for port in container["ports"]}["http"]
    assert http_port == 8501
    paths = {}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        handlers = {"grpc", "httpGet", "exec", "tcpSocket"} & set(container[probe])
        assert handlers == {"httpGet"}, (probe, handlers)  # a probe with two handlers is refused
        assert container[probe]["httpGet"]["port"] == "http"
        paths[probe] = container[probe]["httpGet"]["path"]
    assert paths == {
        "startupProbe": "/v2/health/ready",
        "readinessProbe": "/v2/health/ready",
        "livenessProbe": "/v2/health/live",
    }
    service = objects()[(".", "Service", "classify-server")]
    assert {"name": "http", "port": 8501, "targetPort": "http", "appProtocol": "http"} in service["spec"][
        "ports"
    ]


def test_the_autoscaler_targets_the_cpu_deployment() -> None:
    target = objects()[(".", "HorizontalPodAutoscaler", "classify-server")]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", DEPLOYMENTS["."]["metadata"]["name"])


def test_config_and_secrets_referenced_exist_and_the_tokens_file_is_mounted() -> None:
    shipped = objects()
    config = shipped[(".", "ConfigMap", "classify-config")]["data"]
    for variant, deployment in DEPLOYMENTS.items():
        container = server_container(deployment)
        (source,) = container["envFrom"]
        assert (".", "ConfigMap", source["configMapRef"]["name"]) in shipped
        volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
        mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
        assert (".", "Secret", volumes["tokens"]["secret"]["secretName"]) in shipped, variant
        assert config["CLASSIFY_AUTH_TOKENS_FILE"] == mounts["tokens"] + "/tokens"
    # As shipped the tokens secret holds only a comment: the server then runs without authentication.
    tokens = shipped[(".", "Secret", "classify-tokens")]["stringData"]["tokens"]
    assert all(line.startswith("#") for line in tokens.splitlines() if line.strip())


def test_drain_fits_in_the_termination_grace_period() -> None:
    config = objects()[(".", "ConfigMap", "classify-config")]["data"]
    for variant, deployment in DEPLOYMENTS.items():
        pod = deployment["spec"]["template"]["spec"]
        pause = server_container(deployment)["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pause + float(config["CLASSIFY_GRACE_SECONDS"]) < pod["terminationGracePeriodSeconds"], variant


def dockerfile_user(path: Path) -> str:
    users = re.findall(r"^USER (\S+)$", path.read_text(), flags=re.MULTILINE)
    return users[-1]


def test_pods_run_as_the_images_non_root_user() -> None:
    uid, gid = dockerfile_user(REPO_ROOT / "deploy" / "Dockerfile").split(":")
    assert dockerfile_user(REPO_ROOT / "deploy" / "Dockerfile.gpu") == f"{uid}:{gid}"
    for variant, deployment in DEPLOYMENTS.items():
        security = deployment["spec"]["template"]["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True
        assert (str(security["runAsUser"]), str(security["runAsGroup"])) == (uid, gid), variant


# Distributed training (deploy/k8s/training/): an Indexed Job per variant and the headless Service that
# names its pods, wired so that each pod's TF_CONFIG (built from CLASSIFY_WORKER_HOSTS and
# JOB_COMPLETION_INDEX) lists exactly the Job's pods, and its exports land where the server reads.
TRAINING_JOBS = {variant: doc for (variant, kind, _), doc in objects().items() if kind == "Job"}


def test_the_training_jobs_are_the_cpu_and_gpu_ones() -> None:
    assert set(TRAINING_JOBS) == {"training", "training/gpu"}


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item.get("value", "") for item in container.get("env", [])}


@pytest.mark.parametrize("variant", ["training", "training/gpu"])
def test_every_worker_host_is_one_of_the_jobs_pods_on_the_headless_service(variant: str) -> None:
    job = TRAINING_JOBS[variant]
    service = objects()[("training", "Service", "classify-train")]
    pod = job["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert job["spec"]["completionMode"] == "Indexed"
    workers = job["spec"]["completions"]
    assert job["spec"]["parallelism"] == workers >= 2  # all workers at once: they train in lockstep
    assert service["spec"]["clusterIP"] == "None" and pod["spec"]["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["collective"]
    assert [p["port"] for p in service["spec"]["ports"] if p["targetPort"] == "collective"] == [port]
    # An Indexed Job's pod i has the hostname <job name>-<i>; on the subdomain it resolves as below.
    expected = [f"{job['metadata']['name']}-{i}.{service['metadata']['name']}:{port}" for i in range(workers)]
    assert env_of(container)["CLASSIFY_WORKER_HOSTS"].split(",") == expected


@pytest.mark.parametrize("variant", ["training", "training/gpu"])
def test_the_job_trains_multi_worker_into_the_volume_the_shared_server_serves(variant: str) -> None:
    from classify_train.distribute import tf_config_from_hosts

    pod = TRAINING_JOBS[variant]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    assert args[args.index("--strategy") + 1] == "multi-worker"
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert args[args.index("--export") + 1] == mounts["models"]
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert ("training", "PersistentVolumeClaim", claim) in objects()
    assert objects()[("training", "PersistentVolumeClaim", claim)]["spec"]["accessModes"] == ["ReadWriteMany"]
    server = DEPLOYMENTS["training"]
    server_volumes = {v["name"]: v for v in server["spec"]["template"]["spec"]["volumes"]}
    server_mounts = {m["name"]: m for m in server_container(server)["volumeMounts"]}
    assert server_volumes["models"]["persistentVolumeClaim"]["claimName"] == claim
    assert server_mounts["models"]["mountPath"] == "/models" and server_mounts["models"]["readOnly"] is True
    # What the training CLI builds in pod 1 from this environment (Kubernetes sets JOB_COMPLETION_INDEX).
    config = tf_config_from_hosts({**env_of(container), "JOB_COMPLETION_INDEX": "1"})
    assert config is not None and config["task"] == {"type": "worker", "index": 1}
    uid, gid = dockerfile_user(REPO_ROOT / "deploy" / "Dockerfile").split(":")
    assert (str(pod["securityContext"]["runAsUser"]), str(pod["securityContext"]["runAsGroup"])) == (uid, gid)


def test_the_gpu_job_asks_for_a_gpu_with_the_gpu_trainer_image() -> None:
    (gpu,) = TRAINING_JOBS["training/gpu"]["spec"]["template"]["spec"]["containers"]
    (cpu,) = TRAINING_JOBS["training"]["spec"]["template"]["spec"]["containers"]
    assert (
        gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
        and "nvidia.com/gpu" not in cpu["resources"]["limits"]
    )
    assert (gpu["image"], cpu["image"]) == ("classify-trainer:gpu", "classify-trainer:cpu")
    assert "FROM tensorflow/tensorflow:" in (REPO_ROOT / "deploy" / "Dockerfile.trainer-gpu").read_text()
    assert dockerfile_user(REPO_ROOT / "deploy" / "Dockerfile.trainer-gpu") == dockerfile_user(
        REPO_ROOT / "deploy" / "Dockerfile"
    )


# docker-compose.yml: what `docker compose config` accepts but the issue asks for beyond validity.
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_compose_publishes_ports_on_loopback_by_default() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert port.startswith("${CLASSIFY_BIND:-127.0.0.1}:"), (name, port)


def test_compose_serves_only_after_training_and_monitors_only_a_healthy_server() -> None:
    for name in ("server", "server-gpu"):
        assert SERVICES[name]["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
        assert SERVICES[name]["healthcheck"]["test"][1:3] == ["classify", "health"]
    assert SERVICES["prometheus"]["depends_on"]["server"]["condition"] == "service_healthy"
    assert SERVICES["trainer"]["restart"] == "no"
    assert "--if-empty" in SERVICES["trainer"]["command"]


def test_compose_profiles_and_the_gpu_reservation() -> None:
    assert "profiles" not in SERVICES["server"] and "profiles" not in SERVICES["trainer"]
    assert SERVICES["server-gpu"]["profiles"] == ["gpu"]
    assert SERVICES["prometheus"]["profiles"] == ["monitoring"]
    (device,) = SERVICES["server-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]


def test_compose_train_profile_trains_the_full_recipes_into_the_served_volume() -> None:
    train, trainer = SERVICES["train"], SERVICES["trainer"]
    assert train["profiles"] == ["train"] and train["restart"] == "no"
    assert train["command"] == ["all", "--export", "/models"]  # no --quick: the full recipes
    assert train["image"] == trainer["image"] and train["volumes"] == trainer["volumes"]
    assert "models:/models:ro" in SERVICES["server"]["volumes"] and "models:/models" in train["volumes"]


def test_prometheus_scrapes_the_metrics_port_the_servers_listen_on() -> None:
    config = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]
    }
    assert targets == {"server:8502", "server-gpu:8502"}
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    assert "CLASSIFY_METRICS_PORT=8502" in dockerfile and re.search(r"^EXPOSE 8500 8502$", dockerfile, re.M)
