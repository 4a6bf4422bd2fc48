"""Pixel-by-pixel generation for the autoregressive families (pixelcnn, pixelrnn): sampling from
nothing and completing given pixels are one loop, over the pixels to generate in raster order.

Every pixel to generate gets its own two uniforms (``pixel_noise``), so a row of the batch
depends on its noise and its given pixels only, never on the other rows.
"""

from __future__ import annotations

import numpy as np

from service.families import FAMILIES
from service.likelihood import sample_pixel
from service.registry import LoadedModel
from service.store import ModelCard


def pixel_noise(seed: int, n: int, h: int, w: int) -> np.ndarray:
    """Two uniforms per pixel (component, then value); image i is the same whatever n is."""
    return np.random.default_rng(seed).random((n, h, w, 2))


def generate(
    model: LoadedModel,
    x: np.ndarray,
    keep: np.ndarray,
    noise: np.ndarray,
    temperature: float = 1.0,
) -> np.ndarray:
    """Fill the pixels of ``x`` where ``keep`` is False, in raster order, with the card's exact
    fast sampler when it has one.

    x: (N, 1, H, W) on the k/255 grid; keep: (H, W) bool, the same for every row; noise:
    (N, H, W, 2). Returns a new array; kept pixels are returned unchanged.
    """
    card = model.ready_card
    x = _start(x, keep)
    if card.sampler is not None and {"context", "row"} <= model.graphs.keys():
        return _generate_windowed(model, card, x, keep, noise, temperature)
    pixel_graph = FAMILIES[card.family].pixel_graph
    assert pixel_graph is not None
    graph = model.graphs[pixel_graph]
    k = _components(card)
    rows_vary = graph.spec.inputs[0].shape[2] == -1
    for i, j in _to_generate(keep):
        # Row i depends on rows <= i only: where the graph allows it, run on those rows alone.
        image = np.ascontiguousarray(x[:, :, : i + 1]) if rows_vary else x
        params = graph.run({"image": image})["params"]
        x[:, 0, i, j] = sample_pixel(params[:, :, i, j], noise[:, i, j], temperature, k)
    return x


def generate_naive(
    model: LoadedModel,
    x: np.ndarray,
    keep: np.ndarray,
    noise: np.ndarray,
    temperature: float = 1.0,
) -> np.ndarray:
    """One full pass of the pixel graph per generated pixel: the reference the fast sampler must
    equal (tests and bench/ use it; the service never does)."""
    card = model.ready_card
    pixel_graph = FAMILIES[card.family].pixel_graph
    assert pixel_graph is not None
    graph, k = model.graphs[pixel_graph], _components(card)
    x = _start(x, keep)
    for i, j in _to_generate(keep):
        params = graph.run({"image": x})["params"]
        x[:, 0, i, j] = sample_pixel(params[:, :, i, j], noise[:, i, j], temperature, k)
    return x


def _generate_windowed(
    model: LoadedModel,
    card: ModelCard,
    x: np.ndarray,
    keep: np.ndarray,
    noise: np.ndarray,
    temperature: float,
) -> np.ndarray:
    """The PixelCNN's context graph once per row, its row graph once per pixel, each on a window
    as large as the receptive field (docs/model-store.md): exact."""
    assert card.sampler is not None
    rows, cols = card.sampler.context_rows, card.sampler.row_columns
    context, row, k = model.graphs["context"], model.graphs["row"], _components(card)
    for i in np.flatnonzero(~keep.all(axis=1)):
        window = np.ascontiguousarray(x[:, :, max(0, i - rows + 1) : i + 1])
        links = context.run({"image": window})["links"]  # (N, L*2c, 1, W): row i's context
        for j in np.flatnonzero(~keep[i]):
            left = max(0, j - cols + 1)
            feeds = {
                "image": np.ascontiguousarray(x[:, :, i : i + 1, left : j + 1]),
                "links": np.ascontiguousarray(links[..., left : j + 1]),
            }
            params = row.run(feeds)["params"][:, :, 0, -1]
            x[:, 0, i, j] = sample_pixel(params, noise[:, i, j], temperature, k)
    return x


def _start(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """A copy with every pixel to generate at 0, so what the client sent there cannot matter."""
    x = np.array(x, dtype=np.float32, copy=True)
    x[:, :, ~keep] = 0.0
    return x


def _to_generate(keep: np.ndarray) -> list[tuple[int, int]]:
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(~keep), strict=True)]


def _components(card: ModelCard) -> int:
    assert card.likelihood is not None  # the registry refuses an autoregressive card without
    return card.likelihood.components
