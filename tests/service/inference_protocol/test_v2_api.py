"""The v2 endpoints through the real app: what a client library never sends on purpose (broken
binary bodies, nested data, bad parameters), failed models, and the v2 error shape."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from tests.conftest import tiny_settings

HEADER = "Inference-Header-Content-Length"
Z = {"name": "z", "shape": [1, 8], "datatype": "FP32"}


def infer(client: TestClient, model: str, body: dict[str, Any], binary: bytes = b"") -> Any:
    header = json.dumps(body).encode()
    headers = {HEADER: str(len(header))} if binary else {}
    return client.post(f"/v2/models/{model}/infer", content=header + binary, headers=headers)


def split(response: Any) -> tuple[dict[str, Any], bytes]:
    length = int(response.headers[HEADER])
    return json.loads(response.content[:length]), response.content[length:]


def test_nested_and_flat_data_are_the_same_tensor(client: TestClient) -> None:
    z = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    flat = infer(
        client, "vae-tiny.decoder", {"inputs": [{**Z, "shape": [2, 8], "data": z.ravel().tolist()}]}
    )
    nested = infer(
        client,
        "vae-tiny.decoder",
        {"id": "7", "inputs": [{**Z, "shape": [2, 8], "data": z.tolist()}]},
    )
    assert flat.status_code == nested.status_code == 200
    assert nested.json()["id"] == "7" and "id" not in flat.json()
    assert flat.json()["outputs"] == nested.json()["outputs"]
    assert [o["name"] for o in flat.json()["outputs"]] == ["image", "log_scale"]


def test_binary_inputs_and_outputs_follow_the_json(client: TestClient) -> None:
    z = np.arange(16, dtype=np.float32).reshape(2, 8) / 16
    body = {
        "inputs": [{**Z, "shape": [2, 8], "parameters": {"binary_data_size": z.nbytes}}],
        "outputs": [{"name": "log_scale", "parameters": {"binary_data": True}}, {"name": "image"}],
    }
    response = infer(client, "vae-tiny.decoder", body, z.tobytes())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    head, tail = split(response)
    log_scale, image = head["outputs"]
    assert log_scale["parameters"] == {"binary_data_size": 2 * 784 * 4} and "data" not in log_scale
    assert len(tail) == 2 * 784 * 4 and len(image["data"]) == 2 * 784  # JSON, as asked
    as_json = infer(
        client, "vae-tiny.decoder", {"inputs": [{**Z, "shape": [2, 8], "data": z.tolist()}]}
    )
    by_name = {o["name"]: o for o in as_json.json()["outputs"]}
    np.testing.assert_array_equal(np.frombuffer(tail, "<f4"), by_name["log_scale"]["data"])
    assert image["data"] == by_name["image"]["data"]


def test_binary_data_output_applies_to_every_output(client: TestClient) -> None:
    body = {"parameters": {"binary_data_output": True}, "inputs": [{**Z, "data": [0.0] * 8}]}
    head, tail = split(infer(client, "vae-tiny.decoder", body))
    assert [o["parameters"]["binary_data_size"] for o in head["outputs"]] == [3136, 3136]
    assert len(tail) == 6272


@pytest.mark.parametrize(
    ("body", "binary", "message"),
    [
        ({"inputs": [{**Z, "parameters": {"binary_data_size": 32}}]}, b"\0" * 16, "needs 32 bytes"),
        ({"inputs": [{**Z, "parameters": {"binary_data_size": 16}}]}, b"\0" * 16, "must be 32"),
        (
            {"inputs": [{**Z, "data": [0.0] * 8}]},
            b"\0" * 4,
            "4 bytes of binary data belong to no input",
        ),
        (
            {"inputs": [{**Z, "data": [0.0] * 8, "parameters": {"binary_data_size": 32}}]},
            b"\0" * 32,
            "not both",
        ),
        ({"inputs": [{**Z, "data": [0.0] * 7}]}, b"", "data has 7 values, shape [1, 8] needs 8"),
        ({"inputs": [{**Z, "data": [[0.0] * 8, [1.0]]}]}, b"", "not a rectangular array"),
        ({"inputs": [{**Z}]}, b"", "no data"),
        (
            {"inputs": [{**Z, "datatype": "BYTES", "data": ["x"] * 8}]},
            b"",
            "'BYTES' is not supported",
        ),
        ({"inputs": [{**Z, "shape": [1, -8], "data": []}]}, b"", "inputs[0].shape[1]"),
        ({"inputs": [{**Z, "data": [0.0] * 8}] * 2}, b"", "given twice"),
        ({"inputs": [{**Z, "data": [float("nan")] * 8}]}, b"", "NaN"),
        ({"inputs": [{**Z, "shape": [0, 8], "data": []}]}, b"", "batch size must be 1 to 64"),
        ({"inputs": [{**Z, "data": [0.0] * 8}], "outputs": [{"name": "image"}] * 2}, b"", "twice"),
        (
            {
                "inputs": [{**Z, "data": [0.0] * 8}],
                "outputs": [{"name": "image", "parameters": {"class_count": 3}}],
            },
            b"",
            "classification extension is not supported",
        ),
        (
            {"inputs": [{**Z, "parameters": {"shared_memory_region": "r"}}]},
            b"",
            "shared-memory extension is not supported",
        ),
        (
            {"parameters": {"binary_data_output": "yes"}, "inputs": [{**Z, "data": [0.0] * 8}]},
            b"",
            "true or false",
        ),
        (
            {"inputs": [{**Z, "data": [0.0] * 8}], "outputs": [{"name": "nope"}]},
            b"",
            "no such output",
        ),
    ],
)
def test_malformed_requests_are_400_with_the_reason(
    client: TestClient, body: dict[str, Any], binary: bytes, message: str
) -> None:
    response = infer(client, "vae-tiny.decoder", body, binary)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"} and message in response.json()["error"]


def test_integer_inputs_refuse_fractions_and_out_of_range(client: TestClient) -> None:
    n = {"name": "n", "shape": [1], "datatype": "INT64"}
    for data, message in (([1.5], "must hold integers"), ([2**64], "must hold integers")):
        response = infer(client, "vae-tiny.sample", {"inputs": [{**n, "data": data}]})
        assert response.status_code == 400 and message in response.json()["error"], data
    uint8 = infer(
        client, "vae-tiny.sample", {"inputs": [{**n, "datatype": "UINT8", "data": [300]}]}
    )
    assert "values must lie in [0, 255]" in uint8.json()["error"]
    zero = infer(client, "vae-tiny.sample", {"inputs": [{**n, "data": [0]}]})
    assert zero.json() == {"error": "input 'n': must be at least 1, got 0"}


def test_header_length_must_fit_the_body(client: TestClient) -> None:
    for value in ("abc", "0", "100000"):
        response = client.post(
            "/v2/models/vae-tiny.decoder/infer", content=b'{"inputs": []}', headers={HEADER: value}
        )
        assert response.status_code == 400 and HEADER in response.json()["error"]


def test_pixelcnn_graph_takes_any_rows_up_to_the_image(client: TestClient) -> None:
    image = {"name": "image", "datatype": "FP32", "shape": [1, 1, 5, 28], "data": [0.0] * 140}
    response = infer(client, "pixelcnn-tiny.pixelcnn", {"inputs": [image]})
    assert response.status_code == 200 and response.json()["outputs"][0]["shape"] == [1, 6, 5, 28]
    too_tall = {**image, "shape": [1, 1, 29, 28], "data": [0.0] * 29 * 28}
    refused = infer(client, "pixelcnn-tiny.pixelcnn", {"inputs": [too_tall]})
    assert refused.json() == {"error": "input 'image': axis 2 must be 1 to 28, got 29"}


def test_sample_knobs_are_checked_as_post_sample_checks_them(client: TestClient) -> None:
    n = {"name": "n", "shape": [1], "datatype": "INT64", "data": [1]}
    t = {"name": "temperature", "shape": [1], "datatype": "FP32", "data": [0.0]}
    refused = infer(client, "pixelcnn-tiny.sample", {"inputs": [n, t]})
    assert refused.json() == {
        "error": "input 'temperature': must be 0 < temperature <= 10, got 0.0"
    }
    wrong_family = infer(client, "vae-tiny.sample", {"inputs": [n, t]})
    assert "vae-tiny.sample has no such input" in wrong_family.json()["error"]


def test_unsupported_content_encoding(client: TestClient) -> None:
    response = client.post(
        "/v2/models/vae-tiny.decoder/infer", content=b"{}", headers={"Content-Encoding": "br"}
    )
    assert response.status_code == 400 and "'br' is not supported" in response.json()["error"]


def test_v2_routes_answer_errors_in_the_protocols_shape(client: TestClient) -> None:
    assert client.get("/v2/nope").json() == {"error": "no route GET /v2/nope"}
    refused = client.get("/v2/models/vae-tiny.decoder/infer")
    assert refused.status_code == 405 and set(refused.json()) == {"error"}
    # Our own API keeps its shape.
    assert set(client.get("/nope").json()) == {"error", "code"}


def test_unserved_family_is_not_a_v2_model(tmp_path: Path, tiny_store: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    card = (store / "dcgan-tiny.v1.json").read_text()
    (store / "classifier-tiny.v1.json").write_text(
        card.replace('"dcgan-tiny"', '"classifier-tiny"').replace('"dcgan"', '"classifier"')
    )
    with TestClient(create_app(tiny_settings(store))) as client:
        response = client.get("/v2/models/classifier-tiny.generator")
        assert response.status_code == 404
        assert response.json() == {
            "error": "model 'classifier-tiny.generator' is not served: "
            "family 'classifier' is not served by this service"
        }


def test_failed_model_is_503_in_v2_and_others_serve(tmp_path: Path, tiny_store: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    (store / "vae-tiny.decoder" / "1" / "model.onnx").write_bytes(b"junk")
    with TestClient(create_app(tiny_settings(store, readiness="strict"))) as client:
        assert client.get("/v2/health/live").status_code == 200
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503 and "not ready" in ready.json()["error"]
        for path in ("/v2/models/vae-tiny.decoder", "/v2/models/vae-tiny.sample/ready"):
            response = client.get(path)
            assert response.status_code == 503, path
            assert "is not ready: vae-tiny: sha256 mismatch" in response.json()["error"]
        assert client.get("/v2/models/vae-tiny.nope").status_code == 404
        assert client.get("/v2/models/dcgan-tiny.generator/ready").json() == {
            "name": "dcgan-tiny.generator",
            "ready": True,
        }


def test_body_limit_answers_in_the_v2_shape(tiny_store: Path) -> None:
    settings = tiny_settings(tiny_store, max_body_bytes=1024)
    with TestClient(create_app(settings)) as small:
        response = small.post("/v2/models/vae-tiny.decoder/infer", content=b" " * 2048)
        assert response.status_code == 413
        assert response.json() == {"error": "request body exceeds the limit of 1024 bytes"}


def test_openapi_documents_the_v2_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v2/models/{model_name}/versions/{model_version}/infer" in paths
    assert "/v2/health/ready" in paths


@pytest.fixture(scope="module")
def client(tiny_store: Path) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_settings(tiny_store))) as test_client:
        yield test_client
