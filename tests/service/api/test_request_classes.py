"""Request classes over HTTP: a request's size decides its class unless its X-Request-Class
header or its API key says otherwise; a bad class is a 422 (400 under /v2); the metrics count
rows and queue waits by class; and a large request answers the same bytes whether it ran in
pieces (the classes) or whole (arrival order), the bytes of one run of its latents alone."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.config import ServiceConfig
from service.generation.families import latents
from service.generation.imaging import grid_png, images_as
from tests.conftest import tiny_settings

KEY = "b" * 20
SAMPLE = {"model": "dcgan-tiny", "seed": 5}


def class_rows(client: TestClient, model: str = "dcgan-tiny", graph: str = "generator") -> dict:
    text = client.get("/metrics").text
    found = re.findall(
        rf'genserve_class_rows_total{{class="(\w+)",graph="{graph}",model="{model}"}} (\S+)', text
    )
    return {klass: float(value) for klass, value in found}


@pytest.fixture()
def classes(tiny_store: Path) -> Iterator[TestClient]:
    settings = tiny_settings(
        tiny_store, api_keys=f"jobs:{KEY}", api_key_classes="jobs:bulk", bulk_chunk_images=8
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_window_setting_reaches_every_graphs_batch_policy(tiny_store: Path) -> None:
    config = ServiceConfig.from_settings(tiny_settings(tiny_store, interactive_window_ms=250))
    assert config.batching.interactive_window == 0.25


def test_the_size_decides_the_class_by_default(tiny_store: Path) -> None:
    with TestClient(create_app(tiny_settings(tiny_store))) as client:
        assert client.post("/sample", json={**SAMPLE, "n": 4}).status_code == 200
        assert class_rows(client) == {"interactive": 4.0, "bulk": 0.0}
        assert client.post("/sample", json={**SAMPLE, "n": 5}).status_code == 200
        assert class_rows(client) == {"interactive": 4.0, "bulk": 5.0}
        text = client.get("/metrics").text
        for klass in ("interactive", "bulk"):
            count = (
                f'genserve_class_queue_wait_seconds_count{{class="{klass}",graph="generator",'
                'model="dcgan-tiny"} 1.0'
            )
            assert count in text


def test_the_api_key_gives_a_default_class_and_the_header_wins(classes: TestClient) -> None:
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert classes.post("/sample", json=SAMPLE, headers=bearer).status_code == 200
    assert class_rows(classes) == {"interactive": 0.0, "bulk": 1.0}
    stated = {**bearer, "X-Request-Class": "interactive"}
    png = {**stated, "Accept": "image/png"}  # through the FastAPI route as well
    assert classes.post("/sample", json={**SAMPLE, "n": 9}, headers=stated).status_code == 200
    assert classes.post("/sample", json={**SAMPLE, "n": 2}, headers=png).status_code == 200
    assert class_rows(classes) == {"interactive": 11.0, "bulk": 1.0}
    body = {"model": "vae-tiny", "images": [[[0.5] * 28] * 28]}
    bulk = {**bearer, "X-Request-Class": "BULK"}
    assert classes.post("/reconstruct", json=body, headers=bulk).status_code == 200
    assert class_rows(classes, "vae-tiny", "decoder") == {"interactive": 0.0, "bulk": 1.0}


def test_a_bad_class_is_refused(classes: TestClient) -> None:
    headers = {"Authorization": f"Bearer {KEY}", "X-Request-Class": "urgent"}
    refused = classes.post("/sample", json=SAMPLE, headers=headers)
    assert refused.status_code == 422
    assert refused.json() == {
        "error": "X-Request-Class: 'urgent' is not a request class; choose interactive or bulk",
        "code": "invalid_input",
    }
    z = {"name": "z", "datatype": "FP32", "shape": [1, 8], "data": [0.0] * 8}
    v2 = classes.post(
        "/v2/models/dcgan-tiny.generator/infer", json={"inputs": [z]}, headers=headers
    )
    assert v2.status_code == 400 and set(v2.json()) == {"error"}
    assert class_rows(classes) == {"interactive": 0.0, "bulk": 0.0}


@pytest.mark.parametrize("png", [False, True])
def test_a_large_request_answers_the_same_bytes_in_pieces_and_whole(
    tiny_store: Path, png: bool
) -> None:
    body = {"model": "dcgan-tiny", "n": 64, "seed": 11}
    headers = {"Accept": "image/png"} if png else {}
    answers = {}
    for policy in ("classes", "arrival"):
        settings = tiny_settings(tiny_store, queue_policy=policy, bulk_chunk_images=8)
        with TestClient(create_app(settings)) as client:
            assert client.post("/sample", json={"model": "dcgan-tiny"}).status_code == 200
            answer = client.post("/sample", json=body, headers=headers)  # right after it
            assert answer.status_code == 200
            answers[policy] = answer.content
            sizes = client.get("/metrics").text
            runs = re.search(
                r'genserve_batch_size_count{graph="generator",model="dcgan-tiny"} (\S+)', sizes
            )
            assert runs is not None
            assert float(runs[1]) == 1 + (8 if policy == "classes" else 1)  # 8 pieces, or 1
            graph = client.app.state.registry.get("dcgan-tiny").graphs["generator"]  # type: ignore[attr-defined]
            dim = graph.spec.inputs[0].shape[1]
            alone = graph.run({"z": latents(11, 64, dim)})["image"]  # one run, as before pieces
    assert answers["classes"] == answers["arrival"]
    if png:
        assert answers["classes"] == grid_png(alone, columns=None, scale=1)
    else:
        images = images_as("png")(alone)
        assert json.loads(answers["classes"])["images"] == images
