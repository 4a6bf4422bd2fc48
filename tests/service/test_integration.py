"""Real uvicorn over a real socket: ``python -m service`` on 127.0.0.1, every endpoint by httpx.

It serves the repo's model_store/ once trained models land there, else the tiny store
(see the ``shipped_or_tiny_store`` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from harness.live_server import running_service


@pytest.fixture(scope="module")
def server(shipped_or_tiny_store: Path) -> Iterator[str]:
    with running_service(shipped_or_tiny_store) as url:
        yield url


@pytest.mark.slow
def test_every_endpoint_over_http(server: str) -> None:
    with httpx.Client(base_url=server, timeout=120) as client:
        assert client.get("/health/live").json() == {"status": "alive"}
        assert client.get("/health/ready").json()["ready"] is True
        models = [m for m in client.get("/models").json()["models"] if m["state"] == "ready"]
        assert models
        for model in models:
            name, ops = model["name"], model["operations"]
            assert client.get(f"/models/{name}").json()["name"] == name
            shape = model["image_shape"]
            image = np.zeros(shape).tolist()
            label = {"label": 0} if model["conditional"] else {}  # a cvae's latent ops need one
            if "sample" in ops:
                body = client.post("/sample", json={"model": name, "n": 1, "seed": 1}).json()
                assert body["shape"] == [1, *shape] and body["seed"] == 1
                grid = client.post(
                    "/sample", json={"model": name, "n": 1}, headers={"Accept": "image/png"}
                )
                assert grid.headers["content-type"] == "image/png" and "x-seed" in grid.headers
            if "encode" in ops:
                encoded = client.post("/encode", json={"model": name, "images": [image], **label})
                assert encoded.status_code == 200, encoded.text
            if "reconstruct" in ops:
                body = client.post(
                    "/reconstruct", json={"model": name, "images": [image], **label}
                ).json()
                assert len(body["error"]) == 1
            if "interpolate" in ops:
                start = {"image": image} if "encode" in ops else {"seed": 1}
                body = client.post(
                    "/interpolate",
                    json={"model": name, "start": start, "end": {"seed": 2}, "steps": 3, **label}
                    if "sample" in ops
                    else {"model": name, "start": start, "end": start, "steps": 3, **label},
                ).json()
                assert len(body["images"]) == 3 and len(body["latents"]) == 3
            if "score" in ops:
                k = {"k": 2} if model["latent_dim"] is not None else {}  # the VAE's IWAE
                body = client.post("/score", json={"model": name, "images": [image], **k})
                assert body.status_code == 200 and len(body.json()["bits_per_dim"]) == 1, body.text
            if "complete" in ops:  # one row to draw: 28 pixels
                body = client.post("/complete", json={"model": name, "images": [image], "rows": 27})
                assert body.json()["shape"] == [1, 1, *shape], body.text
            if "traverse" in ops:
                body = client.post(
                    "/traverse", json={"model": name, "dim": 0, "steps": 3, "seed": 1}
                )
                assert len(body.json()["images"]) == 3, body.text
        missing = client.post("/sample", json={"model": "no-such-model"})
        assert missing.status_code == 404 and missing.json()["code"] == "model_not_found"
        metrics = client.get("/metrics").text
        assert "genserve_request_duration_seconds_bucket" in metrics
        assert "genserve_provider_info" in metrics
        assert client.get("/docs").status_code == 200
        assert "/interpolate" in client.get("/openapi.json").json()["paths"]
