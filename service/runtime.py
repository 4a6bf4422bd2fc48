"""onnxruntime sessions: the one-off provider probe, session creation, warm-up and timed runs."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.errors import DeviceUnavailable, StoreError
from service.store import GraphSpec

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

# A one-node Identity graph (IR 9, opset 17) used only to ask ORT whether CUDA really works.
_PROBE_GRAPH = base64.b64decode(
    "CAkSCGdlbnNlcnZlOjsKEAoBeBIBeSIISWRlbnRpdHkSBXByb2JlWg8KAXgSCgoICAESBAoCCAFiDwoBeRIKCggIARIE"
    "CgIIAUIECgAQEQ=="
)

RunObserver = Callable[[str, str, float], None]
"""Called as observer(model, graph_role, seconds) after every run."""

_DTYPES = {"float32": np.float32, "int64": np.int64}


def choose_providers(device: str, log_severity: int = 3) -> list[str]:
    """Probe CUDA once, quietly, and return the provider list every session will be given.

    onnxruntime-gpu on a machine without CUDA logs an error for every session asking for CUDA and
    silently falls back to CPU, so the probe raises ORT's log severity and checks what it got.
    """
    if device == "cpu":
        ort.set_default_logger_severity(log_severity)
        return [CPU]
    cuda_works = False
    if CUDA in ort.get_available_providers():
        ort.set_default_logger_severity(4)
        options = ort.SessionOptions()
        options.log_severity_level = 4
        try:
            probe = ort.InferenceSession(_PROBE_GRAPH, options, providers=[CUDA, CPU])
            cuda_works = probe.get_providers()[0] == CUDA
        except Exception:  # any failure means "no CUDA"
            cuda_works = False
    ort.set_default_logger_severity(log_severity)
    if cuda_works:
        log.info("execution provider: %s", CUDA)
        return [CUDA, CPU]
    if device == "cuda":
        raise DeviceUnavailable("SERVICE_DEVICE=cuda but onnxruntime cannot use CUDA here")
    log.info("execution provider: %s (CUDA not usable on this machine)", CPU)
    return [CPU]


@dataclass
class Graph:
    """One ONNX graph of a model, in an onnxruntime session."""

    model: str
    role: str
    spec: GraphSpec
    session: ort.InferenceSession
    observer: RunObserver | None = None

    @property
    def provider(self) -> str:
        return str(self.session.get_providers()[0])

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.spec.outputs]
        start = time.perf_counter()
        outputs = self.session.run(names, feeds)
        if self.observer is not None:
            self.observer(self.model, self.role, time.perf_counter() - start)
        return {name: np.asarray(value) for name, value in zip(names, outputs, strict=True)}

    def warm_up(self, image_shape: tuple[int, int, int]) -> None:
        feeds = {}
        for tensor in self.spec.inputs:
            shape = [_concrete(d, i, image_shape) for i, d in enumerate(tensor.shape)]
            feeds[tensor.name] = np.zeros(shape, dtype=_DTYPES.get(tensor.dtype, np.float32))
        self.run(feeds)


def _concrete(dim: int, axis: int, image_shape: tuple[int, int, int]) -> int:
    if dim >= 0:
        return dim
    return 1 if axis == 0 else image_shape[axis - 1]


def open_graph(
    model: str,
    role: str,
    spec: GraphSpec,
    folder: Path,
    providers: list[str],
    intra_op_threads: int,
    log_severity: int,
    observer: RunObserver | None,
) -> Graph:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.log_severity_level = log_severity
    try:
        session = ort.InferenceSession(str(folder / spec.file), options, providers=providers)
    except Exception as exc:
        log.exception("%s: onnxruntime could not load %s", model, spec.file)
        raise StoreError(f"{model}: onnxruntime could not load {spec.file}") from exc
    _check_names(model, role, spec, session)
    return Graph(model, role, spec, session, observer)


def _check_names(model: str, role: str, spec: GraphSpec, session: ort.InferenceSession) -> None:
    actual_in = sorted(i.name for i in session.get_inputs())
    actual_out = {o.name for o in session.get_outputs()}
    card_in = sorted(t.name for t in spec.inputs)
    missing_out = [t.name for t in spec.outputs if t.name not in actual_out]
    if actual_in != card_in or missing_out:
        raise StoreError(
            f"{model}: graph {role!r} has inputs {actual_in} and outputs {sorted(actual_out)}, "
            f"the card says {card_in} and {[t.name for t in spec.outputs]}"
        )
