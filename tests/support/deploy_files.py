"""The deployment files (Dockerfile, compose, Prometheus, Grafana, Kubernetes, KServe) and the
PromQL they hold, shared by tests/deploy/test_deploy.py (static checks) and
tests/service/test_monitoring.py (a real Prometheus)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "docker-compose.yml"
SCHEMAS = DEPLOY / "schemas"
COMPOSE_SCHEMA = SCHEMAS / "compose-spec.json"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "genserve.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "genserve.yml"
K8S = DEPLOY / "k8s"
KSERVE = DEPLOY / "kserve"
KSERVE_SCHEMAS = sorted(SCHEMAS.glob("kserve-*.json"))

# What the Grafana variables become when a test runs a panel's expr against Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$model": ".*"}
_THRESHOLD = re.compile(r"^(?P<query>.*?)\s*(?:==|!=|>=|<=|>|<)\s*[-+]?[0-9][0-9.eE+-]*\s*$", re.S)


def tool(name: str) -> str | None:
    """A command from the venv (next to this Python) or from PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _load_script(path: Path) -> ModuleType:
    """A script under deploy/, imported by path (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dashboard_builder() -> ModuleType:
    """deploy/grafana/build_dashboard.py."""
    return _load_script(GRAFANA / "build_dashboard.py")


def vendor_crd() -> ModuleType:
    """deploy/schemas/vendor_crd.py, which derives the vendored CRD schemas."""
    return _load_script(SCHEMAS / "vendor_crd.py")


def strict_crd_schema(schema: Any) -> Any:
    """A CRD schema as the API server applies it with strict field validation (kubectl's
    default): an object schema with `properties` takes no other field, unless it has its own
    `additionalProperties` (a map) or `x-kubernetes-preserve-unknown-fields`. jsonschema would
    otherwise accept a misspelt field, which the API server would reject (or, without strict
    validation, silently drop)."""
    if isinstance(schema, list):
        return [strict_crd_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        key: {name: strict_crd_schema(child) for name, child in value.items()}
        if key in ("properties", "definitions")
        else strict_crd_schema(value)
        for key, value in schema.items()
    }
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expr) for every target of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in load_dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def with_grafana_variables(expr: str) -> str:
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted Grafana variable in {expr!r}"
    return expr


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"]]


def without_threshold(expr: str) -> str:
    """``<query> > 5`` -> ``<query>``: what an alert compares, which is data even when calm."""
    match = _THRESHOLD.match(expr.strip())
    return match.group("query") if match else expr.strip()


def dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined, comments dropped)."""
    stages: dict[str, list[str]] = {}
    current: list[str] | None = None
    logical = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        logical += line[:-1] + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        instruction, logical = logical, ""
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", instruction, re.I)
        if match:
            current = stages.setdefault(match.group(1), [])
        if current is not None:
            current.append(instruction)
    return stages
