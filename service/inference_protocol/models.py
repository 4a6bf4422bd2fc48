"""The v2 models a registry exposes, their metadata, input checks, and runs.

Each graph of a ready model is a v2 model named ``<model>.<role>`` (``vae-fashion.decoder``),
tensor in, tensor out, as Triton would serve it from the same store. Two generative operations
map naturally onto tensors and are v2 models too:

- ``<model>.sample``: ``n`` and ``seed`` (INT64) in, UINT8 ``images`` out, the very pixels of
  ``POST /sample`` for that seed (the seed used comes back in the response's parameters);
- ``<model>.reconstruct``: FP32 ``images`` in [0, 1] in, FP32 ``images`` and ``error`` out,
  as ``POST /reconstruct``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from modelstore.card import TensorSpec
from service.errors import InvalidInput, ModelNotFound, ModelNotReady
from service.generation.imaging import to_uint8
from service.generation.operations import Operations
from service.generation.specs import Limits, ReconstructSpec, SampleSpec
from service.inference_protocol.schema import MetadataTensor, ModelMetadata
from service.inference_protocol.tensors import datatype_of
from service.registry.families import KNOB_BOUNDS, Operation, knob_accepts, knob_rule
from service.registry.registry import LoadedModel, ModelState, Registry
from service.runtime.sessions import Graph

ONNX_PLATFORM = "onnxruntime_onnx"
OPERATION_PLATFORM = "genserve"


class Kind(StrEnum):
    GRAPH = "graph"
    SAMPLE = "sample"
    RECONSTRUCT = "reconstruct"


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def batched(self) -> bool:
        return bool(self.shape) and self.shape[0] == -1


@dataclass(frozen=True)
class V2Model:
    name: str
    model: LoadedModel
    kind: Kind
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    optional: frozenset[str] = frozenset()
    role: str | None = None

    @property
    def version(self) -> str:
        return str(self.model.ready_card.version)

    @property
    def platform(self) -> str:
        return ONNX_PLATFORM if self.kind is Kind.GRAPH else OPERATION_PLATFORM

    def metadata(self) -> ModelMetadata:
        def described(tensors: tuple[Tensor, ...]) -> list[MetadataTensor]:
            return [
                MetadataTensor(name=t.name, datatype=t.datatype, shape=list(t.shape))
                for t in tensors
            ]

        return ModelMetadata(
            name=self.name,
            versions=[self.version],
            platform=self.platform,
            inputs=described(self.inputs),
            outputs=described(self.outputs),
        )


def v2_models(model: LoadedModel) -> dict[str, V2Model]:
    """The v2 models of one ready model: its loaded graphs, then its mapped operations."""
    card, family = model.ready_card, model.family
    assert family is not None  # a ready model's family is served
    found = {}
    for role, graph in model.graphs.items():
        name = f"{model.name}.{role}"
        found[name] = V2Model(
            name,
            model,
            Kind.GRAPH,
            _tensors(graph.spec.inputs),
            _tensors(graph.spec.outputs),
            role=role,
        )
    image = (-1, *card.image_shape)
    one = (1,)
    if Operation.SAMPLE in family.operations:
        extra = tuple(Tensor(name, datatype, one) for name, datatype in family.v2_sample_inputs())
        found[f"{model.name}.sample"] = V2Model(
            f"{model.name}.sample",
            model,
            Kind.SAMPLE,
            (Tensor("n", "INT64", one), Tensor("seed", "INT64", one), *extra),
            (Tensor("images", "UINT8", image),),
            optional=frozenset({"seed", "label", *family.knobs}),
        )
    if family.v2_reconstructs:
        found[f"{model.name}.reconstruct"] = V2Model(
            f"{model.name}.reconstruct",
            model,
            Kind.RECONSTRUCT,
            (Tensor("images", "FP32", image),),
            (Tensor("images", "FP32", image), Tensor("error", "FP32", (-1,))),
        )
    return found


def _tensors(specs: list[TensorSpec]) -> tuple[Tensor, ...]:
    return tuple(Tensor(t.name, datatype_of(np.dtype(t.dtype)), tuple(t.shape)) for t in specs)


def find(registry: Registry, name: str, version: str | None = None) -> V2Model:
    """The v2 model ``name``; ModelNotFound or ModelNotReady (saying why) otherwise."""
    base, _, suffix = name.partition(".")
    model = registry.models.get(base)
    found = None
    if model is not None:
        if model.state is ModelState.UNSUPPORTED:
            raise ModelNotFound(f"model {name!r} is not served: {model.reason}")
        if model.state is not ModelState.READY:
            if model.card is None or suffix in {*model.card.graphs, Kind.SAMPLE, Kind.RECONSTRUCT}:
                raise ModelNotReady(f"model {name!r} is not ready: {model.reason or model.state}")
        else:
            found = v2_models(model).get(name)
    if found is None:
        known = [
            n for m in registry.models.values() if m.state is ModelState.READY for n in v2_models(m)
        ]
        raise ModelNotFound(f"model {name!r} not found (v2 models: {', '.join(known) or 'none'})")
    if version is not None and version != found.version:
        raise ModelNotFound(
            f"model {name!r} has no version {version!r}; it serves version {found.version}"
        )
    return found


def check_inputs(v2: V2Model, tensors: dict[str, np.ndarray], limits: Limits) -> None:
    """Names, datatypes and shapes against the metadata, and at most ``max_images`` rows."""
    expected = {t.name: t for t in v2.inputs}
    for name in tensors:
        if name not in expected:
            raise InvalidInput(
                f"input {name!r}: {v2.name} has no such input; it takes {list(expected)}"
            )
    missing = [n for n in expected if n not in tensors and n not in v2.optional]
    if missing:
        raise InvalidInput(f"{v2.name} needs input(s) {missing}")
    rows = set()
    for name, array in tensors.items():
        spec = expected[name]
        given = datatype_of(array.dtype)
        if given != spec.datatype:
            raise InvalidInput(f"input {name!r}: datatype {given}, {v2.name} takes {spec.datatype}")
        fits = len(array.shape) == len(spec.shape) and all(
            want in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
        )
        if not fits:
            raise InvalidInput(
                f"input {name!r}: shape {list(array.shape)} does not fit {list(spec.shape)} "
                "(-1: any size)"
            )
        _check_dynamic_axes(v2, name, array.shape, spec.shape)
        if spec.batched:
            rows.add(array.shape[0])
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInput(f"input {name!r}: contains NaN or infinite values")
    if len(rows) > 1:
        raise InvalidInput(f"inputs disagree on the batch size: {sorted(rows)}")
    if rows and not 1 <= min(rows) <= max(rows) <= limits.max_images:
        raise InvalidInput(f"batch size must be 1 to {limits.max_images}, got {rows.pop()}")


def _check_dynamic_axes(
    v2: V2Model, name: str, shape: tuple[int, ...], spec: tuple[int, ...]
) -> None:
    """A varying axis of an image-shaped tensor (a PixelCNN's rows) is at most the image's."""
    image_shape = v2.model.ready_card.image_shape
    if len(spec) != 1 + len(image_shape):
        return
    for axis in range(1, len(spec)):
        if spec[axis] == -1 and not 1 <= shape[axis] <= image_shape[axis - 1]:
            raise InvalidInput(
                f"input {name!r}: axis {axis} must be 1 to {image_shape[axis - 1]}, "
                f"got {shape[axis]}"
            )


@dataclass(frozen=True)
class Inference:
    """What a v2 model's run gives: its outputs by name, and the response's parameters."""

    outputs: dict[str, np.ndarray]
    parameters: dict[str, Any]


async def infer(v2: V2Model, tensors: dict[str, np.ndarray], operations: Operations) -> Inference:
    check_inputs(v2, tensors, operations.limits)
    if v2.kind is Kind.GRAPH:
        assert v2.role is not None
        return Inference(await run_graph(v2.model.graphs[v2.role], tensors), {})
    if v2.kind is Kind.SAMPLE:
        return await _sample(v2, tensors, operations)
    done = await operations.reconstruct(v2.model, ReconstructSpec(list(tensors["images"])))
    images, error = done.payload.astype(np.float32), done.arrays["error"].astype(np.float32)
    return Inference({"images": images, "error": error}, {})


async def run_graph(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every v2 graph run goes through here: the graph's dynamic batcher and its metrics."""
    outputs: dict[str, np.ndarray] = await graph.infer(feeds)
    return outputs


async def _sample(v2: V2Model, tensors: dict[str, np.ndarray], operations: Operations) -> Inference:
    n = _scalar(tensors, "n")
    if n < 1:
        raise InvalidInput(f"input 'n': must be at least 1, got {n}")
    seed = _scalar(tensors, "seed") if "seed" in tensors else None
    if seed is not None and seed < 0:
        raise InvalidInput(f"input 'seed': must be at least 0, got {seed}")
    knobs = {}
    for knob in KNOB_BOUNDS:
        if knob in tensors:
            value = float(tensors[knob].reshape(-1)[0])
            if not knob_accepts(knob, value):
                raise InvalidInput(f"input {knob!r}: must be {knob_rule(knob)}, got {value}")
            knobs[knob] = value
    spec = SampleSpec(
        n=int(n),
        seed=None if seed is None else int(seed),
        temperature=knobs.get("temperature"),
        truncation=knobs.get("truncation"),
        label=_scalar(tensors, "label") if "label" in tensors else None,
    )
    done = await operations.sample(v2.model, spec, to_uint8)
    return Inference({"images": done.payload}, {"seed": done.seed})


def _scalar(tensors: dict[str, np.ndarray], name: str) -> int:
    return int(tensors[name].reshape(-1)[0])
