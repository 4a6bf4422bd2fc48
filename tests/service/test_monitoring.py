"""A real monitoring stack on loopback: ``python -m service`` (uvicorn) and Debian's
``prometheus``, configured from deploy/prometheus/prometheus.yml (its rule files, a 1 s scrape
interval, the target rewritten to the test port), scraping it while the test sends a bounded
amount of traffic (4xx included). Then every PromQL expression of the Grafana dashboard and
of the alert rules runs through Prometheus's HTTP API, and each must return finite data for
every model that was called. Skipped only where the prometheus binary is missing; CI installs
it (``make prometheus``)."""

from __future__ import annotations

import math
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from harness.live_server import free_port, running_service, stop, wait_for
from tests.support.deploy_files import (
    ALERTS,
    PROMETHEUS_CONFIG,
    alert_rules,
    dashboard_targets,
    load_dashboard,
    load_yaml,
    tool,
    with_grafana_variables,
    without_threshold,
)

PROMETHEUS = tool("prometheus")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),  # the first test also waits for the service to load its store
    pytest.mark.skipif(
        PROMETHEUS is None,
        reason="the prometheus binary is not installed (CI installs Debian's: make prometheus)",
    ),
]
MODEL_OPERATIONS = "sample|encode|reconstruct|interpolate"
ROUNDS = 3


@pytest.fixture(scope="module")
def service_port(shipped_or_tiny_store: Path) -> Iterator[int]:
    # Two workers: every count must be the sum of both, exactly.
    settings = {"SERVICE_DEVICE": "cpu", "SERVICE_INTRA_OP_THREADS": "1", "SERVICE_WORKERS": "2"}
    with running_service(shipped_or_tiny_store, **settings) as url:
        yield int(url.rsplit(":", 1)[1])


def _prometheus_config(service_port: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml, as the test runs it."""
    config: dict[str, Any] = load_yaml(PROMETHEUS_CONFIG)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_CONFIG.parent / f) for f in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{service_port}"]}]
    return config


@pytest.fixture(scope="module")
def prometheus(service_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert PROMETHEUS is not None
    folder = tmp_path_factory.mktemp("prometheus")
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(_prometheus_config(service_port)))
    port = free_port()
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(f"{url}/-/ready", process, log, 60)
            yield url
        finally:
            stop(process)


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _wait_until_scraped(prometheus: str, at_least: int) -> None:
    """Until Prometheus has scraped a model-request count of at least ``at_least``."""
    expr = f'sum(genserve_request_duration_seconds_count{{operation=~"{MODEL_OPERATIONS}"}})'
    deadline = time.monotonic() + 30
    while True:
        result = _query(prometheus, expr)
        if result and float(result[0]["value"][1]) >= at_least:
            return
        assert time.monotonic() < deadline, f"Prometheus never saw {at_least} requests"
        time.sleep(0.5)


@dataclass
class Traffic:
    models: set[str]  # models called (each got 2xx and 4xx responses)
    batched: set[str]  # those whose graphs run through the batcher (all but autoregressive)
    requests: int  # requests to model operations, all rounds
    by_status: dict[str, int]  # the same, by status code


def _one_round(
    client: httpx.Client, models: list[dict[str, Any]], by_status: dict[str, int]
) -> int:
    """Every operation of every model, a few 4xx per model, an unknown model; returns the
    number of requests to model operations, and counts them by status in ``by_status``."""
    sent = 0

    def post(path: str, body: dict[str, Any], expect: int = 200) -> None:
        nonlocal sent
        response = client.post(path, json=body)
        assert response.status_code == expect, f"{path} {body.get('model')}: {response.text}"
        sent += 1
        by_status[str(expect)] = by_status.get(str(expect), 0) + 1

    for model in models:
        name, ops = model["name"], model["operations"]
        image = [[0.5] * model["image_shape"][2]] * model["image_shape"][1]
        autoregressive = model["latent_dim"] is None
        label = {"label": 0} if model["conditional"] else {}  # a cvae's latent ops need one
        if "sample" in ops:
            for seed in range(1 if autoregressive else 16):
                post("/sample", {"model": name, "n": 1 + seed % 3, "seed": seed})
            # 4xx with the model resolved: more images than the model's limit
            post("/sample", {"model": name, "n": 4096}, expect=422)
        for op in ("encode", "reconstruct"):
            if op in ops:
                for _ in range(6):
                    post(f"/{op}", {"model": name, "images": [image, image], **label})
                post(f"/{op}", {"model": name, "images": [[[2.0]]]}, expect=422)
        if "interpolate" in ops:
            start = {"seed": 1} if "sample" in ops else {"image": image}
            for steps in (2, 4, 8):
                body = {"model": name, "start": start, "end": start, "steps": steps, **label}
                post("/interpolate", body)
    post("/sample", {"model": "no-such-model"}, expect=404)
    assert client.get("/no-such-route").status_code == 404
    return sent


@pytest.fixture(scope="module")
def traffic(service_port: int, prometheus: str) -> Traffic:
    """Rounds of traffic, each waited for in Prometheus, so that every rate() sees an
    increase between two scrapes (a first scrape alone gives a rate of 0)."""
    _wait_for_target_up(prometheus)
    with httpx.Client(base_url=f"http://127.0.0.1:{service_port}", timeout=60) as client:
        listed = client.get("/models").json()["models"]
        models = [m for m in listed if m["state"] == "ready"]
        assert models
        sent, by_status = 0, {}
        for _ in range(ROUNDS):
            sent += _one_round(client, models, by_status)
            _wait_until_scraped(prometheus, sent)
    batched = {m["name"] for m in models if m["latent_dim"] is not None}
    return Traffic({m["name"] for m in models}, batched, sent, by_status)


def _wait_for_target_up(prometheus: str) -> None:
    deadline = time.monotonic() + 30
    while not _query(prometheus, 'up{job="genserve"} == 1'):
        assert time.monotonic() < deadline, "Prometheus never scraped the service"
        time.sleep(0.5)


def _assert_data_for_models(prometheus: str, name: str, expr: str, models: set[str]) -> None:
    """``expr`` returns finite values, and a series for each model called when it is per model."""
    result = _query(prometheus, expr)
    assert result, f"[{name}] no data for {expr}"
    finite = [r for r in result if math.isfinite(float(r["value"][1]))]
    assert finite, f"[{name}] only NaN/Inf for {expr}: {result}"
    if _per_model(expr):
        covered = {r["metric"].get("model") for r in finite}
        assert models <= covered, f"[{name}] {expr}: no finite series for {models - covered}"


def _per_model(expr: str) -> bool:
    """Every query is per model except the two about the process as a whole."""
    return "genserve_requests_in_flight" not in expr and not expr.startswith("up{")


def test_prometheus_scrapes_the_service(prometheus: str, traffic: Traffic) -> None:
    (up,) = _query(prometheus, 'up{job="genserve"}')
    assert up["value"][1] == "1"
    requests = f'genserve_request_duration_seconds_count{{operation=~"{MODEL_OPERATIONS}"}}'
    (total,) = _query(prometheus, f"sum({requests})")
    assert float(total["value"][1]) == traffic.requests  # exactly: both workers, summed
    by_status = {r["metric"]["status"]: float(r["value"][1])
                 for r in _query(prometheus, f"sum by (status) ({requests})")}  # fmt: skip
    assert by_status == traffic.by_status
    assert 100 <= traffic.requests <= 500  # bounded, and enough for every rate to move


def test_every_dashboard_query_returns_data_for_the_called_models(
    prometheus: str, traffic: Traffic
) -> None:
    targets = dashboard_targets()
    assert len(targets) >= 10
    for title, expr in targets:
        query = with_grafana_variables(expr)
        batch_metric = any(
            f"genserve_{m}_" in expr
            for m in ("batch", "queue", "rejected", "discarded_batch", "class")
        )
        expected = traffic.batched if batch_metric else traffic.models
        if "genserve_cancelled_work_rows" in expr:  # rows: the pixel-by-pixel families'
            expected = traffic.models - traffic.batched
        _assert_data_for_models(prometheus, title, query, expected)


def test_dashboard_model_variable_lists_the_called_models(
    prometheus: str, traffic: Traffic
) -> None:
    variable = load_dashboard()["templating"]["list"][0]
    metric = variable["query"]["query"].removeprefix("label_values(").split(",")[0]
    response = httpx.get(f"{prometheus}/api/v1/label/model/values", params={"match[]": metric})
    assert traffic.models <= set(response.json()["data"])


def test_every_alert_query_returns_data_for_the_called_models(
    prometheus: str, traffic: Traffic
) -> None:
    rules = alert_rules()
    for rule in rules:
        query = without_threshold(rule["expr"])
        assert query != rule["expr"].strip(), f"{rule['alert']}: no threshold found"
        _assert_data_for_models(prometheus, rule["alert"], query, traffic.models)


def test_prometheus_evaluates_every_alert_rule_without_error(
    prometheus: str, traffic: Traffic
) -> None:
    expected = {rule["alert"] for rule in alert_rules()}
    deadline = time.monotonic() + 20
    while True:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded = [r for g in groups for r in g["rules"] if g["file"].endswith(ALERTS.name)]
        evaluated = {
            r["name"]: r for r in loaded if not r.get("lastEvaluation", "0001").startswith("0001")
        }
        if set(evaluated) >= expected:
            break
        assert time.monotonic() < deadline, f"rules never evaluated: {loaded}"
        time.sleep(0.5)
    assert {r["name"] for r in loaded} == expected
    for name, rule in evaluated.items():
        assert rule["health"] == "ok" and not rule.get("lastError"), f"{name}: {rule}"
    # a healthy service trips none of these (latency depends on the machine, so not checked)
    for name in ("GenserveHighErrorRate", "GenserveModelNotReady", "GenserveDown"):
        assert evaluated[name]["state"] == "inactive", f"{name}: {evaluated[name]}"
