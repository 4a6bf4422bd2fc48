"""Is a folder a Triton model repository whose configs agree with their ONNX graphs? Checked
with Triton's own schema: model_config.proto, as compiled in tritonclient."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
from google.protobuf import text_format
from onnx import TensorProto
from tritonclient.grpc import model_config_pb2

TRITON_TYPE_OF_ONNX = {
    TensorProto.FLOAT: "TYPE_FP32",
    TensorProto.FLOAT16: "TYPE_FP16",
    TensorProto.INT64: "TYPE_INT64",
    TensorProto.INT32: "TYPE_INT32",
    TensorProto.UINT8: "TYPE_UINT8",
    TensorProto.BOOL: "TYPE_BOOL",
}


def parse_config(path: Path) -> Any:
    """config.pbtxt as Triton parses it; an unknown field or a bad value raises ParseError."""
    return parse_config_text(path.read_text())


def parse_config_text(text: str) -> Any:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def check_repository(root: Path) -> list[str]:
    """Assert that every folder of ``root`` is a Triton model Triton would load, described by
    its config.pbtxt exactly as its newest ``model.onnx`` is; return the model names."""
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    assert folders, f"{root} holds no model"
    for folder in folders:
        config = parse_config(folder / "config.pbtxt")
        assert config.name == folder.name and config.platform == "onnxruntime_onnx"
        assert config.version_policy.latest.num_versions == 1  # the config is the newest's
        versions = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
        assert versions, f"{folder.name}: no version folder"
        newest = max(versions, key=lambda p: int(p.name))
        graph = onnx.load(str(newest / "model.onnx")).graph
        batched = config.max_batch_size > 0
        if batched:
            assert config.HasField("dynamic_batching"), folder.name
        initializers = {i.name for i in graph.initializer}
        inputs = [v for v in graph.input if v.name not in initializers]
        _check_tensors(folder.name, "input", config.input, inputs, batched)
        _check_tensors(folder.name, "output", config.output, list(graph.output), batched)
    return [folder.name for folder in folders]


def _check_tensors(model: str, kind: str, declared: Any, values: list[Any], batched: bool) -> None:
    assert [t.name for t in declared] == [v.name for v in values], f"{model}: {kind} names"
    for tensor, value in zip(declared, values, strict=True):
        where = f"{model}: {kind} {tensor.name}"
        kind_of = value.type.tensor_type
        expected_type = TRITON_TYPE_OF_ONNX[kind_of.elem_type]
        assert model_config_pb2.DataType.Name(tensor.data_type) == expected_type, where
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in kind_of.shape.dim]
        if batched:
            assert dims[0] == -1, f"{where}: batched, but the graph's batch axis is fixed"
            dims = dims[1:]
        if not dims:  # a per-row scalar: dims [1] reshaped to []
            assert list(tensor.dims) == [1] and list(tensor.reshape.shape) == [], where
        else:
            assert list(tensor.dims) == dims, f"{where}: dims {list(tensor.dims)}, graph {dims}"
