"""Request and response tensors: JSON ``data`` (flat or nested) and the binary tensor data
extension (raw little-endian bytes after a JSON header of ``Inference-Header-Content-Length``
bytes), to and from numpy."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from service.errors import InvalidInput
from service.inference_protocol.schema import InferenceRequest, Parameters

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPES = {
    name: np.dtype(kind)
    for name, kind in (
        ("BOOL", "bool"), ("UINT8", "uint8"), ("UINT16", "uint16"), ("UINT32", "uint32"),
        ("UINT64", "uint64"), ("INT8", "int8"), ("INT16", "int16"), ("INT32", "int32"),
        ("INT64", "int64"), ("FP16", "float16"), ("FP32", "float32"), ("FP64", "float64"),
    )
}  # fmt: skip
"""Protocol datatype -> numpy. BYTES and BF16 are the protocol's too; no model here takes them."""
_JSON_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
"""numpy kinds that JSON ``data`` may parse to, per target kind: no floats into integers."""


def datatype_of(dtype: np.dtype[Any]) -> str:
    for name, candidate in DATATYPES.items():
        if candidate == dtype:
            return name
    raise ValueError(f"no protocol datatype for {dtype}")


def dtype_of(datatype: str, field: str) -> np.dtype[Any]:
    try:
        return DATATYPES[datatype]
    except KeyError:
        known = ", ".join(DATATYPES)
        raise InvalidInput(f"{field}: datatype {datatype!r} is not supported ({known})") from None


@dataclass(frozen=True)
class DecodedRequest:
    request: InferenceRequest
    tensors: dict[str, np.ndarray]


def decode_request(body: bytes, header_length: str | None) -> DecodedRequest:
    """Parse the JSON header and turn every input into an array of its declared shape."""
    header, binary = _split(body, header_length)
    try:
        request = InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        raise InvalidInput(_describe(exc)) from None
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for i, tensor in enumerate(request.inputs):
        field = f"inputs[{i}] ({tensor.name})"
        if tensor.name in tensors:
            raise InvalidInput(f"{field}: input {tensor.name!r} is given twice")
        _refuse_shared_memory(tensor.parameters, field)
        dtype = dtype_of(tensor.datatype, field)
        count = math.prod(tensor.shape)
        size = tensor.parameters.get("binary_data_size")
        if size is None:
            tensors[tensor.name] = _from_json(tensor.data, dtype, tensor.shape, field)
            continue
        if tensor.data is not None:
            raise InvalidInput(f"{field}: give either data or binary_data_size, not both")
        if not isinstance(size, int) or isinstance(size, bool) or size != count * dtype.itemsize:
            raise InvalidInput(
                f"{field}: binary_data_size must be {count * dtype.itemsize} "
                f"({count} x {tensor.datatype} for shape {tensor.shape}), got {size!r}"
            )
        if offset + size > len(binary):
            raise InvalidInput(
                f"{field}: needs {size} bytes of binary data, only {len(binary) - offset} left"
            )
        raw = np.frombuffer(binary, dtype.newbyteorder("<"), count, offset)
        tensors[tensor.name] = raw.astype(dtype).reshape(tensor.shape)  # a native, aligned copy
        offset += size
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data belong to no input")
    return DecodedRequest(request, tensors)


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    valid = header_length.isascii() and header_length.isdigit()
    if not valid or not 0 < int(header_length) <= len(body):
        raise InvalidInput(
            f"{HEADER_LENGTH}: must be the JSON header's length in bytes, 1 to {len(body)}; "
            f"got {header_length!r}"
        )
    return body[: int(header_length)], body[int(header_length) :]


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        if error["type"] == "json_invalid":
            return f"request: invalid JSON ({error.get('ctx', {}).get('error', 'cannot parse')})"
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        parts.append(f"{where.lstrip('.') or 'request'}: {error['msg']}")
    return "; ".join(parts)


def _refuse_shared_memory(parameters: Parameters, field: str) -> None:
    if "shared_memory_region" in parameters:
        raise InvalidInput(f"{field}: the shared-memory extension is not supported")


def _from_json(data: Any, dtype: np.dtype[Any], shape: list[int], field: str) -> np.ndarray:
    if data is None:
        raise InvalidInput(f"{field}: no data (give data, or binary_data_size and the bytes)")
    try:
        raw = np.asarray(data)
    except ValueError:
        raise InvalidInput(f"{field}: data is not a rectangular array") from None
    if raw.dtype.kind not in _JSON_KINDS[dtype.kind] and raw.size:
        wanted = {"b": "true/false", "i": "integers", "u": "integers", "f": "numbers"}
        raise InvalidInput(f"{field}: data must hold {wanted[dtype.kind]} for {datatype_of(dtype)}")
    if raw.size != math.prod(shape):
        raise InvalidInput(
            f"{field}: data has {raw.size} values, shape {shape} needs {math.prod(shape)}"
        )
    if dtype.kind in "iu" and raw.size:
        info = np.iinfo(dtype)
        if raw.min() < info.min or raw.max() > info.max:
            raise InvalidInput(f"{field}: values must lie in [{info.min}, {info.max}]")
    return raw.astype(dtype).reshape(shape)


def requested_outputs(request: InferenceRequest, available: list[str]) -> list[tuple[str, bool]]:
    """(name, as binary) for each output to return, in the order asked for."""
    default = _flag(request.parameters, "binary_data_output", "parameters")
    if request.outputs is None:
        return [(name, default) for name in available]
    chosen: list[tuple[str, bool]] = []
    for i, output in enumerate(request.outputs):
        field = f"outputs[{i}] ({output.name})"
        if output.name not in available:
            raise InvalidInput(f"{field}: no such output; the model has {available}")
        if any(name == output.name for name, _ in chosen):
            raise InvalidInput(f"{field}: output {output.name!r} is asked for twice")
        if "class_count" in output.parameters:
            raise InvalidInput(f"{field}: the classification extension is not supported")
        _refuse_shared_memory(output.parameters, field)
        binary = _flag(output.parameters, "binary_data", field, default)
        chosen.append((output.name, binary))
    return chosen


def _flag(parameters: Parameters, name: str, field: str, default: bool = False) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{field}.{name}: must be true or false, got {value!r}")
    return value


def encode_response(
    head: dict[str, Any], outputs: list[tuple[str, np.ndarray, bool]]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it.
    ``head`` holds the response's fields other than ``outputs``."""
    described, blobs = [], []
    for name, array, binary in outputs:
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(array.dtype),
            "shape": list(array.shape),
        }
        if binary:
            blob = np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise InvalidInput(
                    f"output {name!r} holds NaN or infinite values, which JSON cannot carry; "
                    "ask for it with binary_data"
                )
            entry["data"] = array.ravel().tolist()
        described.append(entry)
    header = json.dumps({**head, "outputs": described}, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
