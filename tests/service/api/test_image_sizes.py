"""Images people can see: ``scale`` enlarges PNG outputs by nearest neighbour, ``columns`` shapes
PNG grids; both are refused where they cannot apply."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

PNG = {"Accept": "image/png"}


def _image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_a_scaled_grid_is_the_grid_with_every_pixel_a_square(client: TestClient) -> None:
    body = {"model": "dcgan-tiny", "n": 4, "seed": 3}
    plain = _image(client.post("/sample", json=body, headers=PNG).content)
    big = client.post("/sample", json={**body, "scale": 3}, headers=PNG)
    assert big.status_code == 200 and big.headers["x-seed"] == "3"
    large = _image(big.content)
    assert plain.shape == (58, 58) and large.shape == (174, 174)
    np.testing.assert_array_equal(large, plain.repeat(3, axis=0).repeat(3, axis=1))


def test_columns_shape_the_grid(client: TestClient) -> None:
    body = {"model": "dcgan-tiny", "n": 8, "seed": 1, "columns": 4, "scale": 2}
    grid = _image(client.post("/sample", json=body, headers=PNG).content)
    assert grid.shape == (2 * (2 * 30 - 2), 2 * (4 * 30 - 2))
    wide = _image(client.post("/sample", json={**body, "columns": 20}, headers=PNG).content)
    assert wide.shape == (2 * 28, 2 * (8 * 30 - 2))  # never more columns than images


def test_scaled_json_images_keep_their_pixels(client: TestClient) -> None:
    body = {"model": "vae-tiny", "n": 2, "seed": 5}
    plain = client.post("/sample", json=body).json()
    scaled = client.post("/sample", json={**body, "scale": 2}).json()
    assert scaled["shape"] == plain["shape"] == [2, 1, 28, 28]
    for small, large in zip(plain["images"], scaled["images"], strict=True):
        small_pixels = _image(base64.b64decode(small))
        np.testing.assert_array_equal(
            _image(base64.b64decode(large)), small_pixels.repeat(2, axis=0).repeat(2, axis=1)
        )


def test_a_scaled_reconstruction_reports_the_error_of_the_real_one(client: TestClient) -> None:
    image = np.random.default_rng(0).random((28, 28)).tolist()
    body = {"model": "vae-tiny", "images": [image]}
    plain = client.post("/reconstruct", json=body).json()
    scaled = client.post("/reconstruct", json={**body, "scale": 4}).json()
    assert scaled["error"] == plain["error"]
    assert _image(base64.b64decode(scaled["images"][0])).shape == (112, 112)


def test_a_traversal_strip_scales_and_wraps(client: TestClient) -> None:
    body = {"model": "vae-tiny", "dim": 1, "steps": 6, "seed": 2, "scale": 2}
    strip = _image(client.post("/traverse", json=body, headers=PNG).content)
    assert strip.shape == (56, 2 * (6 * 30 - 2))
    wrapped = _image(client.post("/traverse", json={**body, "columns": 3}, headers=PNG).content)
    assert wrapped.shape == (2 * (2 * 30 - 2), 2 * (3 * 30 - 2))


@pytest.mark.parametrize(
    ("path", "body", "headers", "expected"),
    [
        ("/sample", {"scale": 9}, PNG, "scale: Input should be less than or equal to 8"),
        ("/sample", {"scale": 0}, {}, "scale: Input should be greater than or equal to 1"),
        ("/sample", {"scale": 2, "format": "array"}, {}, "scale applies to PNG images"),
        ("/sample", {"columns": 4}, {}, "columns: applies to a PNG grid"),
        ("/traverse", {"dim": 0, "columns": 2}, {}, "columns: applies to a PNG grid"),
    ],
)
def test_sizes_that_cannot_apply_are_refused(
    client: TestClient, path: str, body: dict[str, object], headers: dict[str, str], expected: str
) -> None:
    response = client.post(path, json={"model": "vae-tiny", **body}, headers=headers)
    assert response.status_code == 422, response.text
    assert expected in response.json()["error"]
