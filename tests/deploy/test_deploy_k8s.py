"""The Kustomize manifests, rendered offline and checked against the Kubernetes schemas.

Every overlay is rendered with the machine's ``kubectl kustomize`` (kustomize 5 built in)
and each object validated with ``kubernetes-validate`` (strict: unknown fields are
errors). Then the wiring a cluster would only reveal at run time: probes, the config
mounted where ``--config`` points and the bundle where the config expects it, secrets
only by reference, the security context, resources, the shutdown budget, the
migration Job. Without kubectl or kubernetes-validate the tests are skipped locally and
FAIL under ``CASEGATE_REQUIRE_BACKENDS=1`` (CI).
"""

from __future__ import annotations

import functools
import posixpath
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REQUIRE

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ["dev", "prod"]
K8S_VERSION = "1.32"  # the kubectl on this machine; the schemas ship with kubernetes-validate
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)


def _need(what: str) -> None:
    if REQUIRE:
        pytest.fail(f"{what} (CASEGATE_REQUIRE_BACKENDS=1)")
    pytest.skip(what)


def _kubectl() -> str:
    found = shutil.which("kubectl") or (
        "/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None
    )
    if found is None:
        _need("kubectl is not installed")
    assert found is not None
    return found


@functools.cache
def _render_cached(kubectl: str, overlay: str) -> str:
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def render(overlay: str) -> list[dict[str, Any]]:
    text = _render_cached(_kubectl(), overlay)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind}"
    return found[0]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield doc["kind"], doc["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def gateway(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def configmap(docs: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(prefix)
    ]
    assert len(found) == 1, prefix
    return found[0]


def mounted_files(
    docs: list[dict[str, Any]], pod: dict[str, Any], container: dict[str, Any]
) -> dict[str, str]:
    """Absolute path in the container -> the file's text, for every ConfigMap-backed file."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    files: dict[str, str] = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        sources = [
            s["configMap"]
            for s in volume.get("projected", {}).get("sources", [])
            if "configMap" in s
        ]
        if "configMap" in volume:
            sources.append(volume["configMap"])
        for source in sources:
            data = next(
                d
                for d in docs
                if d["kind"] == "ConfigMap" and d["metadata"]["name"] == source["name"]
            )["data"]
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                files[posixpath.join(mount["mountPath"], item["path"])] = data[item["key"]]
    return files


@pytest.fixture(scope="module")
def validator() -> Any:
    try:
        import kubernetes_validate
    except ImportError:
        _need("kubernetes-validate is not installed (pip install kubernetes-validate)")
    return kubernetes_validate


# -- schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates_against_the_kubernetes_schemas(
    overlay: str, validator: Any
) -> None:
    docs = render(overlay)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Job",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )
    for doc in docs:
        validator.validate(doc, K8S_VERSION, strict=True)
        assert doc["metadata"]["namespace"] == {"dev": "casegate-dev", "prod": "casegate"}[overlay]


def test_the_validation_is_strict(validator: Any) -> None:
    """A misspelt field fails, so a green run means the manifests really fit the schema."""
    deployment = one(render("prod"), "Deployment")
    gateway([deployment])["readinesProbe"] = {"httpGet": {"path": "/readyz", "port": 8080}}
    with pytest.raises(validator.ValidationError):
        validator.validate(deployment, K8S_VERSION, strict=True)


# -- wiring -----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes(overlay: str) -> None:
    container = gateway(render(overlay))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080}
    assert container["args"][:5] == ["serve", "--host", "0.0.0.0", "--port", "8080"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "http"}
    # the liveness probe only starts once the startup probe passed; the startup budget
    # covers a slow PostgreSQL and the migration lock, far above the 0.46 s cold start
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 10


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_bundle_are_mounted_where_the_config_expects_them(overlay: str) -> None:
    docs = render(overlay)
    for kind, pod in pod_specs(docs):
        container = pod["containers"][0]
        args = container["args"]
        config_path = args[args.index("--config") + 1]
        env = env_of(container)
        if "CASEGATE_CONFIG" in env:
            assert env["CASEGATE_CONFIG"]["value"] == config_path
        files = mounted_files(docs, pod, container)
        assert config_path in files, (kind, sorted(files))
        # the very file compose mounts, byte for byte
        assert files[config_path] == (DEPLOY / "config" / "casegate.yaml").read_text()
        config = yaml.safe_load(files[config_path])
        bundle = posixpath.normpath(
            posixpath.join(posixpath.dirname(config_path), config["policy_bundle"])
        )
        assert bundle in files, (kind, bundle, sorted(files))
        assert files[bundle] == (DEPLOY / "config" / "bundle.yaml").read_text()
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts[posixpath.dirname(config_path)]["readOnly"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_only_by_reference(overlay: str) -> None:
    docs = render(overlay)
    assert not [d for d in docs if d["kind"] == "Secret"]  # the Secret is never in the repo
    text = _render_cached(_kubectl(), overlay)
    assert not re.search(r"\b[A-Za-z0-9_-]{43}\b", text), (
        "a 32-byte base64url value in the manifests"
    )
    config = yaml.safe_load(configmap(docs, "casegate-config")["data"]["casegate.yaml"])
    named = _secret_env_names(config) | {"PGPASSWORD"}
    for kind, pod in pod_specs(docs):
        for container in pod["containers"]:
            for name, entry in env_of(container).items():
                if SECRET_NAME.search(name):
                    assert "value" not in entry, f"{kind}: {name} has a literal value"
                    ref = entry["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == "casegate-secrets" and ref["key"] == name
            for source in container.get("envFrom", []):
                assert set(source) == {"secretRef"}, source
                assert source["secretRef"]["name"] == "casegate-secrets"
    gw = gateway(docs)
    by_secret = {e["name"] for e in gw.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
    from_secret = any(
        s.get("secretRef", {}).get("name") == "casegate-secrets" for s in gw.get("envFrom", [])
    )
    literal = {e["name"] for e in gw.get("env", []) if "value" in e}
    for name in named:  # every secret the config names reaches the gateway from the Secret
        assert name not in literal, name
        assert name in by_secret or from_secret, name


def _secret_env_names(config: dict[str, Any]) -> set[str]:
    names: set[str] = set()

    def add(value: Any) -> None:
        names.update([value] if isinstance(value, str) else list(value or []))

    for deployments in config.get("routes", {}).values():
        for dep in deployments:
            add(dep.get("api_key_env"))
    for client in config.get("clients", []):
        add(client["key_env"])
    for operator in config.get("operators", []):
        add(operator["token_env"])
    for value in (config.get("keys") or {}).values():
        add(value)
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_security_context(overlay: str) -> None:
    docs = render(overlay)
    for kind, pod in pod_specs(docs):
        assert pod["automountServiceAccountToken"] is False
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 10001  # the image's USER
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            c = container["securityContext"]
            assert c["runAsNonRoot"] is True, kind
            assert c["allowPrivilegeEscalation"] is False, kind
            assert c["readOnlyRootFilesystem"] is True, kind
            assert c["capabilities"] == {"drop": ["ALL"]}, kind
            assert c["seccompProfile"] == {"type": "RuntimeDefault"}, kind
            # the one writable place: /tmp, an emptyDir
            volumes = {v["name"]: v for v in pod["volumes"]}
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            assert "emptyDir" in volumes[tmp["name"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_resources_are_sized(overlay: str) -> None:
    docs = render(overlay)
    for kind, pod in pod_specs(docs):
        for container in pod["containers"]:
            res = container["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]), kind
            assert {"cpu", "memory"} <= set(res["limits"]), kind
    res = gateway(docs)["resources"]
    # bench: ~95 MB RSS per worker; litellm adds ~150 MB if a route needs it
    assert _mebibytes(res["requests"]["memory"]) >= 95 * 1e6 / 2**20
    assert _mebibytes(res["limits"]["memory"]) >= 95 + 150
    # bench: 1.3-1.8 ms CPU per request; one worker uses at most one core
    assert _millicores(res["limits"]["cpu"]) == 1000
    assert 100 <= _millicores(res["requests"]["cpu"]) <= 1000
    comment = (DEPLOY / "k8s" / "base" / "deployment.yaml").read_text()
    for figure in ("1.3-1.8 ms", "95 MB", "0.65 s", "1.8 ms = ~280 req/s"):
        assert figure in comment  # the sizing arithmetic is written down


def _mebibytes(quantity: str) -> float:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match, quantity
    return int(match[1]) * (1024 if match[2] == "Gi" else 1)


def _millicores(quantity: str | int) -> int:
    text = str(quantity)
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shutdown_budget(overlay: str) -> None:
    """SIGKILL only after preStop + CASEGATE_GRACE_S; calls end within the grace."""
    docs = render(overlay)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    grace = int(env_of(container)["CASEGATE_GRACE_S"]["value"])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + grace
    config = yaml.safe_load(configmap(docs, "casegate-config")["data"]["casegate.yaml"])
    assert config["limits"]["deadline_s"] < grace  # a call in flight ends by itself


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_telemetry_and_state_wiring(overlay: str) -> None:
    env = env_of(gateway(render(overlay)))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector:4318"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "http/protobuf"
    assert env["OTEL_SERVICE_NAME"]["value"] == "casegate"
    assert "$(POD_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"]
    names = list(env)
    assert names.index("POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")  # $(VAR) order
    for var in ("PGHOST", "PGUSER", "PGDATABASE"):
        assert env[var]["value"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migration_job_runs_migrate(overlay: str) -> None:
    docs = render(overlay)
    job = one(docs, "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    container = pod["containers"][0]
    assert container["args"][0] == "migrate"
    assert container["image"] == gateway(docs)["image"]
    gw_env, job_env = env_of(gateway(docs)), env_of(container)
    for var in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSSLMODE", "PGPASSWORD"):
        assert job_env[var] == gw_env[var], var  # the same database as the gateways


def test_service_hpa_pdb_select_the_gateway() -> None:
    for overlay in OVERLAYS:
        docs = render(overlay)
        deployment = one(docs, "Deployment")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for kind in ("Service", "PodDisruptionBudget"):
            spec = one(docs, kind)["spec"]
            selector = spec["selector"].get("matchLabels", spec["selector"])
            assert selector.items() <= labels.items(), (overlay, kind)
        assert one(docs, "Service")["spec"]["ports"][0]["targetPort"] == "http"
        target = one(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_prod_has_more_replicas_and_a_stricter_autoscaler() -> None:
    dev, prod = render("dev"), render("prod")
    assert one(prod, "Deployment")["spec"]["replicas"] > one(dev, "Deployment")["spec"]["replicas"]
    hpa_dev, hpa_prod = (
        one(dev, "HorizontalPodAutoscaler")["spec"],
        one(prod, "HorizontalPodAutoscaler")["spec"],
    )
    assert hpa_prod["minReplicas"] > hpa_dev["minReplicas"]
    assert hpa_prod["maxReplicas"] > hpa_dev["maxReplicas"]
    assert _utilisation(hpa_prod) < _utilisation(hpa_dev)  # scales out earlier
    assert (
        hpa_prod["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
        > hpa_dev["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
    )
    # a node drain can always proceed: the autoscaler's floor leaves one pod to evict
    assert hpa_prod["minReplicas"] > one(prod, "PodDisruptionBudget")["spec"]["minAvailable"]
    assert one(prod, "Deployment")["spec"]["replicas"] >= hpa_prod["minReplicas"]
    assert gateway(prod)["image"].endswith(":0.1.0")
    env = env_of(gateway(prod))
    assert env["PGSSLMODE"]["value"] == "verify-full"


def _utilisation(hpa: dict[str, Any]) -> int:
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    value: int = metric["resource"]["target"]["averageUtilization"]
    return value
