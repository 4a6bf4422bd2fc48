"""The real ``tritonclient[http]`` against ``python -m service`` on 127.0.0.1: health, metadata,
and inference in JSON and in binary mode, checked against the service's own API."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image
from tritonclient.utils import InferenceServerException

from harness.live_server import running_service

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_store_with_ae: Path) -> Iterator[str]:
    with running_service(
        tiny_store_with_ae, SERVICE_DEVICE="cpu", SERVICE_INTRA_OP_THREADS="1"
    ) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[triton.InferenceServerClient]:
    connection = triton.InferenceServerClient(server.removeprefix("http://"), network_timeout=60)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def api(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as own:
        yield own


def tensor(name: str, array: np.ndarray, binary: bool) -> triton.InferInput:
    datatype = {"float32": "FP32", "int64": "INT64"}[array.dtype.name]
    item = triton.InferInput(name, list(array.shape), datatype)
    item.set_data_from_numpy(array, binary_data=binary)
    return item


def wanted(*names: str, binary: bool) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=binary) for name in names]


def pixels(png: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png))))


def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "genserve" and "binary_tensor_data" in metadata["extensions"]
    assert client.is_model_ready("vae-tiny.decoder")
    assert client.is_model_ready("vae-tiny.decoder", "1")
    assert not client.is_model_ready("vae-tiny.decoder", "2")
    assert not client.is_model_ready("no-such-model.decoder")


def test_model_metadata(client: triton.InferenceServerClient) -> None:
    assert client.get_model_metadata("vae-tiny.decoder", "1") == {
        "name": "vae-tiny.decoder",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "z", "datatype": "FP32", "shape": [-1, 8]}],
        "outputs": [
            {"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]},
            {"name": "log_scale", "datatype": "FP32", "shape": [-1, 1, 28, 28]},
        ],
    }
    sample = client.get_model_metadata("dcgan-tiny.sample")
    assert [t["name"] for t in sample["inputs"]] == ["n", "seed", "truncation"]
    assert sample["outputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, 1, 28, 28]}]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_decoder_matches_interpolate_at_its_ends(
    client: triton.InferenceServerClient, api: httpx.Client, binary: bool
) -> None:
    z = np.random.default_rng(0).standard_normal((2, 8), dtype=np.float32)
    result = client.infer(
        "vae-tiny.decoder", [tensor("z", z, binary)], outputs=wanted("image", binary=binary)
    )
    image = result.as_numpy("image")
    assert image.shape == (2, 1, 28, 28) and image.dtype == np.float32
    assert result.as_numpy("log_scale") is None  # not asked for
    assert result.get_response()["model_version"] == "1"
    # Our own API decodes the same latents at the two ends of a lerp.
    ends = {"start": {"latent": z[0].tolist()}, "end": {"latent": z[1].tolist()}}
    body = {"model": "vae-tiny", **ends, "steps": 2, "method": "lerp", "format": "array"}
    ours = np.asarray(api.post("/interpolate", json=body).json()["images"], dtype=np.float32)
    np.testing.assert_allclose(image, ours, atol=1e-6)


def test_json_and_binary_modes_give_the_same_tensors(client: triton.InferenceServerClient) -> None:
    x = np.random.default_rng(1).random((3, 1, 28, 28), dtype=np.float32)
    as_json = client.infer("vae-tiny.encoder", [tensor("image", x, False)], outputs=None)
    as_binary = client.infer(
        "vae-tiny.encoder",
        [tensor("image", x, True)],
        model_version="1",
        outputs=wanted("mean", "log_var", binary=True),
    )
    for name in ("mean", "log_var"):
        np.testing.assert_array_equal(as_json.as_numpy(name), as_binary.as_numpy(name))


def test_concurrent_requests_each_get_their_own_rows(server: str) -> None:
    """Requests that the dynamic batcher may run together still get their own rows back."""
    latents = [np.full((rows, 8), rows / 10, np.float32) for rows in (1, 3, 2, 4, 1, 2, 3, 1)]
    alone = triton.InferenceServerClient(server.removeprefix("http://"))
    expected = [
        alone.infer("dcgan-tiny.generator", [tensor("z", z, True)]).as_numpy("image")
        for z in latents
    ]
    parallel = triton.InferenceServerClient(server.removeprefix("http://"), concurrency=8)
    pending = [
        parallel.async_infer("dcgan-tiny.generator", [tensor("z", z, True)]) for z in latents
    ]
    for request, want in zip(pending, expected, strict=True):
        np.testing.assert_allclose(request.get_result().as_numpy("image"), want, atol=1e-6)
    alone.close()
    parallel.close()


def test_encoder_matches_post_encode(
    client: triton.InferenceServerClient, api: httpx.Client
) -> None:
    x = np.random.default_rng(2).random((2, 1, 28, 28), dtype=np.float32)
    result = client.infer("vae-tiny.encoder", [tensor("image", x, True)])
    ours = api.post("/encode", json={"model": "vae-tiny", "images": x.tolist()}).json()
    np.testing.assert_allclose(result.as_numpy("mean"), ours["mean"], atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("log_var"), ours["log_var"], atol=1e-6)


@pytest.mark.parametrize(
    ("model", "knobs"),
    [
        ("vae-tiny", {}),
        ("dcgan-tiny", {"truncation": 0.7}),
        ("pixelcnn-tiny", {"temperature": 0.8}),
    ],
)
def test_sample_model_gives_the_pixels_of_post_sample(
    client: triton.InferenceServerClient, api: httpx.Client, model: str, knobs: dict[str, Any]
) -> None:
    inputs = [tensor("n", np.array([2]), False), tensor("seed", np.array([42]), True)]
    inputs += [tensor(k, np.array([v], np.float32), False) for k, v in knobs.items()]
    result = client.infer(f"{model}.sample", inputs, outputs=wanted("images", binary=True))
    images = result.as_numpy("images")
    assert images.dtype == np.uint8 and images.shape == (2, 1, 28, 28)
    assert result.get_response()["parameters"] == {"seed": 42}
    ours = api.post("/sample", json={"model": model, "n": 2, "seed": 42, **knobs}).json()
    np.testing.assert_array_equal(images[:, 0], [pixels(png) for png in ours["images"]])


def test_sample_without_a_seed_says_which_it_drew(client: triton.InferenceServerClient) -> None:
    first = client.infer("dcgan-tiny.sample", [tensor("n", np.array([1]), False)])
    seed = first.get_response()["parameters"]["seed"]
    again = client.infer(
        "dcgan-tiny.sample",
        [tensor("n", np.array([1]), True), tensor("seed", np.array([seed]), True)],
    )
    np.testing.assert_array_equal(first.as_numpy("images"), again.as_numpy("images"))


def test_reconstruct_model_matches_post_reconstruct(
    client: triton.InferenceServerClient, api: httpx.Client
) -> None:
    x = np.random.default_rng(3).random((2, 1, 28, 28), dtype=np.float32)
    result = client.infer("vae-tiny.reconstruct", [tensor("images", x, True)])
    body = {"model": "vae-tiny", "images": x.tolist(), "format": "array"}
    ours = api.post("/reconstruct", json=body).json()
    np.testing.assert_allclose(result.as_numpy("images"), ours["images"], atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("error"), ours["error"], rtol=1e-5)


def test_compressed_request(client: triton.InferenceServerClient) -> None:
    z = np.zeros((1, 8), np.float32)
    for algorithm in ("gzip", "deflate"):
        result = client.infer(
            "dcgan-tiny.generator",
            [tensor("z", z, True)],
            request_compression_algorithm=algorithm,
        )
        assert result.as_numpy("image").shape == (1, 1, 28, 28)


@pytest.mark.parametrize(
    ("model", "inputs", "status", "message"),
    [
        ("no-such.decoder", [("z", np.zeros((1, 8), np.float32))], "404", "not found"),
        ("vae-tiny.decoder", [("z", np.zeros((1, 8), np.int64))], "400", "datatype INT64"),
        ("vae-tiny.decoder", [("z", np.zeros((1, 9), np.float32))], "400", "does not fit"),
        ("vae-tiny.decoder", [("w", np.zeros((1, 8), np.float32))], "400", "no such input"),
        ("vae-tiny.sample", [("n", np.array([65]))], "400", "n: must be <= 64"),
        ("ae-tiny.sample", [("n", np.array([1]))], "404", "not found"),
    ],
)
def test_errors_reach_the_client_as_protocol_errors(
    client: triton.InferenceServerClient,
    model: str,
    inputs: list[tuple[str, np.ndarray]],
    status: str,
    message: str,
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.infer(model, [tensor(name, array, True) for name, array in inputs])
    assert raised.value.status() == status and message in raised.value.message()


def test_unknown_output_is_refused(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException, match="no such output"):
        client.infer(
            "vae-tiny.decoder",
            [tensor("z", np.zeros((1, 8), np.float32), False)],
            outputs=wanted("mean", binary=False),
        )


@pytest.fixture(scope="module")
def colour_server(tiny_store_rgb: Path) -> Iterator[str]:
    with running_service(tiny_store_rgb, SERVICE_DEVICE="cpu", SERVICE_INTRA_OP_THREADS="1") as url:
        yield url


@pytest.mark.parametrize(("model", "size"), [("dcgan-rgb-tiny", 28), ("vae-rgb-tiny", 32)])
def test_colour_models_infer_rgb_tensors_that_match_post_sample(
    colour_server: str, model: str, size: int
) -> None:
    connection = triton.InferenceServerClient(colour_server.removeprefix("http://"))
    try:
        inputs = [tensor("n", np.array([2]), True), tensor("seed", np.array([7]), True)]
        images = connection.infer(f"{model}.sample", inputs).as_numpy("images")
        metadata = connection.get_model_metadata(f"{model}.sample")
    finally:
        connection.close()
    assert images.dtype == np.uint8 and images.shape == (2, 3, size, size)
    assert metadata["outputs"][0]["shape"] == [-1, 3, size, size]
    with httpx.Client(base_url=colour_server, timeout=60) as own:
        ours = own.post("/sample", json={"model": model, "n": 2, "seed": 7}).json()["images"]
    rgb = [pixels(png) for png in ours]  # (H, W, 3) PNGs
    assert rgb[0].shape == (size, size, 3)
    np.testing.assert_array_equal(images.transpose(0, 2, 3, 1), rgb)
    assert (images[:, 0] != images[:, 1]).any(), "the channels differ: colour, not gray"
