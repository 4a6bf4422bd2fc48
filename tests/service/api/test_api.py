"""The HTTP API, through the real app built by create_app(Settings(model_store=tiny store))."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.api.app import create_app
from tests.conftest import tiny_settings

ZEROS = np.zeros((28, 28)).tolist()


def test_models_lists_every_model(client: TestClient) -> None:
    response = client.get("/models")
    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()["models"]}
    assert set(models) == {"ae-tiny", "dcgan-tiny", "pixelcnn-tiny", "vae-tiny"}
    vae = models["vae-tiny"]
    assert vae["family"] == "vae" and vae["version"] == 1 and vae["latent_dim"] == 8
    assert vae["operations"] == [
        "encode", "interpolate", "reconstruct", "sample", "score", "traverse"
    ]  # fmt: skip
    assert vae["conditional"] is False and vae["class_names"] == [str(i) for i in range(10)]
    assert vae["image_shape"] == [1, 28, 28] and vae["metrics"] == {"fd": 1.5}
    assert vae["provider"] == "CPUExecutionProvider" and vae["state"] == "ready"


def test_get_model_by_name(client: TestClient) -> None:
    response = client.get("/models/pixelcnn-tiny")
    assert response.status_code == 200
    assert response.json()["operations"] == ["complete", "sample", "score"]
    assert response.json()["latent_dim"] is None


def test_an_autoregressive_model_says_how_it_samples_and_how_long_it_took(
    tiny_store: Path,
) -> None:
    with TestClient(create_app(tiny_settings(tiny_store))) as fresh:
        sampling = fresh.get("/models/pixelcnn-tiny").json()["sampling"]
        assert sampling["method"] == "naive"  # the tiny PixelCNN ships no fast sampler
        assert "one full pass" in sampling["description"]
        assert sampling["seconds_per_image"] is None and sampling["measured_runs"] == 0
        assert fresh.post("/sample", json={"model": "pixelcnn-tiny", "n": 2}).status_code == 200
        sampling = fresh.get("/models/pixelcnn-tiny").json()["sampling"]
        assert sampling["seconds_per_image"] > 0 and sampling["measured_runs"] == 1
        assert fresh.get("/models/vae-tiny").json()["sampling"] is None  # one decoder pass


def test_get_model_unknown_404(client: TestClient) -> None:
    response = client.get("/models/nope")
    assert response.status_code == 404
    assert response.json() == {
        "error": "model 'nope' not found (known models: ae-tiny, dcgan-tiny, pixelcnn-tiny, "
        "vae-tiny)",
        "code": "model_not_found",
    }


def test_sample_png_echoes_seed(client: TestClient) -> None:
    response = client.post("/sample", json={"model": "vae-tiny", "n": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "vae-tiny" and body["version"] == 1
    assert body["shape"] == [3, 1, 28, 28] and len(body["images"]) == 3
    assert isinstance(body["seed"], int)
    image = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
    assert image.size == (28, 28) and image.mode == "L"
    again = client.post("/sample", json={"model": "vae-tiny", "n": 1, "seed": body["seed"]})
    assert again.json()["images"][0] == body["images"][0]


def test_sample_array_format(client: TestClient) -> None:
    response = client.post("/sample", json={"model": "dcgan-tiny", "seed": 1, "format": "array"})
    images = np.asarray(response.json()["images"])
    assert images.shape == (1, 1, 28, 28) and 0.0 <= images.min() and images.max() <= 1.0


def test_sample_default_model(client: TestClient) -> None:
    assert client.post("/sample", json={}).json()["model"] == "dcgan-tiny"


def test_sample_png_grid_on_accept(client: TestClient) -> None:
    response = client.post(
        "/sample", json={"model": "vae-tiny", "n": 4, "seed": 3}, headers={"Accept": "image/png"}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["x-seed"] == "3" and response.headers["x-model"] == "vae-tiny"
    assert Image.open(io.BytesIO(response.content)).size == (58, 58)


def test_a_sampled_png_can_be_sent_back_to_encode(client: TestClient) -> None:
    png = client.post(
        "/sample", json={"model": "vae-tiny", "n": 1, "seed": 7}, headers={"Accept": "image/png"}
    ).content
    image = base64.b64encode(png).decode()
    response = client.post("/encode", json={"model": "vae-tiny", "images": [image]})
    assert response.status_code == 200, response.text


def test_sample_pixelcnn_with_temperature(client: TestClient) -> None:
    body = {"model": "pixelcnn-tiny", "n": 2, "seed": 4, "temperature": 0.5, "format": "array"}
    response = client.post("/sample", json=body)
    assert response.status_code == 200 and response.json()["seed"] == 4


def test_sample_gan_with_truncation(client: TestClient) -> None:
    response = client.post("/sample", json={"model": "dcgan-tiny", "n": 2, "truncation": 0.5})
    assert response.status_code == 200


def test_encode_vae_returns_mean_and_log_var(client: TestClient) -> None:
    response = client.post("/encode", json={"model": "vae-tiny", "images": [ZEROS, ZEROS]})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"model", "version", "mean", "log_var"}
    assert np.asarray(body["mean"]).shape == (2, 8)


def test_encode_autoencoder_returns_z(client: TestClient) -> None:
    body = client.post("/encode", json={"model": "ae-tiny", "images": [ZEROS]}).json()
    assert np.asarray(body["z"]).shape == (1, 8) and "mean" not in body


def test_reconstruct_returns_images_and_error(client: TestClient) -> None:
    response = client.post("/reconstruct", json={"model": "vae-tiny", "images": [ZEROS]})
    assert response.status_code == 200
    body = response.json()
    assert len(body["images"]) == 1 and len(body["error"]) == 1 and body["error"][0] >= 0.0


def test_interpolate_vae_images_slerp(client: TestClient) -> None:
    ones = np.ones((28, 28)).tolist()
    body = {
        "model": "vae-tiny",
        "start": {"image": ZEROS},
        "end": {"image": ones},
        "steps": 5,
        "method": "slerp",
    }
    response = client.post("/interpolate", json=body)
    assert response.status_code == 200
    assert response.json()["shape"] == [5, 1, 28, 28]
    assert np.asarray(response.json()["latents"]).shape == (5, 8)


def test_interpolate_gan_seed_start_matches_sample(client: TestClient) -> None:
    body = {"model": "dcgan-tiny", "start": {"seed": 11}, "end": {"latent": [0.0] * 8}}
    response = client.post("/interpolate", json={**body, "steps": 4})
    sampled = client.post("/sample", json={"model": "dcgan-tiny", "seed": 11}).json()
    assert response.json()["images"][0] == sampled["images"][0]


def test_health_live_and_ready(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["models"]["vae-tiny"] == {
        "state": "ready",
        "version": 1,
        "provider": "CPUExecutionProvider",
    }


def test_metrics_exposes_every_family(client: TestClient) -> None:
    client.post("/sample", json={"model": "vae-tiny", "n": 2})
    client.post("/sample", json={"model": "nope"})
    text = client.get("/metrics").text
    assert 'genserve_request_duration_seconds_bucket{le="0.0005",model="vae-tiny",' in text
    assert 'operation="sample",status="200"' in text and 'status="404"' in text
    assert 'genserve_onnx_run_seconds_count{graph="decoder",model="vae-tiny"}' in text
    assert 'genserve_images_total{model="vae-tiny",operation="sample"}' in text
    assert "genserve_requests_in_flight" in text
    assert 'genserve_model_ready{model="vae-tiny",version="1"} 1.0' in text
    assert (
        'genserve_provider_info{graph="encoder",model="vae-tiny",provider="CPUExecutionProvider"}'
        in text
    )


def test_two_apps_have_separate_metrics(tiny_store: Path) -> None:
    with TestClient(create_app(tiny_settings(tiny_store))) as a:
        with TestClient(create_app(tiny_settings(tiny_store))) as b:
            a.post("/sample", json={"model": "vae-tiny"})
            served = 'genserve_images_total{model="vae-tiny",operation="sample"}'
            assert f"{served} 1.0" in a.get("/metrics").text
            assert served not in b.get("/metrics").text


def test_openapi_documents_every_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path in ("/sample", "/encode", "/reconstruct", "/interpolate", "/models/{name}"):
        assert path in schema["paths"]
    assert "ErrorResponse" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_internal_error_hides_details(tiny_store: Path) -> None:
    app = create_app(tiny_settings(tiny_store))

    def broken(*args: object) -> None:
        raise RuntimeError("secret internal detail")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        app.state.registry.resolve = broken
        response = test_client.post("/sample", json={})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error", "code": "internal_error"}


@pytest.mark.parametrize("path", ["/sample", "/encode", "/reconstruct", "/interpolate"])
def test_operations_refuse_get_405(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 405
    expected = {"error": f"method GET not allowed on {path}", "code": "method_not_allowed"}
    assert response.json() == expected


def test_sample_without_body_uses_defaults(client: TestClient) -> None:
    response = client.post("/sample")
    assert response.status_code == 200 and response.json()["model"] == "dcgan-tiny"


def test_concurrent_pixelcnn_samples_queue_and_stay_reproducible(client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    body = {"model": "pixelcnn-tiny", "n": 1, "seed": 5}
    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: client.post("/sample", json=body), range(3)))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len({r.json()["images"][0] for r in responses}) == 1  # same seed, same image
