"""The fast lane answers exactly as FastAPI does: for every request of a corpus of good and bad
ones, the app with the lane and the app without it give the same status, the same body to the
byte, and the same headers."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.api.app import create_app
from service.api.fastlane import FastLane
from tests.conftest import tiny_settings

Request = tuple[str, Any, dict[str, str]]  # path, body (bytes are sent as they are), headers

JSON_TYPE = "application/json"
JSON = {"Content-Type": JSON_TYPE}
SAMPLES: list[Request] = [
    ("/sample", {"model": "dcgan-tiny", "n": 3, "seed": 7}, JSON),
    ("/sample", {"model": "vae-tiny", "n": 2, "seed": 1, "format": "array"}, JSON),
    ("/sample", {"model": "cvae-tiny", "n": 4, "seed": 2, "label": "sneaker"}, JSON),
    ("/sample", {"model": "cvae-tiny", "n": 4, "seed": 2}, JSON),
    ("/sample", {"model": "dcgan-tiny", "n": 4, "seed": 5, "scale": 2, "columns": 3},
     {**JSON, "Accept": "image/png"}),
    ("/sample", {"model": "dcgan-tiny", "seed": 9, "truncation": 0.7}, JSON),
    ("/sample", {"model": "pixelcnn-tiny", "seed": 3, "temperature": 0.9}, JSON),
    ("/sample", {"model": "dcgan-tiny", "seed": 3}, {"Content-Type": f"{JSON_TYPE}; charset=x"}),
    ("/sample", {"model": "dcgan-tiny", "seed": 4}, {}),  # no content type: bytes, to FastAPI
    ("/sample", {"seed": 11}, JSON),  # the default model
    # refused, each its own way
    ("/sample", {"model": "dcgan-tiny", "n": 0}, JSON),
    ("/sample", {"model": "dcgan-tiny", "n": 10_000, "seed": 1}, JSON),
    ("/sample", {"model": "dcgan-tiny", "n": "many"}, JSON),
    ("/sample", {"model": "dcgan-tiny", "colour": "red"}, JSON),
    ("/sample", {"model": "dcgan-tiny", "seed": -1}, JSON),
    ("/sample", {"model": "dcgan-tiny", "seed": 2**64}, JSON),
    ("/sample", {"model": "nope"}, JSON),
    ("/sample", {"model": "ae-tiny"}, JSON),
    ("/sample", {"model": "vae-tiny", "truncation": 0.5}, JSON),
    ("/sample", {"model": "vae-tiny", "label": "sneaker"}, JSON),
    ("/sample", {"model": "dcgan-tiny", "columns": 2}, JSON),
    ("/sample", {"model": "dcgan-tiny", "scale": 2, "format": "array"}, JSON),
    ("/sample", b'{"model": "dcgan-tiny", ', JSON),
    ("/sample", b"\xff\xfe", JSON),
    ("/sample", b"null", JSON),
    ("/sample", b"[1, 2]", JSON),
    ("/sample", b"", JSON),
    ("/sample", b"model=dcgan-tiny", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("/sample", b'{"model": "dcgan-tiny", "seed": 3}', {"Content-Type": "text/plain"}),
]  # fmt: skip


def _v2(inputs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"inputs": inputs, **extra}


Z = np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)
INFERS: list[Request] = [
    ("/v2/models/dcgan-tiny.generator/infer",
     _v2([{"name": "z", "datatype": "FP32", "shape": [2, 8], "data": Z.ravel().tolist()}]), JSON),
    ("/v2/models/dcgan-tiny.generator/versions/1/infer",
     _v2([{"name": "z", "datatype": "FP32", "shape": [2, 8], "data": Z.ravel().tolist()}],
         id="r1", outputs=[{"name": "image", "parameters": {"binary_data": True}}]), JSON),
    ("/v2/models/vae-tiny.sample/infer",
     _v2([{"name": "n", "datatype": "INT64", "shape": [1], "data": [2]},
          {"name": "seed", "datatype": "INT64", "shape": [1], "data": [5]}]), JSON),
    ("/v2/models/dcgan-tiny.generator/versions/9/infer", _v2([]), JSON),
    ("/v2/models/nope.generator/infer", _v2([]), JSON),
    ("/v2/models/dcgan-tiny.generator/infer",
     _v2([{"name": "z", "datatype": "FP32", "shape": [2, 7], "data": [0.0] * 14}]), JSON),
    ("/v2/models/dcgan-tiny.generator/infer", b"{not json", JSON),
    ("/v2/models/dcgan-tiny.generator/infer/", _v2([]), JSON),
    ("/v2/models//infer", _v2([]), JSON),
]  # fmt: skip


@pytest.fixture(scope="module")
def both(tiny_store_all: Path) -> Iterator[tuple[TestClient, TestClient]]:
    fast = create_app(tiny_settings(tiny_store_all))
    plain = create_app(tiny_settings(tiny_store_all))
    plain.user_middleware = [m for m in plain.user_middleware if m.cls is not FastLane]
    assert len(plain.user_middleware) == len(fast.user_middleware) - 1
    with TestClient(fast) as with_lane, TestClient(plain) as without:
        yield with_lane, without


def _send(client: TestClient, request: Request) -> Any:
    path, body, headers = request
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, content=content, headers=headers)


@pytest.mark.parametrize("request_", SAMPLES + INFERS, ids=lambda r: f"{r[0]} {str(r[1])[:50]}")
def test_the_lane_answers_as_fastapi_does(
    both: tuple[TestClient, TestClient], request_: Request
) -> None:
    with_lane, without = both
    fast, plain = _send(with_lane, request_), _send(without, request_)
    fast_headers, plain_headers = dict(fast.headers), dict(plain.headers)
    if fast.status_code == 200 and request_[1] in (b"", b"null"):
        # No body: both draw a seed of their own (so a body of another length); all else agrees.
        drawn = ("seed", "images", "labels")
        assert {k: v for k, v in fast.json().items() if k not in drawn} == {
            k: v for k, v in plain.json().items() if k not in drawn
        }
        del fast_headers["content-length"], plain_headers["content-length"]
    else:
        assert (fast.status_code, fast.content) == (plain.status_code, plain.content)
    assert fast_headers == plain_headers


def test_the_lane_serves_what_it_should(both: tuple[TestClient, TestClient]) -> None:
    """The good requests are valid (so the lane, not FastAPI, answered them)."""
    with_lane, _ = both
    good = SAMPLES[:8] + SAMPLES[9:10] + INFERS[:3]
    assert [_send(with_lane, r).status_code for r in good] == [200] * 12
    grid = _send(with_lane, SAMPLES[4])
    image = Image.open(io.BytesIO(grid.content))
    assert image.size == (2 * (3 * 30 - 2), 2 * (2 * 30 - 2)) and grid.headers["x-seed"] == "5"
    png = json.loads(_send(with_lane, SAMPLES[0]).content)["images"][0]
    assert Image.open(io.BytesIO(base64.b64decode(png))).size == (28, 28)
