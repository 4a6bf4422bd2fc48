"""The Open Inference Protocol domain without HTTP: tensors in and out, and the v2 models."""

from __future__ import annotations

import json

import anyio
import numpy as np
import pytest

from service.errors import InvalidInput, ModelNotFound
from service.generation.imaging import to_uint8
from service.generation.operations import Operations
from service.generation.specs import Limits, SampleSpec
from service.inference_protocol import models
from service.inference_protocol.schema import InferenceRequest
from service.inference_protocol.tensors import decode_request, encode_response, requested_outputs
from service.registry.registry import Registry

LIMITS = Limits(max_n=64, max_autoregressive_n=4, max_images=8)
OPERATIONS = Operations(LIMITS)


def test_binary_inputs_are_sliced_in_order_into_native_arrays() -> None:
    z = np.arange(6, dtype=np.float32).reshape(2, 3)
    label = np.array([3, 1], dtype=np.int64)
    header = json.dumps(
        {
            "inputs": [
                {"name": "z", "shape": [2, 3], "datatype": "FP32",
                 "parameters": {"binary_data_size": 24}},
                {"name": "label", "shape": [2], "datatype": "INT64",
                 "parameters": {"binary_data_size": 16}},
                {"name": "t", "shape": [1], "datatype": "FP64", "data": [0.5]},
            ]
        }
    ).encode()  # fmt: skip
    decoded = decode_request(header + z.tobytes() + label.tobytes(), str(len(header)))
    np.testing.assert_array_equal(decoded.tensors["z"], z)
    np.testing.assert_array_equal(decoded.tensors["label"], label)
    assert decoded.tensors["t"].dtype == np.float64 and decoded.tensors["z"].flags.writeable


def test_encoded_response_puts_binary_outputs_after_the_json_in_order() -> None:
    a, b = np.ones((2, 2), np.float32), np.arange(3, dtype=np.uint8)
    body, length = encode_response(
        {"model_name": "m", "model_version": "1"}, [("a", a, True), ("c", a, False), ("b", b, True)]
    )
    assert length is not None
    head = json.loads(body[:length])
    assert [o.get("parameters") for o in head["outputs"]] == [
        {"binary_data_size": 16}, None, {"binary_data_size": 3}
    ]  # fmt: skip
    assert head["outputs"][1]["data"] == [1.0] * 4 and head["outputs"][2]["datatype"] == "UINT8"
    assert body[length:] == a.tobytes() + b.tobytes()
    assert encode_response({"model_name": "m"}, [("c", a, False)])[1] is None


def test_non_finite_outputs_go_as_binary_only() -> None:
    bad = np.array([np.inf], np.float32)
    with pytest.raises(InvalidInput, match="ask for it with binary_data"):
        encode_response({}, [("x", bad, False)])
    body, length = encode_response({}, [("x", bad, True)])
    assert length is not None and body[length:] == bad.tobytes()


def test_binary_data_on_an_output_overrides_the_request_default() -> None:
    request = InferenceRequest.model_validate(
        {
            "parameters": {"binary_data_output": True},
            "inputs": [],
            "outputs": [{"name": "b", "parameters": {"binary_data": False}}, {"name": "a"}],
        }
    )
    assert requested_outputs(request, ["a", "b"]) == [("b", False), ("a", True)]
    request.outputs = None
    assert requested_outputs(request, ["a", "b"]) == [("a", True), ("b", True)]


def test_v2_models_of_each_family(registry: Registry) -> None:
    names = {name for m in registry.models.values() for name in models.v2_models(m)}
    assert names == {
        "ae-tiny.encoder", "ae-tiny.decoder", "ae-tiny.reconstruct",
        "dcgan-tiny.generator", "dcgan-tiny.sample",
        "pixelcnn-tiny.pixelcnn", "pixelcnn-tiny.sample",
        "vae-tiny.encoder", "vae-tiny.decoder", "vae-tiny.sample", "vae-tiny.reconstruct",
    }  # fmt: skip
    with pytest.raises(ModelNotFound, match="has no version '2'; it serves version 1"):
        models.find(registry, "vae-tiny.decoder", "2")
    with pytest.raises(ModelNotFound, match="'ae-tiny.sample' not found"):
        models.find(registry, "ae-tiny.sample")


def test_sample_model_is_post_sample_in_8_bits(registry: Registry) -> None:
    v2 = models.find(registry, "vae-tiny.sample")
    tensors = {"n": np.array([3]), "seed": np.array([5])}
    result = anyio.run(models.infer, v2, tensors, OPERATIONS)
    expected = anyio.run(OPERATIONS.sample, registry.get("vae-tiny"), SampleSpec(3, 5)).payload
    np.testing.assert_array_equal(result.outputs["images"], to_uint8(expected))
    assert result.parameters == {"seed": 5}


@pytest.mark.parametrize("length", ["²", "-1", "0", "9999", "1e3", " 12"])
def test_a_bad_header_length_is_invalid_input_not_a_crash(length: str) -> None:
    body = json.dumps({"inputs": []}).encode()
    with pytest.raises(InvalidInput, match="Inference-Header-Content-Length"):
        decode_request(body, length)
