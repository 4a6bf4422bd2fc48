"""Colour models end to end, on the RGB tiny store (vae-rgb-tiny (3, 32, 32), dcgan-rgb-tiny
(3, 28, 28)): RGB PNGs, grids and arrays at the card's size, RGB and gray input converted to the
model's channels, a wrong size refused with the shape expected, and the v2 tensors' shapes."""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.api.app import create_app
from tests.conftest import tiny_settings
from tests.support.api import ok
from tests.support.tiny_store import RGB_SHAPES, copy_model

PNG = {"Accept": "image/png"}
VAE, GAN = "vae-rgb-tiny", "dcgan-rgb-tiny"
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def rgb(tiny_store_rgb: Path) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_settings(tiny_store_rgb))) as client:
        yield client


def png_b64(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def opened(data: bytes | str) -> Image.Image:
    raw = base64.b64decode(data) if isinstance(data, str) else data
    return Image.open(io.BytesIO(raw))


def is_colour(pixels: np.ndarray) -> bool:
    """Some pixel whose channels differ: not gray written as RGB."""
    return bool(
        (pixels[..., 0] != pixels[..., 1]).any() or (pixels[..., 1] != pixels[..., 2]).any()
    )


def test_the_models_load_with_their_cards_shapes(rgb: TestClient) -> None:
    models = {m["name"]: m for m in rgb.get("/models").json()["models"]}
    assert {name: (m["state"], tuple(m["image_shape"])) for name, m in models.items()} == {
        name: ("ready", shape) for name, shape in RGB_SHAPES.items()
    }


@pytest.mark.parametrize("model", [VAE, GAN])
def test_sampled_pngs_are_rgb_at_the_models_size(rgb: TestClient, model: str) -> None:
    c, h, w = RGB_SHAPES[model]
    body = ok(rgb, "/sample", {"model": model, "n": 3, "seed": 4})
    assert body["shape"] == [3, c, h, w]
    for image in map(opened, body["images"]):
        assert (image.mode, image.size) == ("RGB", (w, h))
        assert is_colour(np.asarray(image))
    scaled = ok(rgb, "/sample", {"model": model, "n": 3, "seed": 4, "scale": 2})
    for small, large in zip(body["images"], scaled["images"], strict=True):
        np.testing.assert_array_equal(
            np.asarray(opened(large)), np.asarray(opened(small)).repeat(2, 0).repeat(2, 1)
        )


def test_array_format_gives_the_cards_channels(rgb: TestClient) -> None:
    body = ok(rgb, "/sample", {"model": VAE, "n": 2, "seed": 4, "format": "array"})
    images = np.asarray(body["images"])
    assert images.shape == (2, *RGB_SHAPES[VAE]) and body["shape"] == [2, 3, 32, 32]
    pngs = ok(rgb, "/sample", {"model": VAE, "n": 2, "seed": 4})["images"]
    as_png = np.stack([np.asarray(opened(p)) for p in pngs]).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(as_png, np.rint(images * 255).astype(np.uint8))


def test_a_png_grid_is_rgb_and_scale_and_columns_apply(rgb: TestClient) -> None:
    body = {"model": GAN, "n": 6, "seed": 1}
    plain = rgb.post("/sample", json=body, headers=PNG)
    assert plain.status_code == 200 and plain.headers["content-type"] == "image/png"
    grid = opened(plain.content)
    assert grid.mode == "RGB" and grid.size == (3 * 30 - 2, 2 * 30 - 2)  # 28 px tiles
    pixels = np.asarray(grid)
    assert is_colour(pixels)
    singles = ok(rgb, "/sample", body)["images"]
    np.testing.assert_array_equal(pixels[30:58, 60:88], np.asarray(opened(singles[5])))
    wide = rgb.post("/sample", json={**body, "columns": 6, "scale": 2}, headers=PNG)
    large = np.asarray(opened(wide.content))
    assert large.shape == (2 * 28, 2 * (6 * 30 - 2), 3)
    np.testing.assert_array_equal(large[::2, ::2][:, 30 * 5 :], np.asarray(opened(singles[5])))


def test_encode_and_reconstruct_take_rgb_and_convert_gray(rgb: TestClient) -> None:
    colour = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    gray = RNG.integers(0, 256, (32, 32), dtype=np.uint8)
    images = [png_b64(colour), png_b64(gray), png_b64(np.repeat(gray[..., None], 3, axis=2))]
    encoded = ok(rgb, "/encode", {"model": VAE, "images": images})
    mean = np.asarray(encoded["mean"])
    assert mean.shape == (3, 8)
    np.testing.assert_allclose(mean[1], mean[2], atol=1e-5)  # gray is RGB of three equal planes
    alpha = np.concatenate([colour, np.full((32, 32, 1), 7, np.uint8)], axis=2)
    from_rgba = ok(rgb, "/encode", {"model": VAE, "images": [png_b64(alpha)]})["mean"]
    np.testing.assert_allclose(from_rgba[0], mean[0], atol=1e-5)  # alpha is dropped
    nested = ok(rgb, "/encode", {"model": VAE, "images": [(colour / 255).tolist()]})["mean"]
    np.testing.assert_allclose(nested[0], mean[0], atol=1e-4)  # (H, W, 3) arrays too
    body = ok(rgb, "/reconstruct", {"model": VAE, "images": images, "scale": 2})
    assert len(body["error"]) == len(body["images"]) == 3
    for image in map(opened, body["images"]):
        assert (image.mode, image.size) == ("RGB", (64, 64))


@pytest.mark.parametrize("path", ["/encode", "/reconstruct", "/score"])
def test_a_wrong_size_is_refused_naming_the_expected_shape(rgb: TestClient, path: str) -> None:
    small = png_b64(RNG.integers(0, 256, (28, 28, 3), dtype=np.uint8))
    response = rgb.post(path, json={"model": VAE, "images": [small]})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_input"
    assert "expected 32x32 (shape [3, 32, 32])" in response.json()["error"]
    nested = rgb.post(path, json={"model": VAE, "images": [np.zeros((28, 28)).tolist()]})
    assert nested.status_code == 422 and "[3, 32, 32] RGB" in nested.json()["error"]


def test_interpolate_and_traverse_give_colour_at_the_models_size(rgb: TestClient) -> None:
    start = png_b64(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    body = {"model": VAE, "start": {"image": start}, "end": {"seed": 3}, "steps": 4}
    strip = ok(rgb, "/interpolate", body)
    assert strip["shape"] == [4, 3, 32, 32] and np.asarray(strip["latents"]).shape == (4, 8)
    assert all(opened(image).mode == "RGB" for image in strip["images"])
    seeds = {"model": GAN, "start": {"seed": 11}, "end": {"latent": [0.0] * 8}, "steps": 3}
    sampled = ok(rgb, "/sample", {"model": GAN, "seed": 11})
    assert ok(rgb, "/interpolate", seeds)["images"][0] == sampled["images"][0]
    traverse = {"model": VAE, "dim": 1, "steps": 5, "seed": 2}
    assert ok(rgb, "/traverse", traverse)["shape"] == [5, 3, 32, 32]
    grid = rgb.post("/traverse", json={**traverse, "columns": 5, "scale": 2}, headers=PNG)
    assert grid.status_code == 200
    image = opened(grid.content)
    assert image.mode == "RGB" and image.size == (2 * (5 * 34 - 2), 64)
    from_image = ok(rgb, "/traverse", {"model": VAE, "dim": 0, "steps": 2, "image": start})
    assert from_image["shape"] == [2, 3, 32, 32]


def test_scores_of_colour_images(rgb: TestClient) -> None:
    images = [png_b64(RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    body = ok(rgb, "/score", {"model": VAE, "images": images, "k": 4, "seed": 0})
    assert body["kind"] == "iwae" and len(body["bits_per_dim"]) == 2
    assert all(np.isfinite(body[key]).all() for key in ("bits_per_dim", "png_bits_per_dim"))


HEADER = "Inference-Header-Content-Length"


def infer(client: TestClient, model: str, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(f"/v2/models/{model}/infer", content=json.dumps({"inputs": inputs}))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_v2_metadata_and_tensors_have_the_cards_shape(rgb: TestClient) -> None:
    image = [-1, *RGB_SHAPES[VAE]]
    decoder = rgb.get(f"/v2/models/{VAE}.decoder").json()
    assert [o["shape"] for o in decoder["outputs"]] == [image, image]
    reconstruct = rgb.get(f"/v2/models/{VAE}.reconstruct").json()
    assert reconstruct["inputs"][0]["shape"] == image
    sample = rgb.get(f"/v2/models/{GAN}.sample").json()
    assert sample["outputs"][0]["shape"] == [-1, *RGB_SHAPES[GAN]]
    z = {"name": "z", "datatype": "FP32", "shape": [2, 8], "data": [0.1] * 16}
    (out, _) = infer(rgb, f"{VAE}.decoder", [z])["outputs"]
    assert out["name"] == "image" and out["shape"] == [2, 3, 32, 32]
    n = {"name": "n", "datatype": "INT64", "shape": [1], "data": [2]}
    seed = {"name": "seed", "datatype": "INT64", "shape": [1], "data": [5]}
    (drawn,) = infer(rgb, f"{GAN}.sample", [n, seed])["outputs"]
    assert drawn["datatype"] == "UINT8" and drawn["shape"] == [2, 3, 28, 28]
    pixels = np.asarray(drawn["data"], np.uint8).reshape(2, 3, 28, 28)
    pngs = ok(rgb, "/sample", {"model": GAN, "n": 2, "seed": 5})["images"]
    np.testing.assert_array_equal(pixels[1], np.asarray(opened(pngs[1])).transpose(2, 0, 1))
    x = {"name": "images", "datatype": "FP32", "shape": [1, 3, 32, 32], "data": [0.5] * 3072}
    outputs = {o["name"]: o for o in infer(rgb, f"{VAE}.reconstruct", [x])["outputs"]}
    assert outputs["images"]["shape"] == [1, 3, 32, 32] and outputs["error"]["shape"] == [1]
    gray = {**x, "shape": [1, 1, 32, 32], "data": [0.5] * 1024}
    refused = rgb.post(f"/v2/models/{VAE}.reconstruct/infer", json={"inputs": [gray]})
    assert refused.status_code == 400 and "[-1, 3, 32, 32]" in refused.json()["error"]


def test_a_pixel_card_whose_mixture_is_not_its_images_fails_and_the_others_serve(
    tmp_path: Path, tiny_store: Path, tiny_store_rgb: Path
) -> None:
    store = tmp_path / "store"
    copy_model(tiny_store, "pixelcnn-tiny", store)
    copy_model(tiny_store_rgb, VAE, store)
    card_path = next(store.glob("pixelcnn-tiny.v1.json"))
    card = json.loads(card_path.read_text())
    card["image_shape"] = [3, 28, 28]
    card_path.write_text(json.dumps(card))
    with TestClient(create_app(tiny_settings(store))) as client:
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert models[VAE]["state"] == "ready"
        assert models["pixelcnn-tiny"]["state"] == "failed"
        reason = models["pixelcnn-tiny"]["reason"]
        assert "likelihood.channels is 1, but its images have 3 channels" in reason
    shutil.rmtree(store)


@pytest.fixture(scope="module")
def rgb_pixel(tiny_store_rgb_pixel: Path) -> Iterator[TestClient]:
    settings = tiny_settings(tiny_store_rgb_pixel, max_autoregressive_n=4)
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_colour_pixel_model_samples_scores_and_completes(rgb_pixel: TestClient) -> None:
    """pixelcnn-rgb-tiny: RGB samples the naive sampler gives, exact scores that the numpy
    mixture gives, completions that keep the given rows and the unmasked pixels."""
    from service.generation.reference import sample_naive
    from tests.conftest import load_registry
    from tests.support.tiny_store import RGB_PIXEL_SHAPE

    name, (c, h, w) = "pixelcnn-rgb-tiny", RGB_PIXEL_SHAPE
    models = {m["name"]: m for m in rgb_pixel.get("/models").json()["models"]}
    assert models[name]["state"] == "ready" and models[name]["image_shape"] == [c, h, w]
    body = ok(rgb_pixel, "/sample", {"model": name, "n": 2, "seed": 4, "format": "array"})
    images = np.asarray(body["images"], dtype=np.float32)
    assert images.shape == (2, c, h, w) and is_colour(images.transpose(0, 2, 3, 1))
    model = load_registry(tiny_settings(rgb_pixel.app.state.settings.model_store)).get(name)
    np.testing.assert_array_equal(images, sample_naive(model, 2, 4))

    given = np.random.default_rng(0).random((c, h, w))
    scores = ok(rgb_pixel, "/score", {"model": name, "images": [given.tolist()]})
    assert scores["kind"] == "exact"
    bpd, log_p = np.array(scores["bits_per_dim"]), np.array(scores["log_likelihood"])
    np.testing.assert_allclose(bpd, -log_p / (c * h * w * np.log(2)))

    quantised = (np.round(given * 255) / 255).astype(np.float32)
    done = ok(rgb_pixel, "/complete", {"model": name, "images": [given.tolist()], "rows": 20,
                                       "seed": 2, "format": "array"})  # fmt: skip
    out = np.asarray(done["images"][0][0], dtype=np.float32)
    np.testing.assert_array_equal(out[:, :20], quantised[:, :20])
    assert not np.array_equal(out[:, 20:], quantised[:, 20:])
    mask = np.ones((h, w))
    mask[5:9, 5:9] = 0
    masked = ok(
        rgb_pixel,
        "/complete",
        {
            "model": name,
            "images": [given.tolist()],
            "mask": mask.tolist(),
            "seed": 3,
            "format": "array",
        },
    )
    out = np.asarray(masked["images"][0][0], dtype=np.float32)
    np.testing.assert_allclose(out[:, mask == 1], quantised[:, mask == 1], atol=1e-7)
    assert not np.allclose(out[:, 5:9, 5:9], quantised[:, 5:9, 5:9])
