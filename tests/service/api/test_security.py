"""Security basics: ONNX only, no path from user input, pinned dependencies."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[3]
UNSAFE_MODULES = {
    "pickle",
    "cPickle",
    "dill",
    "cloudpickle",
    "joblib",
    "marshal",
    "shelve",
    "torch",
}
UNSAFE_CALLS = {"eval", "exec"}
LOADERS = {"np", "numpy", "yaml", "torch", "pickle", "joblib", "dill", "marshal"}
"""Modules whose ``load`` can run code (np.load with allow_pickle, yaml.load, torch.load)."""


def _service_sources() -> list[Path]:
    return sorted((REPO / "service").rglob("*.py"))


@pytest.mark.parametrize("path", _service_sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_serving_code_deserialises_nothing_but_onnx_and_json(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names.append(getattr(node, "module", None) or "")
            assert not {n.split(".")[0] for n in names} & UNSAFE_MODULES, (path, node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in UNSAFE_CALLS, f"{path}:{node.lineno} {node.func.id}()"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if isinstance(owner, ast.Name) and owner.id in LOADERS:
                assert not node.func.attr.startswith("load"), f"{path}:{node.lineno}"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/models/..%2F..%2Fetc%2Fpasswd", None),
        ("GET", "/models/vae-tiny%00", None),
        ("POST", "/sample", {"model": "../vae-tiny"}),
        ("POST", "/sample", {"model": "/etc/passwd"}),
        ("POST", "/encode", {"model": "vae-tiny/../dcgan-tiny", "images": [[[0.0]]]}),
    ],
)
def test_model_names_are_looked_up_never_opened(
    client: TestClient, method: str, path: str, body: dict[str, object] | None
) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == 404, response.text
    assert response.json()["code"] in {"model_not_found", "not_found"}


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_every_dependency_is_pinned_in_constraints_txt() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        requirements += [Requirement(r) for r in extra]
    pins = _constraints()
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned: run `make constraints`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )


def test_installs_use_the_constraints() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.count("-c /build/constraints.txt") == 2  # the cpu and cuda builders
    makefile = (REPO / "Makefile").read_text()
    installs = re.findall(r"pip install -q (.*) -e ", makefile)
    assert installs and all("-c constraints.txt" in flags for flags in installs)
