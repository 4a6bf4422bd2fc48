"""A catalogue of bad requests: each gets its status, the one error shape, and a message that
says what is wrong."""

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
from tests.conftest import tiny_settings
from tests.support.api import BadCase, bad_cases

ZEROS = np.zeros((28, 28)).tolist()


def _png(size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def small_client(tiny_store_with_ae: Path) -> Iterator[TestClient]:
    settings = tiny_settings(tiny_store_with_ae, max_images=4, max_body_bytes=64 * 1024)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


# (id, path, json body or raw bytes, status, code, substring of "error")
CASES: list[BadCase] = [
    ("unknown_model", "/sample", {"model": "nope"}, 404, "model_not_found",
     "model 'nope' not found"),
    ("n_too_large", "/sample", {"model": "vae-tiny", "n": 65}, 422, "limit_exceeded",
     "n: must be <= 64"),
    ("n_too_large_autoregressive", "/sample", {"model": "pixelcnn-tiny", "n": 17}, 422,
     "limit_exceeded", "n: must be <= 16 for autoregressive model 'pixelcnn-tiny'"),
    ("n_zero", "/sample", {"n": 0}, 422, "validation_error",
     "n: Input should be greater than or equal to 1"),
    ("n_wrong_type", "/sample", {"n": "three"}, 422, "validation_error",
     "n: Input should be a valid integer"),
    ("unknown_format", "/sample", {"format": "jpeg"}, 422, "validation_error",
     "format: Input should be 'png' or 'array'"),
    ("unknown_field", "/sample", {"nn": 2}, 422, "validation_error",
     "nn: Extra inputs are not permitted"),
    ("negative_seed", "/sample", {"seed": -1}, 422, "validation_error",
     "seed: Input should be greater than or equal to 0"),
    ("truncation_on_vae", "/sample", {"model": "vae-tiny", "truncation": 0.5}, 422,
     "invalid_input", "truncation: applies only to dcgan, wgan-gp models; 'vae-tiny' is a vae"),
    ("temperature_on_gan", "/sample", {"model": "dcgan-tiny", "temperature": 0.5}, 422,
     "invalid_input", "temperature: applies only to pixelcnn, pixelrnn models"),
    ("sample_on_autoencoder", "/sample", {"model": "ae-tiny"}, 422, "unsupported_operation",
     "a plain autoencoder has no prior to sample from; models that can: dcgan-tiny, "
     "pixelcnn-tiny, vae-tiny"),
    ("encode_on_gan", "/encode", {"model": "dcgan-tiny", "images": [ZEROS]}, 422,
     "unsupported_operation", "a GAN has no encoder; models that can: ae-tiny, vae-tiny"),
    ("reconstruct_on_pixelcnn", "/reconstruct", {"model": "pixelcnn-tiny", "images": [ZEROS]},
     422, "unsupported_operation", "cannot reconstruct"),
    ("missing_images", "/encode", {"model": "vae-tiny"}, 422, "validation_error",
     "images: Field required"),
    ("empty_images", "/encode", {"images": []}, 422, "validation_error",
     "images: List should have at least 1 item"),
    ("too_many_images", "/encode", {"images": [ZEROS] * 5}, 422, "limit_exceeded",
     "images: at most 4 images per request, got 5"),
    ("wrong_shape", "/encode", {"images": [np.zeros((32, 32)).tolist()]}, 422,
     "invalid_input", "images[0]: shape [32, 32] is not an accepted image; expected [1, 28, 28]"),
    ("wrong_png_size", "/reconstruct", {"images": [_png((32, 28))]}, 422, "invalid_input",
     "images[0]: image is 32x28, expected 28x28"),
    ("bad_base64", "/encode", {"images": ["not base64!"]}, 422, "invalid_input",
     "images[0]: not valid base64"),
    ("not_png", "/encode", {"images": [base64.b64encode(b"hello world").decode()]}, 422,
     "invalid_input", "images[0]: not a PNG image"),
    ("truncated_png", "/encode", {"images": [base64.b64encode(
        base64.b64decode(_png((28, 28)))[:40]).decode()]}, 422, "invalid_input",
     "images[0]: PNG data is corrupt, truncated or unsupported"),
    ("nan_pixel", "/encode", b'{"images": [[[NaN' + b", 0.0" * 27 + b"]" + (
        b", [" + b", ".join([b"0.0"] * 28) + b"]") * 27 + b"]]}", 422, "invalid_input",
     "images[0]: contains NaN or infinite values"),
    ("integer_too_large_for_a_float", "/encode",
     {"model": "vae-tiny", "images": [[[10**400] + [0] * 27] + [[0] * 28] * 27]}, 422,
     "invalid_input", "images[0]: not a rectangular array of numbers"),
    ("pixel_out_of_range", "/encode", {"images": [np.full((28, 28), 255).tolist()]}, 422,
     "invalid_input", "images[0]: pixel values must lie in [0, 1]"),
    ("ragged_array", "/encode", {"images": [[[0.0] * 28, [0.0] * 3]]}, 422, "invalid_input",
     "images[0]: not a rectangular array of numbers"),
    ("image_wrong_type", "/encode", {"images": [42]}, 422, "validation_error",
     "images[0]: expected a base64 PNG string or a nested array of numbers"),
    ("steps_too_many", "/interpolate", {"start": {"seed": 1}, "end": {"seed": 2}, "steps": 65},
     422, "validation_error", "steps: Input should be less than or equal to 64"),
    ("steps_too_few", "/interpolate", {"start": {"seed": 1}, "end": {"seed": 2}, "steps": 1},
     422, "validation_error", "steps: Input should be greater than or equal to 2"),
    ("unknown_method", "/interpolate", {"start": {"seed": 1}, "end": {"seed": 2},
     "method": "cubic"}, 422, "validation_error", "method: Input should be 'lerp' or 'slerp'"),
    ("end_with_two_kinds", "/interpolate", {"start": {"seed": 1}, "end": {"seed": 2,
     "latent": [0.0]}}, 422, "validation_error", "end: give exactly one of image, latent or seed"),
    ("latent_wrong_length", "/interpolate", {"model": "vae-tiny", "start": {"seed": 1},
     "end": {"latent": [0.0, 1.0]}}, 422, "invalid_input",
     "end.latent: expected 8 values for model 'vae-tiny', got 2"),
    ("gan_image_endpoint", "/interpolate", {"model": "dcgan-tiny", "start": {"image": ZEROS},
     "end": {"seed": 2}}, 422, "unsupported_operation",
     "start.image: model 'dcgan-tiny' (dcgan) has no encoder"),
    ("autoencoder_seed_endpoint", "/interpolate", {"model": "ae-tiny", "start": {"seed": 1},
     "end": {"image": ZEROS}}, 422, "unsupported_operation", "has no prior, so a seed means"),
    ("invalid_json", "/sample", b'{"n": 2,', 422, "invalid_json", "body: invalid JSON"),
    ("json_not_an_object", "/sample", b"[1, 2]", 422, "validation_error",
     "body: Input should be a valid dictionary"),
    ("body_too_large", "/encode", {"images": [ZEROS] * 30}, 413, "payload_too_large",
     "request body exceeds the limit of 65536 bytes"),
    ("no_such_route", "/samples", {}, 404, "not_found", "no route POST /samples"),
]  # fmt: skip


@bad_cases(CASES)
def test_bad_input(
    small_client: TestClient, path: str, body: Any, status: int, code: str, message: str
) -> None:
    if isinstance(body, bytes):
        headers = {"content-type": "application/json"}
        response = small_client.post(path, content=body, headers=headers)
    else:
        response = small_client.post(path, json=body)
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["code"] == code
    assert message in payload["error"]
    assert set(payload) <= {"error", "code", "details"}
    assert "Traceback" not in response.text


def test_sample_unknown_model_404(small_client: TestClient) -> None:
    response = small_client.post("/sample", json={"model": "nope"})
    assert response.status_code == 404 and response.json()["code"] == "model_not_found"


def test_validation_error_lists_details(small_client: TestClient) -> None:
    response = small_client.post("/sample", json={"n": 0, "format": "gif"})
    payload = response.json()
    assert payload["error"].startswith("n: Input should be greater than or equal to 1; format:")
    assert [d["loc"] for d in payload["details"]] == [["body", "n"], ["body", "format"]]


def test_streamed_body_over_limit_413(small_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"images": ['
        for _ in range(40):
            yield json.dumps(ZEROS).encode() + b","
        yield b"[]]}"

    response = small_client.post(
        "/encode", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_lying_content_length_413(small_client: TestClient) -> None:
    response = small_client.post("/sample", content=b"{}", headers={"content-length": str(10**9)})
    assert response.status_code == 413
