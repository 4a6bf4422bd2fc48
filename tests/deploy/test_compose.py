"""The compose stack run for real (``make image-test``): docker-compose.yml's genserve (profile
cpu) and Prometheus, brought up by podman-compose or ``docker compose``. Prometheus, configured
by deploy/prometheus/ as users run it, must find genserve up within 30 s of ``up``; after some
requests the dashboard's own latency query returns the model's latency, and the alert rules are
loaded. Where prom/prometheus cannot be pulled, deploy/local-images/ builds Prometheus from
Debian's package and its override file puts it in place; the main file stays as it is. Grafana
has no such stand-in: the dashboard's static checks are in tests/deploy/test_deploy.py."""

from __future__ import annotations

import math
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.deploy.conftest import FIGURES, Image
from tests.support.deploy_files import (
    COMPOSE,
    DEPLOY,
    REPO,
    alert_rules,
    dashboard_targets,
    load_yaml,
    tool,
    with_grafana_variables,
)

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

LOCAL_IMAGES = DEPLOY / "local-images"
OVERRIDE = LOCAL_IMAGES / "compose.override.yml"
LOCAL_PROMETHEUS = "localhost/genserve-prometheus:debian"
SERVICE = "http://127.0.0.1:8000"
PROMETHEUS = "http://127.0.0.1:9090"
SCRAPE_WITHIN_S = 30
MODEL = "dcgan-fashion"


def _compose_command(engine: Any) -> list[str]:
    if engine.name == "docker":
        return ["docker", "compose"]
    found = tool("podman-compose")
    if found is None:
        pytest.fail("podman-compose is missing: pip install -e '.[dev]' installs it")
    return [found]


def _prometheus_files(engine: Any, image: Image) -> list[str]:
    """The compose files to run: the main one alone where its Prometheus image is present or
    pullable, else with the override and a Prometheus built from Debian's package."""
    wanted = load_yaml(COMPOSE)["services"]["prometheus"]["image"]
    if engine.has_image(wanted) or engine.run("pull", wanted, check=False).returncode == 0:
        return ["-f", str(COMPOSE)]
    engine.run(
        "build",
        *(["--format", "docker"] if engine.name == "podman" else []),
        "--file",
        str(LOCAL_IMAGES / "prometheus.Dockerfile"),
        "--build-arg",
        f"BASE_IMAGE={image.base}",
        "--tag",
        LOCAL_PROMETHEUS,
        str(LOCAL_IMAGES),
        timeout=900,
    )
    assert load_yaml(OVERRIDE)["services"]["prometheus"]["image"] == LOCAL_PROMETHEUS
    return ["-f", str(COMPOSE), "-f", str(OVERRIDE)]


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class Stack:
    up_at: float
    """time.monotonic() when `up` was called."""


@pytest.fixture(scope="module")
def stack(engine: Any, image: Image) -> Iterator[Stack]:
    busy = [port for port in (8000, 9090) if not _port_is_free(port)]
    if busy:
        pytest.fail(f"docker-compose.yml publishes 127.0.0.1 ports {busy}, which are in use")
    compose = [
        *_compose_command(engine),
        "--project-name",
        f"genserve-test-{uuid.uuid4().hex[:8]}",
        *_prometheus_files(engine, image),
        "--profile",
        "cpu",
    ]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*compose, *args],
            cwd=REPO,
            env=engine.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    up_at = time.monotonic()
    try:
        up = run("up", "--detach", "--no-build", "genserve", "prometheus")
        assert up.returncode == 0, up.stdout + up.stderr
        yield Stack(up_at)
    finally:
        down = run("down", "--volumes")
        assert down.returncode == 0, down.stdout + down.stderr


def _until(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.5)
    pytest.fail(f"{what} not within {seconds} s (last: {last!r})")


def _prometheus_data(path: str) -> Any:
    """The API's data, or None while Prometheus is starting (it answers 503 until ready)."""
    response = httpx.get(f"{PROMETHEUS}{path}", timeout=5)
    if response.status_code == 503:
        return None
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _genserve_target_up() -> bool:
    targets = _prometheus_data("/api/v1/targets")
    return targets is not None and any(
        t["labels"]["job"] == "genserve" and t["health"] == "up" for t in targets["activeTargets"]
    )


def _query(expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": expr}, timeout=10)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def test_prometheus_scrapes_genserve_within_30_s(stack: Stack) -> None:
    _until(_genserve_target_up, SCRAPE_WITHIN_S + 5, "the genserve target up")
    after = time.monotonic() - stack.up_at
    FIGURES.append(f"compose: Prometheus found genserve up {after:.1f} s after `up`")
    assert after <= SCRAPE_WITHIN_S


def test_the_dashboards_latency_query_returns_the_models_latency(stack: Stack) -> None:
    """Requests go on while Prometheus scrapes (every 15 s, as deploy/prometheus/ says) until
    the p50 panel's query, as Grafana would send it, holds a finite value for the model."""
    _until(_genserve_target_up, SCRAPE_WITHIN_S + 5, "the genserve target up")
    title, expr = next((t, e) for t, e in dashboard_targets() if "p50 latency" in t)
    query = with_grafana_variables(expr)
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=SERVICE, timeout=30) as client:
            while not stop.is_set():
                client.post("/sample", json={"model": MODEL, "n": 4, "seed": 1})
                stop.wait(0.2)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    started = time.monotonic()
    try:

        def latency() -> list[float]:
            rows = [r for r in _query(query) if r["metric"].get("model") == MODEL]
            return [float(r["value"][1]) for r in rows if math.isfinite(float(r["value"][1]))]

        values = _until(latency, 90, f"{title!r} for {MODEL}")
    finally:
        stop.set()
        sender.join(timeout=35)
    FIGURES.append(
        f"compose: {title!r} gave {MODEL} {values[0] * 1000:.1f} ms, "
        f"{time.monotonic() - started:.0f} s after the first request"
    )
    assert all(0 < value < 10 for value in values)


def test_prometheus_loaded_the_alert_rules(stack: Stack) -> None:
    def loaded() -> set[str]:
        rules = _prometheus_data("/api/v1/rules")
        groups = rules["groups"] if rules is not None else []
        return {rule["name"] for group in groups for rule in group["rules"]}

    names = _until(loaded, SCRAPE_WITHIN_S, "the alert rules")
    assert names == {rule["alert"] for rule in alert_rules()}
