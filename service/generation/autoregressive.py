"""Pixel-by-pixel generation for the autoregressive families (pixelcnn, pixelrnn): sampling from
nothing and completing given pixels are one loop, over the pixels to generate in raster order.

Every pixel to generate gets its own uniforms (``pixel_noise``: one for the mixture component,
one per channel), so a row of the batch depends on its noise and its given pixels only, never
on the other rows. A colour pixel's channels are drawn in order, R, then G given R, then B given
R and G, from the one set of params the graph gives for the pixel (docs/model-store.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import anyio.to_thread
import numpy as np

from modelstore.card import ModelCard, RowStepSampler, WindowedSampler
from service.errors import Overloaded
from service.generation.likelihood import sample_pixel
from service.generation.specs import Limits
from service.registry.registry import LoadedModel
from service.runtime.batching import REQUEST_CLASS, class_by_size
from service.runtime.slots import Slots

T = TypeVar("T")
Progress = Callable[[int, int, np.ndarray], None]
"""Called in the sampling thread as (rows drawn, rows to draw, the (N, C, H, W) canvas)."""


def pixel_noise(seed: int, n: int, h: int, w: int, channels: int = 1) -> np.ndarray:
    """1 + C uniforms per pixel (component, then each channel's value); image i is the same
    whatever n is."""
    return np.random.default_rng(seed).random((n, h, w, 1 + channels))


class Stopped(Exception):
    """Raised in the sampling thread at a row's end once its ``RowWatch`` was stopped."""


@dataclass
class RowWatch:
    """What a pixel-by-pixel sampling reports, and obeys: that its request was checked and is
    about to wait for a slot (``on_accept``, on the event loop, with the rows it will draw), and
    at the end of each row, its progress (``on_row``, in the sampling thread) and a stop (the
    client went away, or the deadline passed)."""

    on_row: Progress | None = None
    on_accept: Callable[[int], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    rows_done: int = 0
    rows: int | None = None
    drawing_since: float | None = None
    """perf_counter() when the first row began (after the wait for a slot)."""

    def accepted(self, rows: int) -> None:
        self.rows = rows
        if self.on_accept is not None:
            self.on_accept(rows)

    def row_done(self, done: int, rows: int, canvas: np.ndarray) -> None:
        self.rows_done = done
        if self.stop.is_set():
            raise Stopped
        if self.on_row is not None:
            self.on_row(done, rows, canvas)


def rows_to_generate(keep: np.ndarray) -> int:
    """Rows with a pixel to draw: what a sampling's progress counts."""
    return int((~keep.all(axis=1)).sum())


def generate(
    model: LoadedModel,
    x: np.ndarray,
    keep: np.ndarray,
    noise: np.ndarray,
    temperature: float = 1.0,
    watch: RowWatch | None = None,
) -> np.ndarray:
    """Fill the pixels of ``x`` where ``keep`` is False, in raster order, with the card's exact
    fast sampler when it has one. ``watch`` hears of each row drawn, and can stop the drawing
    there (``Stopped``).

    x: (N, C, H, W) on the k/255 grid; keep: (H, W) bool, the same for every row; noise:
    (N, H, W, 1 + C). Returns a new array; kept pixels are returned unchanged.
    """
    card = model.ready_card
    x = start(x, keep)
    drawing = _Drawing(
        x, keep, noise, temperature, components(card), watch or RowWatch(), rows_to_generate(keep)
    )
    sampler = fast_sampler(model)
    if isinstance(sampler, WindowedSampler):
        return _generate_windowed(model, sampler, drawing)
    if isinstance(sampler, RowStepSampler):
        return _generate_row_steps(model, sampler, drawing)
    assert model.family is not None  # a ready model's family is served
    graph = model.family.pixel_graph_of(model.graphs)
    rows_vary = graph.spec.inputs[0].shape[2] == -1
    for i in np.flatnonzero(~keep.all(axis=1)):
        for j in np.flatnonzero(~keep[i]):
            # Row i depends on rows <= i only: where the graph allows it, run on those rows alone.
            image = np.ascontiguousarray(x[:, :, : i + 1]) if rows_vary else x
            drawing.draw(i, j, graph.run({"image": image})["params"][:, :, i, j])
        drawing.row_done()
    return x


@dataclass
class _Drawing:
    """One generation under way: the pixels of ``x`` where ``keep`` is False, each from its
    ``noise`` at ``temperature``; each finished row is told to ``watch``."""

    x: np.ndarray
    keep: np.ndarray
    noise: np.ndarray
    temperature: float
    components: int
    watch: RowWatch
    rows: int
    """Rows with a pixel to draw."""
    rows_done: int = 0

    def __post_init__(self) -> None:
        self.watch.drawing_since = time.perf_counter()

    def draw(self, i: int | np.integer[Any], j: int | np.integer[Any], params: np.ndarray) -> None:
        """Pixel (i, j) of every image, all its channels, from its mixture's ``params`` (N, P K)."""
        noise = self.noise[:, i, j]
        channels = self.x.shape[1]
        self.x[:, :, i, j] = sample_pixel(
            params, noise, self.temperature, self.components, channels
        )

    def row_done(self) -> None:
        self.rows_done += 1
        self.watch.row_done(self.rows_done, self.rows, self.x)


SamplerKind = Literal["windowed", "row_step", "naive"]

SAMPLER_GRAPHS = {"windowed": {"context", "row"}, "row_step": {"step"}}

METHODS: dict[SamplerKind, str] = {
    "windowed": "exact fast sampler: the context graph once per row, the row graph once per pixel",
    "row_step": "exact row steps: the step graph once per pixel, the rows above in its state",
    "naive": "one full pass of the model's graph per pixel (no fast sampler in this version)",
}


def fast_sampler(model: LoadedModel) -> WindowedSampler | RowStepSampler | None:
    """The card's exact fast sampler, when its graphs are open; None means the naive loop."""
    sampler = model.ready_card.sampler
    if sampler is not None and SAMPLER_GRAPHS[sampler.kind] <= model.graphs.keys():
        return sampler
    return None


def sampler_in_use(model: LoadedModel) -> SamplerKind:
    """``windowed``, ``row_step`` or ``naive``."""
    sampler = fast_sampler(model)
    return "naive" if sampler is None else sampler.kind


def _generate_windowed(
    model: LoadedModel, sampler: WindowedSampler, drawing: _Drawing
) -> np.ndarray:
    """The PixelCNN's context graph once per row, its row graph once per pixel, each on a window
    as large as the receptive field (docs/model-store.md): exact."""
    x, keep = drawing.x, drawing.keep
    rows, cols = sampler.context_rows, sampler.row_columns
    context, row = model.graphs["context"], model.graphs["row"]
    for i in np.flatnonzero(~keep.all(axis=1)):
        window = np.ascontiguousarray(x[:, :, max(0, i - rows + 1) : i + 1])
        links = context.run({"image": window})["links"]  # (N, L*2c, 1, W): row i's context
        for j in np.flatnonzero(~keep[i]):
            left = max(0, j - cols + 1)
            feeds = {
                "image": np.ascontiguousarray(x[:, :, i : i + 1, left : j + 1]),
                "links": np.ascontiguousarray(links[..., left : j + 1]),
            }
            drawing.draw(i, j, row.run(feeds)["params"][:, :, 0, -1])
        drawing.row_done()
    return x


def _generate_row_steps(
    model: LoadedModel, sampler: RowStepSampler, drawing: _Drawing
) -> np.ndarray:
    """The PixelRNN's step graph once per pixel to generate, on the image rows it reads and the
    Row LSTM state of the rows above (docs/model-store.md): exact.

    Column j's state depends on the row's pixels left of j, so a row's final state comes from
    a step that saw the whole row: the last pixel's step, when that pixel was generated (no
    column reads it), else one more step."""
    x, keep = drawing.x, drawing.keep
    step, rows = model.graphs["step"], sampler.window_rows
    n, _, height, width = x.shape
    (state_spec,) = (t for t in step.spec.inputs if t.name == "state")
    state = np.zeros((n, *state_spec.shape[1:]), dtype=np.float32)
    for i in range(height):
        window = x[:, :, max(0, i - rows + 1) : i + 1]
        todo = np.flatnonzero(~keep[i])
        out: dict[str, np.ndarray] = {}
        for j in todo:
            out = step.run({"image": np.ascontiguousarray(window), "state": state})
            drawing.draw(i, j, out["params"][:, :, 0, j])
        if todo.size:
            drawing.row_done()
        if i == height - 1:
            break
        if todo.size == 0 or todo[-1] != width - 1:
            out = step.run({"image": np.ascontiguousarray(window), "state": state})
        state = out["next_state"]
    return x


def start(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """A copy with every pixel to generate at 0, so what the client sent there cannot matter."""
    x = np.array(x, dtype=np.float32, copy=True)
    x[:, :, ~keep] = 0.0
    return x


def to_generate(keep: np.ndarray) -> list[tuple[int, int]]:
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(~keep), strict=True)]


def components(card: ModelCard) -> int:
    assert card.likelihood is not None  # the registry refuses an autoregressive card without
    return card.likelihood.components


async def run_watched(draw: Callable[[], T], watch: RowWatch) -> T:
    """``draw`` in a worker thread; if the waiting is cancelled (the client went away, or the
    deadline passed), the thread is told to stop at the end of its row, and the caller goes
    on at once (its slot is freed as it leaves ``turn``)."""
    try:
        return await anyio.to_thread.run_sync(draw, abandon_on_cancel=True)
    except BaseException:
        watch.stop.set()
        raise


@asynccontextmanager
async def turn(name: str, slots: Slots | None, limits: Limits, n: int) -> AsyncIterator[None]:
    """Wait for a free autoregressive slot in a bounded queue, for a bounded time, an
    interactive sampling of ``n`` images before bulk ones; Overloaded when the queue is full or
    the wait too long."""
    if slots is None:
        yield
        return
    waiting = slots.waiting
    if waiting >= limits.queue_limit:
        raise Overloaded(
            f"{name}: {waiting} autoregressive samplings are waiting; retry later",
            float(max(1, waiting)),
        )
    klass = REQUEST_CLASS.get() or class_by_size(n, limits.interactive_n)
    if not await slots.acquire(limits.queue_timeout or math.inf, klass):
        raise Overloaded(
            f"{name}: waited more than {limits.queue_timeout:g} s for an autoregressive "
            "sampling slot; retry later",
            float(max(1, slots.waiting)),
        )
    try:
        yield
    finally:
        slots.release()
