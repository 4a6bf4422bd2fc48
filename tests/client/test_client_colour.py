"""The client and the ``genserve`` command with colour models, against a real ``python -m
service`` on the RGB tiny store (vae-rgb-tiny (3, 32, 32), dcgan-rgb-tiny (3, 28, 28)): images
come back (N, H, W, 3), grids are the service's RGB grids pixel for pixel, colour and gray
input of every kind goes out, and the command writes RGB files."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from genserve import Client, ValidationError
from genserve.images import decode_images, decode_pixels, encode_images, png_bytes, tile
from harness.live_server import running_service
from tests.support.cli import run_genserve

VAE, GAN = "vae-rgb-tiny", "dcgan-rgb-tiny"
RNG = np.random.default_rng(1)
COLOUR = RNG.random((2, 32, 32, 3)).astype(np.float32)
"""Two colour input images for vae-rgb-tiny, floats in [0, 1]."""


@pytest.fixture(scope="module")
def url(tiny_store_rgb: Path) -> Iterator[str]:
    with running_service(tiny_store_rgb, SERVICE_DEVICE="cpu") as u:
        yield u


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[Client]:
    with Client(url) as c:
        yield c


def server_png(url: str, path: str, body: dict[str, object]) -> np.ndarray:
    response = httpx.post(url + path, json=body, headers={"Accept": "image/png"}, timeout=60)
    response.raise_for_status()
    return np.asarray(Image.open(io.BytesIO(response.content)))


def b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_samples_come_back_rgb_channels_last_and_grid_as_the_service(
    client: Client, url: str
) -> None:
    result = client.sample(GAN, n=6, seed=3, columns=3)
    assert result.images.shape == (6, 28, 28, 3) and result.images.dtype == np.float32
    assert not result.images.flags.writeable
    raw = [np.asarray(Image.open(io.BytesIO(base64.b64decode(p)))) for p in result.raw["images"]]
    np.testing.assert_array_equal(np.rint(result.images * 255).astype(np.uint8), np.stack(raw))
    assert (result.images[..., 0] != result.images[..., 1]).any()  # colour, not gray as RGB
    grid = result.grid(scale=2)
    assert grid.mode == "RGB" and grid.size == (2 * (3 * 30 - 2), 2 * (2 * 30 - 2))
    body = {"model": GAN, "n": 6, "seed": 3, "columns": 3, "scale": 2}
    np.testing.assert_array_equal(np.asarray(grid), server_png(url, "/sample", body))
    assert [image.mode for image in result.pil()] == ["RGB"] * 6
    assert result.pil()[0].size == (28, 28)
    assert client.sample(VAE, n=2, scale=2).images.shape == (2, 64, 64, 3)


def test_colour_and_gray_input_of_every_kind_goes_out(client: Client, tmp_path: Path) -> None:
    pixels = np.rint(COLOUR[0] * 255).astype(np.uint8)
    path = tmp_path / "colour.png"
    Image.fromarray(pixels).save(path)
    alpha = np.concatenate([pixels, np.full((32, 32, 1), 9, np.uint8)], axis=2)
    forms = [COLOUR[0], COLOUR[:1], pixels, alpha, Image.fromarray(pixels), path, str(path)]
    forms += [Image.fromarray(alpha), path.read_bytes()]
    means = [client.encode(VAE, form).latents[0] for form in forms]
    for mean in means[1:]:
        np.testing.assert_allclose(mean, means[0], atol=1e-5)
    gray = np.rint(RNG.random((32, 32)) * 255).astype(np.uint8)
    as_rgb = client.encode(VAE, np.repeat(gray[..., None], 3, axis=2)).latents[0]
    for form in (gray, gray[None], Image.fromarray(gray)):  # the service makes gray RGB
        np.testing.assert_allclose(client.encode(VAE, form).latents[0], as_rgb, atol=1e-5)
    both = client.encode(VAE, [COLOUR, gray])
    assert both.latents.shape == (3, 8)


def test_reconstruct_interpolate_and_traverse_in_colour(client: Client, url: str) -> None:
    rebuilt = client.reconstruct(VAE, COLOUR, scale=2)
    assert rebuilt.images.shape == (2, 64, 64, 3) and rebuilt.error.shape == (2,)
    strip = client.interpolate(VAE, COLOUR[0], 4, steps=5)
    assert strip.images.shape == (5, 32, 32, 3) and strip.latents.shape == (5, 8)
    assert strip.grid().size == (5 * 34 - 2, 32) and strip.grid().mode == "RGB"
    walk = client.traverse(VAE, dim=2, steps=4, seed=7, columns=2)
    assert walk.images.shape == (4, 32, 32, 3)
    body = {"model": VAE, "dim": 2, "steps": 4, "seed": 7, "columns": 2}
    np.testing.assert_array_equal(np.asarray(walk.grid()), server_png(url, "/traverse", body))


def test_a_wrong_size_is_refused_naming_the_models_shape(client: Client) -> None:
    with pytest.raises(ValidationError, match=r"expected 32x32 \(shape \[3, 32, 32\]\)"):
        client.reconstruct(VAE, RNG.random((28, 28, 3)))


def test_colour_pngs_go_out_and_come_back() -> None:
    pixels = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    (sent,) = encode_images(pixels)
    with Image.open(io.BytesIO(base64.b64decode(sent))) as image:  # an RGB PNG
        assert image.mode == "RGB" and np.array_equal(np.asarray(image), pixels)
    assert np.array_equal(decode_pixels(sent, colour=None), pixels)  # the fast path
    assert np.array_equal(decode_pixels(sent, colour=True), pixels)
    gray = decode_pixels(sent)  # made grayscale unless asked, as before
    assert gray.shape == (5, 7)
    with Image.open(io.BytesIO(png_bytes(pixels))) as image:
        np.testing.assert_array_equal(np.asarray(image.convert("L")), gray)
    rgba = Image.fromarray(np.concatenate([pixels, np.zeros((5, 7, 1), np.uint8)], axis=2))
    for image in (rgba, Image.fromarray(pixels).convert("P")):  # Pillow's way, made RGB
        decoded = decode_pixels(b64_png(image), colour=None)
        assert decoded.shape == (5, 7, 3)
        np.testing.assert_array_equal(decoded, np.asarray(image.convert("RGB")))
    gray_png = b64_png(Image.fromarray(pixels[..., 0]))
    assert decode_pixels(gray_png, colour=None).shape == (5, 7)
    assert decode_pixels(gray_png, colour=True).shape == (5, 7, 3)
    mixed = decode_images([sent, gray_png])  # gray beside colour: made RGB
    assert mixed.shape == (2, 5, 7, 3)
    np.testing.assert_array_equal(mixed[1, ..., 2] * 255, pixels[..., 0])
    assert decode_images([gray_png, gray_png]).shape == (2, 5, 7)
    assert len(encode_images(np.zeros((4, 6, 6, 3), np.float32))) == 4
    assert len(encode_images(np.zeros((4, 6, 6, 4), np.uint8))) == 4  # alpha dropped
    grid = tile(mixed, columns=1, scale=2)
    assert grid.shape == (2 * (2 * 5 + 2), 2 * 7, 3) and grid.dtype == np.uint8


def test_the_command_writes_colour_images(url: str, tmp_path: Path) -> None:
    grid = tmp_path / "grid.png"
    args = ("sample", GAN, "-n", "4", "--seed", "2", "-o", str(grid), "--scale", "2")
    done = run_genserve(url, *args)
    assert done.returncode == 0, done.stderr
    assert f"{GAN} v1: 4 images 28x28, seed 2" in done.stdout
    with Image.open(grid) as written:
        assert written.mode == "RGB" and written.size == (2 * 58, 2 * 58)
        served = server_png(url, "/sample", {"model": GAN, "n": 4, "seed": 2, "scale": 2})
        np.testing.assert_array_equal(np.asarray(written), served)
    source, out = tmp_path / "in.jpg", tmp_path / "out.png"
    Image.fromarray(np.rint(COLOUR[1] * 255).astype(np.uint8)).save(source, quality=95)
    done = run_genserve(url, "reconstruct", VAE, str(source), "-o", str(out))
    assert done.returncode == 0, done.stderr
    with Image.open(out) as written:
        assert written.mode == "RGB" and written.size == (32, 32)
