"""The domain layer without HTTP: store, registry, operations, codec, likelihood."""

from __future__ import annotations

import base64
import functools
import io
import json
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from PIL import Image

from modelstore.checksums import verify_files
from modelstore.discovery import discover, read_card
from modelstore.errors import ChecksumMismatch, StoreError
from service.errors import (
    InvalidInput,
    LimitExceeded,
    ModelNotFound,
    ModelNotReady,
    UnsupportedOperation,
)
from service.generation import families
from service.generation import operations as ops
from service.generation.imaging import encode_images, grid_png, parse_image
from service.generation.likelihood import sample_pixel
from service.generation.specs import (
    EncodeSpec,
    Endpoint,
    InterpolateSpec,
    Limits,
    ReconstructSpec,
    SampleSpec,
)
from service.registry.families import Operation
from service.registry.registry import ModelState, Registry
from tests.conftest import load_registry, tiny_settings
from tests.support.tiny_store import copy_model

LIMITS = Limits(max_n=64, max_autoregressive_n=4, max_images=8)
OPERATIONS = ops.Operations(LIMITS)


def call(operation: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    """Run one async domain operation to completion, as a route would."""
    return anyio.run(functools.partial(operation, *args, **kwargs))


def sample(model: Any, n: int, seed: int, **knobs: Any) -> np.ndarray:
    images: np.ndarray = call(OPERATIONS.sample, model, SampleSpec(n, seed, **knobs)).payload
    return images


def interpolate(model: Any, start: Endpoint, end: Endpoint, steps: int, method: Any) -> Any:
    result = call(OPERATIONS.interpolate, model, InterpolateSpec(start, end, steps, method))
    return result.payload, result.arrays["latents"]


SHAPE = (1, 28, 28)


def _png(array: np.ndarray, mode: str = "L") -> str:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_store_discovers_highest_version(tmp_path: Path, tiny_store: Path) -> None:
    copy_model(tiny_store, "vae-tiny", tmp_path)
    for other in ("vae-tiny.v10.json", "vae-tiny.v2.json", "vae-tiny.vx.json"):
        shutil.copy(tmp_path / "vae-tiny.v1.json", tmp_path / other)
    [entry] = discover(tmp_path)
    assert entry.card_path == tmp_path / "vae-tiny.v10.json" and entry.folder == tmp_path


def test_card_parses_and_checksums_match(tiny_store: Path) -> None:
    for entry in discover(tiny_store):
        card = read_card(entry)
        verify_files(entry.folder, card)
        assert card.name == entry.name and card.image_shape == SHAPE


def test_checksum_mismatch_is_detected(tmp_path: Path, tiny_store: Path) -> None:
    copy_model(tiny_store, "dcgan-tiny", tmp_path)
    (tmp_path / "dcgan-tiny.generator" / "1" / "model.onnx").write_bytes(b"tampered")
    [entry] = discover(tmp_path)
    with pytest.raises(ChecksumMismatch, match="mismatch for dcgan-tiny.generator/1/model.onnx"):
        verify_files(entry.folder, read_card(entry))


def test_card_breaking_schema_is_a_store_error(tmp_path: Path, tiny_store: Path) -> None:
    copy_model(tiny_store, "vae-tiny", tmp_path)
    card_path = tmp_path / "vae-tiny.v1.json"
    card = json.loads(card_path.read_text())
    del card["image_shape"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(StoreError, match="image_shape"):
        read_card(discover(tmp_path)[0])


def test_registry_loads_every_family(registry: Registry) -> None:
    assert registry.ready
    assert set(registry.models) == {"ae-tiny", "dcgan-tiny", "pixelcnn-tiny", "vae-tiny"}
    assert all(m.provider == "CPUExecutionProvider" for m in registry.models.values())


def test_registry_default_is_first_capable_by_name(registry: Registry) -> None:
    assert registry.resolve(None, Operation.SAMPLE).name == "dcgan-tiny"
    assert registry.resolve(None, Operation.ENCODE).name == "ae-tiny"


def test_registry_configured_default_wins(tiny_store: Path) -> None:
    settings = tiny_settings(tiny_store, default_sample_model="pixelcnn-tiny", warmup=False)
    assert load_registry(settings).resolve(None, Operation.SAMPLE).name == "pixelcnn-tiny"


def test_registry_unknown_model(registry: Registry) -> None:
    with pytest.raises(ModelNotFound, match="'nope' not found"):
        registry.resolve("nope", Operation.SAMPLE)


def test_registry_wrong_operation_names_capable_models(registry: Registry) -> None:
    with pytest.raises(UnsupportedOperation, match="a GAN has no encoder.*ae-tiny, vae-tiny"):
        registry.resolve("dcgan-tiny", Operation.ENCODE)


def test_autoencoder_sample_refused_with_reason(registry: Registry) -> None:
    with pytest.raises(UnsupportedOperation, match="no prior to sample from"):
        registry.resolve("ae-tiny", Operation.SAMPLE)


def test_sample_row_i_does_not_depend_on_n(registry: Registry) -> None:
    for name in ("vae-tiny", "dcgan-tiny"):
        model = registry.get(name)
        four, one = sample(model, 4, 123), sample(model, 1, 123)
        np.testing.assert_array_equal(four[:1], one)
        assert four.shape == (4, *SHAPE) and 0.0 <= four.min() and four.max() <= 1.0
        assert not np.array_equal(four[0], sample(model, 1, 124)[0])


def test_truncation_keeps_latents_inside_and_is_stable() -> None:
    z = families.latents(7, 16, 8)
    t4, t2 = families.truncate(z, 7, 0.5), families.truncate(z[:2], 7, 0.5)
    assert np.abs(t4).max() <= 0.5
    np.testing.assert_array_equal(t4[:2], t2)


def test_truncation_only_for_gans(registry: Registry) -> None:
    sample(registry.get("dcgan-tiny"), 2, 1, truncation=0.7)
    with pytest.raises(InvalidInput, match="truncation: applies only to dcgan, wgan-gp"):
        sample(registry.get("vae-tiny"), 1, 1, truncation=0.7)


def test_pixelcnn_sample_is_reproducible_and_on_8bit_grid(registry: Registry) -> None:
    model = registry.get("pixelcnn-tiny")
    two = sample(model, 2, 9, temperature=0.8)
    np.testing.assert_array_equal(two[:1], sample(model, 1, 9, temperature=0.8))
    np.testing.assert_allclose(two * 255, np.round(two * 255), atol=1e-4)


def test_pixelcnn_uses_autoregressive_limit(registry: Registry) -> None:
    with pytest.raises(LimitExceeded, match="n: must be <= 4 for autoregressive model"):
        sample(registry.get("pixelcnn-tiny"), 5, 1)


def test_sample_n_limit(registry: Registry) -> None:
    with pytest.raises(LimitExceeded, match="n: must be <= 64"):
        sample(registry.get("vae-tiny"), 65, 1)


def test_encode_vae_and_autoencoder(registry: Registry) -> None:
    images = [np.full((28, 28), 0.5).tolist(), _png(np.zeros((28, 28), np.uint8))]
    vae = call(OPERATIONS.encode, registry.get("vae-tiny"), EncodeSpec(images)).payload
    assert set(vae) == {"mean", "log_var"} and vae["mean"].shape == (2, 8)
    assert set(call(OPERATIONS.encode, registry.get("ae-tiny"), EncodeSpec(images)).payload) == {
        "z"
    }


def test_reconstruct_error_is_mse(registry: Registry) -> None:
    image = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    done = call(OPERATIONS.reconstruct, registry.get("vae-tiny"), ReconstructSpec([image.tolist()]))
    recon, error = done.payload, done.arrays["error"]
    assert recon.shape == (1, *SHAPE)
    assert error[0] == pytest.approx(float(((recon[0, 0] - image) ** 2).mean()), rel=1e-5)


def test_too_many_images(registry: Registry) -> None:
    with pytest.raises(LimitExceeded, match="at most 8 images per request, got 9"):
        call(
            OPERATIONS.encode,
            registry.get("vae-tiny"),
            EncodeSpec([np.zeros((28, 28)).tolist()] * 9),
        )


def test_interpolate_seed_end_is_the_sampled_image(registry: Registry) -> None:
    for name in ("vae-tiny", "dcgan-tiny"):
        model = registry.get(name)
        start, end = Endpoint(seed=5), Endpoint(latent=[0.1] * 8)
        images, z = interpolate(model, start, end, 6, "slerp")
        assert images.shape == (6, *SHAPE) and z.shape == (6, 8)
        np.testing.assert_allclose(images[0], sample(model, 1, 5)[0], atol=1e-6)
        np.testing.assert_allclose(z[-1], [0.1] * 8, atol=1e-6)


def test_interpolate_vae_from_images(registry: Registry) -> None:
    images, z = interpolate(
        registry.get("vae-tiny"),
        Endpoint(image=np.zeros((28, 28)).tolist()),
        Endpoint(image=np.ones((28, 28)).tolist()),
        3,
        "lerp",
    )
    np.testing.assert_allclose(z[1], (z[0] + z[2]) / 2, atol=1e-6)


def test_interpolate_gan_from_image_refused(registry: Registry) -> None:
    with pytest.raises(UnsupportedOperation, match="has no encoder"):
        interpolate(
            registry.get("dcgan-tiny"),
            Endpoint(image=np.zeros((28, 28)).tolist()),
            Endpoint(seed=1),
            3,
            "lerp",
        )


def test_interpolate_latent_wrong_length(registry: Registry) -> None:
    with pytest.raises(InvalidInput, match="end.latent: expected 8 values"):
        interpolate(
            registry.get("vae-tiny"),
            Endpoint(seed=1),
            Endpoint(latent=[0.0]),
            3,
            "lerp",
        )


def test_slerp_keeps_norm_between_orthogonal_unit_vectors() -> None:
    a, b = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    z = ops.slerp(a, b, np.linspace(0, 1, 5, dtype=np.float32))
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-6)


def test_failed_model_is_not_ready(tmp_path: Path, tiny_store: Path) -> None:
    shutil.copytree(tiny_store, tmp_path / "store")
    (tmp_path / "store" / "vae-tiny.decoder" / "1" / "model.onnx").write_bytes(b"junk")
    registry = load_registry(tiny_settings(tmp_path / "store"))
    vae = registry.get("vae-tiny")
    assert vae.state is ModelState.FAILED and "sha256 mismatch" in (vae.reason or "")
    assert not registry.ready
    with pytest.raises(ModelNotReady):
        sample(vae, 1, 1)
    assert registry.resolve(None, Operation.SAMPLE).name == "dcgan-tiny"


def test_parse_image_converts_rgb_and_rgba() -> None:
    gray = np.full((28, 28), 100, np.uint8)
    rgb = np.stack([gray] * 3, axis=-1)
    rgba = np.concatenate([rgb, np.full((28, 28, 1), 255, np.uint8)], axis=-1)
    for item in (_png(gray), _png(rgb, "RGB"), _png(rgba, "RGBA"), (rgb / 255.0).tolist()):
        np.testing.assert_allclose(parse_image(item, SHAPE, "x"), 100 / 255, atol=1 / 255)


def test_parse_image_16_bit_png() -> None:
    pixels = np.full((28, 28), 30000, np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    item = base64.b64encode(buffer.getvalue()).decode()
    np.testing.assert_allclose(parse_image(item, SHAPE, "x"), 30000 / 65535, atol=1e-6)


def test_parse_image_refusals() -> None:
    cases = {
        "not valid base64": "***",
        "not a PNG image": base64.b64encode(b"GIF89a....").decode(),
        "image is 10x10, expected 28x28": _png(np.zeros((10, 10), np.uint8)),
        "shape [27, 28] is not an accepted image": np.zeros((27, 28)).tolist(),
        "contains NaN": [[float("nan")] * 28] * 28,
        "must lie in [0, 1]": np.full((28, 28), 2.0).tolist(),
        "not a rectangular array": [[0.0] * 28, [0.0]],
    }
    for message, item in cases.items():
        with pytest.raises(InvalidInput, match=message.replace("[", r"\[")):
            parse_image(item, SHAPE, "images[0]")


def test_png_round_trip_and_grid() -> None:
    image = np.round(np.random.default_rng(1).random(SHAPE) * 255) / 255
    [encoded] = encode_images(image[None].astype(np.float32), "png")
    np.testing.assert_allclose(parse_image(encoded, SHAPE, "x"), image, atol=1e-6)
    grid = Image.open(io.BytesIO(grid_png(np.zeros((5, *SHAPE), np.float32))))
    assert grid.size == (3 * 30 - 2, 2 * 30 - 2)  # 2 px between tiles, none around
    single = Image.open(io.BytesIO(grid_png(np.zeros((1, *SHAPE), np.float32))))
    assert single.size == (28, 28)
    assert base64.b64decode(encoded).startswith(b"\x89PNG")


def test_colour_images_convert_to_the_models_channels_and_back() -> None:
    rgb_shape = (3, 28, 28)
    rgb = np.random.default_rng(2).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    parsed = parse_image(_png(rgb, "RGB"), rgb_shape, "x")
    np.testing.assert_array_equal(np.rint(parsed * 255).astype(np.uint8), rgb.transpose(2, 0, 1))
    [encoded] = encode_images(parsed[None], "png")
    decoded = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert decoded.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(decoded), rgb)  # a lossless round trip
    gray = np.full((28, 28), 100, np.uint8)
    for item in (_png(gray), (gray / 255.0).tolist(), (gray[None] / 255.0).tolist()):
        as_rgb = parse_image(item, rgb_shape, "x")
        assert as_rgb.shape == rgb_shape
        np.testing.assert_allclose(as_rgb, 100 / 255, atol=1e-6)
    luma = parse_image(_png(rgb, "RGB"), SHAPE, "x")  # RGB to a grayscale model: Pillow's "L"
    expected = np.asarray(Image.fromarray(rgb, "RGB").convert("L"), np.float32) / 255
    np.testing.assert_allclose(luma[0], expected, atol=1 / 255)
    with pytest.raises(InvalidInput, match=r"expected \[3, 28, 28\] RGB"):
        parse_image(np.zeros((2, 28, 28)).tolist(), rgb_shape, "x")


def test_a_colour_grid_is_rgb_at_every_scale() -> None:
    images = np.random.default_rng(3).random((5, 3, 16, 16)).astype(np.float32)
    grid = Image.open(io.BytesIO(grid_png(images, columns=2, scale=3)))
    assert grid.mode == "RGB" and grid.size == (3 * (2 * 18 - 2), 3 * (3 * 18 - 2))
    pixels = np.asarray(grid)
    expected = np.rint(images[4] * 255).astype(np.uint8).transpose(1, 2, 0)
    np.testing.assert_array_equal(pixels[2 * 18 * 3 : 2 * 18 * 3 + 48 : 3, :48:3], expected)
    [single] = encode_images(images[:1], "png")
    assert Image.open(io.BytesIO(base64.b64decode(single))).mode == "RGB"


def test_sample_pixel_follows_the_mixture_weights_and_temperature() -> None:
    # Two sharp components at 0.2 and 0.8 with weights softmax([0, ln 3]) = [1/4, 3/4].
    # Temperature T divides the logits: at T = 0.5 the weights become [1/10, 9/10].
    params = np.array([[0.0, np.log(3.0), 0.2, 0.8, -10.0, -10.0]] * 20_000, np.float32)
    u = np.random.default_rng(0).random((20_000, 2))
    for temperature, share in [(1.0, 0.75), (0.5, 0.9), (1e-30, 1.0)]:
        x = sample_pixel(params, u, temperature, components=2)
        assert set(np.unique(np.round(x * 255)).tolist()) <= {51.0, 204.0}  # 0.2 and 0.8
        assert abs(float((x > 0.5).mean()) - share) < 0.01, temperature
