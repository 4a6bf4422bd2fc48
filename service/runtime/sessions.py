"""onnxruntime sessions: the one-off provider probe, session creation, warm-up and timed runs."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from modelstore.card import CardGraph
from modelstore.errors import StoreError
from service.errors import DeviceUnavailable, ModelRunFailed
from service.runtime.batching import Batcher, BatchObserver, BatchPolicy, Finish

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
    spec: CardGraph
    session: ort.InferenceSession
    observer: RunObserver | None = None
    batcher: Batcher | None = None
    io_binding: bool | None = None
    """Bind inputs and outputs explicitly; None means "on CUDA", where it saves ORT's staging
    copies between host and device."""

    @property
    def provider(self) -> str:
        return str(self.session.get_providers()[0])

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One onnxruntime run, in the calling thread."""
        names = [o.name for o in self.spec.outputs]
        start = time.perf_counter()
        try:
            if self.io_binding or (self.io_binding is None and self.provider == CUDA):
                outputs = self._run_bound(names, feeds)
            else:
                outputs = self.session.run(names, feeds)
        except Exception as exc:
            log.exception("%s: graph %r failed at run time", self.model, self.role)
            raise ModelRunFailed(
                f"model {self.model!r} failed while running its {self.role}"
            ) from exc
        if self.observer is not None:
            self.observer(self.model, self.role, time.perf_counter() - start)
        return dict(zip(names, outputs, strict=True))

    def _run_bound(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        binding = self.session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for name in names:
            binding.bind_output(name, "cpu")  # written once, straight into host memory
        self.session.run_with_iobinding(binding)
        outputs: list[np.ndarray] = binding.copy_outputs_to_cpu()
        return outputs

    async def infer(self, feeds: dict[str, np.ndarray], finish: Finish | None = None) -> Any:
        """Run through the dynamic batcher, off the event loop; ``finish`` (if given) maps this
        request's outputs in the worker thread, and its result is returned."""
        if self.batcher is None:  # open_graph always gives one; a bare Graph has none
            raise RuntimeError(f"{self.model}: graph {self.role!r} has no batcher")
        return await self.batcher.submit(feeds, finish)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()

    def retire(self) -> None:
        """Replaced by another version: finish the queued requests, refuse none."""
        if self.batcher is not None:
            self.batcher.retire()

    @property
    def busy(self) -> bool:
        return self.batcher is not None and self.batcher.busy

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


@cache
def register_shared_cpu_arena() -> None:
    """One CPU memory arena in onnxruntime's environment, for every session of this process.
    With an arena per session, each kept the peak of its own largest batch: the whole store,
    after batches of 1 to 64, held 438 MiB against 141 MiB with one shared arena
    (bench/profiling.py arena-memory). It grows by powers of two (onnxruntime's default). Grown
    by what each allocation asked for, it split into many small regions that a bigger batch
    could not reuse: 152 MiB there, and the service's RSS grew 15 to 29% in
    bench/reliability.py's soak, against 5 to 8% (docs/reliability.md)."""
    memory = ort.OrtMemoryInfo(
        "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
    )
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg({"arena_extend_strategy": 0}))


@dataclass(frozen=True)
class SessionTuning:
    intra_op_threads: int = 0
    """0 lets onnxruntime choose (one per physical core)."""
    spinning: bool = False
    """Busy-wait threads between runs: faster alone, but they steal the cores that serve HTTP."""
    log_severity: int = 3

    def options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = 1
        # Memory reuse makes onnxruntime's allocation planner slow on a graph of thousands of
        # nodes (the PixelRNN's unrolled one: 6 s of the service's start-up, 0.3 s without);
        # runs were as fast and peak memory the same without it (docs/performance.md).
        options.enable_mem_reuse = False
        options.log_severity_level = self.log_severity
        spin = "1" if self.spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        register_shared_cpu_arena()
        options.add_session_config_entry("session.use_env_allocators", "1")
        return options


@dataclass(frozen=True)
class GraphOptions:
    """How a graph is opened and run: the providers (from ``choose_providers``), the session's
    tuning, its batcher's policy, and who observes its runs and batches."""

    providers: tuple[str, ...]
    tuning: SessionTuning
    batching: BatchPolicy
    runs: RunObserver | None = None
    batches: BatchObserver | None = None


def open_graph(
    model: str, role: str, spec: CardGraph, folder: Path, options: GraphOptions
) -> Graph:
    """An onnxruntime session for the graph file ``spec`` names under ``folder``, checked
    against the card's tensor names, with its batcher."""
    try:
        session = ort.InferenceSession(
            str(folder / spec.file), options.tuning.options(), providers=list(options.providers)
        )
    except Exception as exc:
        log.exception("%s: onnxruntime could not load %s", model, spec.file)
        raise StoreError(f"{model}: onnxruntime could not load {spec.file}") from exc
    _check_names(model, role, spec, session)
    graph = Graph(model, role, spec, session, options.runs)
    graph.batcher = Batcher(graph.run, options.batching, model, role, options.batches)
    return graph


def _check_names(model: str, role: str, spec: CardGraph, session: ort.InferenceSession) -> None:
    actual_in = sorted(i.name for i in session.get_inputs())
    actual_out = {o.name for o in session.get_outputs()}
    card_in = sorted(t.name for t in spec.inputs)
    missing_out = [t.name for t in spec.outputs if t.name not in actual_out]
    if actual_in != card_in or missing_out:
        raise StoreError(
            f"{model}: graph {role!r} has inputs {actual_in} and outputs {sorted(actual_out)}, "
            f"the card says {card_in} and {[t.name for t in spec.outputs]}"
        )
