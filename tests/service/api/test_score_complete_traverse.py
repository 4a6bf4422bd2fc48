"""/score, /complete and /traverse through the real app, on the tiny store: what they return,
what makes them reproducible, and a clear 4xx for every bad input."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.api.app import create_app
from tests.conftest import tiny_settings
from tests.support.api import BadCase, bad_cases, ok

H = W = 28
STRIPES = (np.indices((H, W))[1] % 4 / 3).tolist()
NOISE = np.random.default_rng(0).random((H, W)).tolist()


@pytest.fixture(scope="module")
def client(tiny_store_all: Path) -> Iterator[TestClient]:
    settings = tiny_settings(
        tiny_store_all, max_iwae_k=50, max_iwae_samples=100, max_autoregressive_n=6
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _pixels(png: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png))), dtype=np.float32) / 255


def test_models_list_the_new_operations(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/models").json()["models"]}
    assert {"score", "traverse"} <= set(models["vae-tiny"]["operations"])
    assert {"score", "traverse"} <= set(models["cvae-tiny"]["operations"])
    for name in ("pixelcnn-tiny", "pixelrnn-tiny"):
        assert models[name]["operations"] == ["complete", "sample", "score"]
    assert models["dcgan-tiny"]["operations"] == ["interpolate", "sample"]
    assert models["ae-tiny"]["operations"] == ["encode", "interpolate", "reconstruct"]


def test_score_is_exact_for_the_autoregressive_families(client: TestClient) -> None:
    for name in ("pixelcnn-tiny", "pixelrnn-tiny"):
        body = ok(client, "/score", {"model": name, "images": [STRIPES, NOISE]})
        assert body["kind"] == "exact" and "k" not in body and "seed" not in body
        bpd, log_p = np.array(body["bits_per_dim"]), np.array(body["log_likelihood"])
        assert bpd.shape == (2,) and (bpd > 0).all()
        np.testing.assert_allclose(bpd, -log_p / (H * W * math.log(2)))
        again = ok(client, "/score", {"model": name, "images": [NOISE]})["bits_per_dim"]
        assert again == pytest.approx(bpd[1:], rel=1e-12)


def test_score_reports_complexity_and_the_corrected_anomaly_score(client: TestClient) -> None:
    flat = np.zeros((H, W)).tolist()
    body = ok(client, "/score", {"model": "vae-tiny", "images": [flat, NOISE], "k": 4})
    png = np.array(body["png_bits_per_dim"])
    assert png[0] < 1 < 7 < png[1]  # a flat image compresses to almost nothing, noise does not
    expected = np.array(body["bits_per_dim"]) - png
    np.testing.assert_allclose(body["anomaly_score"], expected)


def test_score_quantises_the_input_to_8_bits(client: TestClient) -> None:
    on_grid = (np.round(np.array(NOISE) * 255) / 255).tolist()
    scores = [
        ok(client, "/score", {"model": "pixelcnn-tiny", "images": [x]})["bits_per_dim"]
        for x in (NOISE, on_grid)
    ]
    assert scores[0] == pytest.approx(scores[1], rel=1e-12)


def test_vae_score_is_the_iwae_bound_reproducible_by_its_seed(client: TestClient) -> None:
    body = ok(client, "/score", {"model": "vae-tiny", "images": [STRIPES, NOISE], "k": 20})
    assert body["kind"] == "iwae" and body["k"] == 20 and isinstance(body["seed"], int)
    again = ok(
        client, "/score", {"model": "vae-tiny", "images": [NOISE], "k": 20, "seed": body["seed"]}
    )
    assert again["bits_per_dim"] == pytest.approx(body["bits_per_dim"][1:], rel=1e-9)
    default_k = ok(client, "/score", {"model": "vae-tiny", "images": [NOISE], "seed": 1})
    assert default_k["k"] == 50  # the default, 100, capped by SERVICE_MAX_IWAE_K


def test_complete_keeps_the_given_rows_and_echoes_seeds(client: TestClient) -> None:
    body = ok(
        client,
        "/complete",
        {"model": "pixelcnn-tiny", "images": [NOISE, STRIPES], "rows": 20, "samples": 3,
         "seed": 7},
    )  # fmt: skip
    assert body["seeds"] == [7, 8, 9] and body["shape"] == [2, 3, 1, H, W]
    assert [len(row) for row in body["images"]] == [3, 3]
    for given, completions in zip((NOISE, STRIPES), body["images"], strict=True):
        quantised = np.round(np.array(given) * 255) / 255
        for png in completions:
            np.testing.assert_array_equal(_pixels(png)[:20], quantised[:20].astype(np.float32))
    # Completion 2 is seed 9's completion 0, whatever the count.
    alone = ok(
        client, "/complete", {"model": "pixelcnn-tiny", "images": [NOISE], "rows": 20, "seed": 9}
    )
    assert alone["seeds"] == [9] and alone["images"][0][0] == body["images"][0][2]


def test_complete_from_a_mask_and_on_a_pixelrnn(client: TestClient) -> None:
    mask = np.ones((H, W))
    mask[5:9, 5:9] = 0
    body = ok(
        client,
        "/complete",
        {"model": "pixelrnn-tiny", "images": [NOISE], "mask": mask.tolist(), "seed": 3,
         "format": "array", "temperature": 0.8},
    )  # fmt: skip
    out = np.array(body["images"][0][0])[0]
    quantised = np.round(np.array(NOISE) * 255) / 255
    np.testing.assert_allclose(out[mask == 1], quantised[mask == 1], atol=1e-7)
    assert not np.allclose(out[5:9, 5:9], quantised[5:9, 5:9])


def test_complete_with_nothing_given_is_sample(client: TestClient) -> None:
    done = ok(
        client, "/complete", {"model": "pixelrnn-tiny", "images": [NOISE], "rows": 0, "seed": 4}
    )
    sampled = ok(client, "/sample", {"model": "pixelrnn-tiny", "n": 1, "seed": 4})
    assert done["images"][0][0] == sampled["images"][0]


def test_traverse_varies_one_latent_dimension(client: TestClient) -> None:
    body = ok(client, "/traverse", {"model": "vae-tiny", "dim": 2, "steps": 5, "range": [-2, 2]})
    z = np.array(body["latents"])
    assert body["values"] == [-2.0, -1.0, 0.0, 1.0, 2.0] and z.shape == (5, 8)
    np.testing.assert_array_equal(z[:, 2], body["values"])
    np.testing.assert_array_equal(np.delete(z, 2, axis=1), np.delete(z, 2, axis=1)[[0] * 5])
    assert len(body["images"]) == 5 and body["shape"] == [5, 1, H, W]
    # The seed's base latent is row 0 of its latents: the /sample image of n = 1.
    seed = body["seed"]
    sampled = ok(client, "/interpolate", {"model": "vae-tiny", "start": {"seed": seed},
                                           "end": {"seed": seed}, "steps": 2})  # fmt: skip
    base = np.array(sampled["latents"][0])
    np.testing.assert_allclose(np.delete(z[0], 2), np.delete(base, 2), rtol=1e-6)


def test_traverse_from_an_image_or_a_latent(client: TestClient) -> None:
    by_image = ok(client, "/traverse", {"model": "vae-tiny", "dim": 0, "image": NOISE})
    assert "seed" not in by_image and len(by_image["images"]) == 8
    latent = [0.5] * 8
    by_latent = ok(client, "/traverse", {"model": "vae-tiny", "dim": 7, "latent": latent})
    assert by_latent["latents"][0][:7] == latent[:7]


def test_traverse_as_one_png_strip(client: TestClient) -> None:
    response = client.post(
        "/traverse",
        json={"model": "vae-tiny", "dim": 1, "steps": 6, "seed": 5},
        headers={"Accept": "image/png"},
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["x-seed"] == "5" and response.headers["x-model"] == "vae-tiny"
    strip = Image.open(io.BytesIO(response.content))
    assert strip.size == (6 * W + 5 * 2, H)
    json_body = ok(client, "/traverse", {"model": "vae-tiny", "dim": 1, "steps": 6, "seed": 5})
    np.testing.assert_array_equal(
        np.asarray(strip, dtype=np.float32)[:, :W] / 255, _pixels(json_body["images"][0])
    )


BAD: list[BadCase] = [
    # /score
    ("score_gan", "/score", {"model": "dcgan-tiny", "images": [NOISE]}, 422,
     "unsupported_operation", "cannot score: a GAN defines no likelihood"),
    ("score_autoencoder", "/score", {"model": "ae-tiny", "images": [NOISE]}, 422,
     "unsupported_operation", "a plain autoencoder defines no likelihood"),
    ("score_no_images", "/score", {"model": "vae-tiny", "images": []}, 422,
     "validation_error", "images: List should have at least 1 item"),
    ("score_k_too_large", "/score", {"model": "vae-tiny", "images": [NOISE], "k": 51}, 422,
     "limit_exceeded", "k: must be <= 50 (SERVICE_MAX_IWAE_K), got 51"),
    ("score_too_much_work", "/score", {"model": "vae-tiny", "images": [NOISE] * 3, "k": 50},
     422, "limit_exceeded", "images x k: at most 100 importance samples per request "
     "(SERVICE_MAX_IWAE_SAMPLES), got 3 x 50 = 150"),
    ("score_k_zero", "/score", {"model": "vae-tiny", "images": [NOISE], "k": 0}, 422,
     "validation_error", "k: Input should be greater than or equal to 1"),
    ("score_k_on_exact", "/score", {"model": "pixelcnn-tiny", "images": [NOISE], "k": 5}, 422,
     "invalid_input", "k: applies to the VAE families only; 'pixelcnn-tiny' is exact"),
    ("score_bad_image", "/score", {"model": "pixelcnn-tiny", "images": [[[2.0]]]}, 422,
     "invalid_input", "images[0]: pixel values must lie in [0, 1]"),
    ("score_too_many", "/score", {"model": "pixelcnn-tiny", "images": [NOISE] * 65}, 422,
     "limit_exceeded", "images: at most 64 images per request, got 65"),
    ("score_unknown_model", "/score", {"model": "nope", "images": [NOISE]}, 404,
     "model_not_found", "model 'nope' not found"),
    ("score_label_unconditional", "/score",
     {"model": "vae-tiny", "images": [NOISE], "label": 1}, 422,
     "invalid_input", "label: model 'vae-tiny' (vae) is not class-conditional"),
    # /complete
    ("complete_vae", "/complete", {"model": "vae-tiny", "images": [NOISE], "rows": 3}, 422,
     "unsupported_operation", "only an autoregressive model (pixelcnn, pixelrnn) completes"),
    ("complete_rows_and_mask", "/complete",
     {"model": "pixelcnn-tiny", "images": [NOISE], "rows": 3, "mask": NOISE}, 422,
     "validation_error", "give exactly one of rows or mask"),
    ("complete_neither", "/complete", {"model": "pixelcnn-tiny", "images": [NOISE]}, 422,
     "validation_error", "give exactly one of rows or mask"),
    ("complete_rows_too_many", "/complete",
     {"model": "pixelcnn-tiny", "images": [NOISE], "rows": 29}, 422,
     "invalid_input", "rows: must be 0 to 28 for model 'pixelcnn-tiny', got 29"),
    ("complete_rows_negative", "/complete",
     {"model": "pixelcnn-tiny", "images": [NOISE], "rows": -1}, 422,
     "validation_error", "rows: Input should be greater than or equal to 0"),
    ("complete_mask_not_binary", "/complete",
     {"model": "pixelcnn-tiny", "images": [NOISE], "mask": NOISE}, 422,
     "invalid_input", "mask: every value must be 0 (generate) or 1 (keep)"),
    ("complete_mask_shape", "/complete",
     {"model": "pixelcnn-tiny", "images": [NOISE], "mask": [[1, 0], [0, 1]]}, 422,
     "invalid_input", "mask: shape [2, 2] is not an accepted image"),
    ("complete_too_many", "/complete",
     {"model": "pixelcnn-tiny", "images": [NOISE] * 3, "rows": 1, "samples": 3}, 422,
     "limit_exceeded", "images x samples: at most 6 completions per request"),
    ("complete_samples_zero", "/complete",
     {"model": "pixelcnn-tiny", "images": [NOISE], "rows": 1, "samples": 0}, 422,
     "validation_error", "samples: Input should be greater than or equal to 1"),
    ("complete_temperature_zero", "/complete",
     {"model": "pixelcnn-tiny", "images": [NOISE], "rows": 1, "temperature": 0}, 422,
     "validation_error", "temperature: Input should be greater than 0"),
    # /traverse
    ("traverse_pixelcnn", "/traverse", {"model": "pixelcnn-tiny", "dim": 0}, 422,
     "unsupported_operation", "cannot traverse: it has no latent space"),
    ("traverse_gan", "/traverse", {"model": "dcgan-tiny", "dim": 0}, 422,
     "unsupported_operation", "latent traversal is served for the VAE families"),
    ("traverse_autoencoder", "/traverse", {"model": "ae-tiny", "dim": 0}, 422,
     "unsupported_operation", "a plain autoencoder has no prior"),
    ("traverse_no_dim", "/traverse", {"model": "vae-tiny"}, 422,
     "validation_error", "dim: Field required"),
    ("traverse_dim_too_large", "/traverse", {"model": "vae-tiny", "dim": 8}, 422,
     "invalid_input", "dim: must be 0 to 7 for model 'vae-tiny', got 8"),
    ("traverse_flat_range", "/traverse", {"model": "vae-tiny", "dim": 0, "range": [1, 1]}, 422,
     "invalid_input", "range: two different finite values expected"),
    ("traverse_range_huge", "/traverse", {"model": "vae-tiny", "dim": 0, "range": [0, 1e300]},
     422, "validation_error", "range[1]: Input should be less than or equal to 100"),
    ("traverse_range_length", "/traverse", {"model": "vae-tiny", "dim": 0, "range": [1]}, 422,
     "validation_error", "range[1]: Field required"),
    ("traverse_two_bases", "/traverse",
     {"model": "vae-tiny", "dim": 0, "seed": 1, "latent": [0] * 8}, 422,
     "validation_error", "give at most one of image, latent or seed"),
    ("traverse_latent_length", "/traverse", {"model": "vae-tiny", "dim": 0, "latent": [0] * 3},
     422, "invalid_input", "latent: expected 8 values for model 'vae-tiny', got 3"),
    ("traverse_steps", "/traverse", {"model": "vae-tiny", "dim": 0, "steps": 65}, 422,
     "validation_error", "steps: Input should be less than or equal to 64"),
    ("traverse_bad_image", "/traverse", {"model": "vae-tiny", "dim": 0, "image": "abc"}, 422,
     "invalid_input", "image: not valid base64"),
]  # fmt: skip


@bad_cases(BAD)
def test_bad_input(
    client: TestClient, path: str, body: dict[str, Any], status: int, code: str, message: str
) -> None:
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert message in response.json()["error"]
