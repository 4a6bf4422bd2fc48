"""The layers of docs/architecture.md, read from the imports of every module: what each layer of
the service may import, and that neither the store format nor the training package imports the
service. Like tests/service/test_no_torch.py, but for the whole dependency graph."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fresh_imports import assert_imports_leave_out

REPO = Path(__file__).resolve().parent.parent

# The service's layers, top to bottom: a module may import its own layer and those below it.
LAYERS = ["api", "config", "inference_protocol", "generation", "registry", "runtime", "base"]
BASE = {"errors", "metrics"}
"""Modules every layer may import; they import nothing of the service."""


def _layer(module: str) -> str:
    """``service.generation.specs`` -> ``generation``; ``service.errors`` -> ``base``."""
    part = module.split(".")[1] if module.count(".") else ""
    return "base" if part in BASE else part


def _imports(path: Path) -> set[str]:
    """Every absolute module a file imports, at any depth (lazy imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _modules(package: str) -> dict[str, Path]:
    root = REPO / package
    return {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path
        for path in sorted(root.rglob("*.py"))
    }


SERVICE = _modules("service")


@pytest.mark.parametrize("module", [m for m in SERVICE if m.count(".") and m != "service.__main__"])
def test_each_service_module_imports_only_its_layer_and_those_below(module: str) -> None:
    layer = _layer(module)
    assert layer in LAYERS, f"{module} is in no layer of docs/architecture.md"
    allowed = set() if layer == "base" else set(LAYERS[LAYERS.index(layer) :])
    for imported in _imports(SERVICE[module]):
        if imported.startswith("service."):
            target = _layer(imported)
            assert target in allowed, f"{module} ({layer}) imports {imported} ({target})"


def test_the_reference_samplers_stay_off_the_serving_path() -> None:
    users = [m for m, path in SERVICE.items() if "service.generation.reference" in _imports(path)]
    assert users == [], f"{users} import the reference samplers, which only tests and benches use"


@pytest.mark.parametrize("package", ["modelstore", "training"])
def test_the_store_format_and_training_never_import_the_service(package: str) -> None:
    for module, path in _modules(package).items():
        service = [m for m in _imports(path) if m == "service" or m.startswith("service.")]
        assert not service, f"{module} imports {service}: the store contract is in modelstore/"


def test_modelstore_needs_neither_torch_nor_the_service_nor_training() -> None:
    assert_imports_leave_out(
        "modelstore.check, modelstore.migrate, modelstore.triton",
        {"torch", "service", "training", "fastapi"},
    )


def test_training_runs_without_importing_the_service(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    code = f"""
import sys
from training.trainer import train
from training.export import export_checkpoint
ckpt = train("dcgan", "synthetic", __import__("pathlib").Path({str(tmp_path)!r}) / "run",
             overrides={{"channels": 4, "latent_dim": 4, "batch_size": 32, "epochs": 1}},
             limit=32, progress=False)
export_checkpoint(ckpt, __import__("pathlib").Path({str(tmp_path)!r}) / "store", "dcgan-t",
                  metrics={{"metrics": {{}}, "evaluation": {{}}}})
leaked = sorted(m for m in sys.modules if m == "service" or m.startswith("service."))
assert not leaked, leaked
print("no service")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no service" in result.stdout


def test_the_supervisor_of_several_workers_reads_its_settings_without_the_app() -> None:
    """``python -m service`` with several uvicorn workers only reads the settings and starts
    the workers, which import the app themselves: onnxruntime in it would cost every start-up
    the import and the service the memory."""
    assert_imports_leave_out(
        "service.__main__, service.config, service.runtime.rundir, service.runtime.memory",
        {"onnxruntime", "numpy", "fastapi", "service.api.app"},
    )


def test_the_readiness_setting_names_the_fleets_policies() -> None:
    from typing import get_args

    from service.config import ReadinessPolicy
    from service.registry.fleet import Readiness

    assert set(get_args(ReadinessPolicy)) == {policy.value for policy in Readiness}


def test_no_test_imports_the_bench() -> None:
    """What tests and benchmarks share is in ``harness/``; the bench's own tests
    (``tests/bench/``) run its commands."""
    tests = REPO / "tests"
    for path in sorted(tests.rglob("*.py")):
        bench = [m for m in _imports(path) if m == "bench" or m.startswith("bench.")]
        assert not bench, f"{path.relative_to(REPO)} imports {bench}: share it through harness/"
