"""The container engine, the built CPU image and running containers, for the container tests
(marker ``container``: ``make image-test`` runs them, ``make test`` does not). The image is
built once a session by deploy/docker/build.py, as ``make image`` builds it, and its figures are
printed at the end of the run. Skipped only where neither podman nor docker can run."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.support.deploy_files import DEPLOY

BUILD_SCRIPT = DEPLOY / "docker" / "build.py"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
TAG = "genserve:cpu"
"""The tag `make image` gives it, which docker-compose.yml and deploy/k8s/ name."""
FIGURES: list[str] = []
"""Lines printed at the end of the run (image size, build time, shutdown, scrape time)."""


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("deploy figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def image_build() -> ModuleType:
    """deploy/docker/build.py, imported by path (deploy/ is not a package)."""
    name = "genserve_image_build"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def build_ca() -> Path | None:
    """The CA bundle the build passes to pip: BUILD_CA (``make image-test`` sets it; empty:
    none), else the host's bundle, which holds a TLS-inspecting proxy's CA where there is one."""
    value = os.environ.get("BUILD_CA", str(HOST_CA_BUNDLE) if HOST_CA_BUNDLE.exists() else "")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def engine() -> Any:
    found, why = image_build().find_engine()
    if found is None:
        pytest.skip(f"no container engine can run here: {why}")
    return found


@dataclass(frozen=True)
class Image:
    tag: str
    base: str
    ca: Path | None


@pytest.fixture(scope="session")
def image(engine: Any) -> Image:
    """The CPU image, built as ``make image`` builds it (tagged for the tests)."""
    ca = build_ca()
    built = image_build().build(engine, tag=TAG, ca=ca)
    FIGURES.append(f"[{engine.name}] image {built.summary()}")
    return Image(built.tag, built.base, ca)


@dataclass(frozen=True)
class Container:
    engine: Any
    name: str
    url: str

    def exec(self, *command: str) -> str:
        return str(self.engine.run("exec", self.name, *command, timeout=60).stdout)

    def state(self, field: str) -> str:
        result = self.engine.run("inspect", "--format", "{{.State." + field + "}}", self.name)
        return str(result.stdout).strip()

    def logs(self) -> str:
        result = self.engine.run("logs", self.name, check=False, timeout=60)
        return str(result.stdout + result.stderr)[-3000:]


@contextmanager
def running_container(
    engine: Any, image: str, *options: str, ready_s: float = 120
) -> Iterator[Container]:
    """``image`` run detached with ``options``, port 8000 published on a free loopback port;
    yields it once /health/ready answers 200, and removes it afterwards."""
    name = f"genserve-test-{uuid.uuid4().hex[:8]}"
    engine.run("run", "--detach", "--name", name, "--publish", "127.0.0.1::8000", *options, image)
    try:
        address = engine.run("port", name, "8000").stdout.split()[0]
        container = Container(engine, name, f"http://{address}")
        deadline = time.monotonic() + ready_s
        while True:
            if container.state("Running") != "true":
                pytest.fail(f"the container exited: {container.logs()}")
            try:
                if httpx.get(f"{container.url}/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"not ready within {ready_s} s: {container.logs()}")
            time.sleep(0.5)
        yield container
    finally:
        engine.run("rm", "--force", name, check=False, timeout=120)
