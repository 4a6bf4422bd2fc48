"""Reference samplers that tests and benches hold the serving samplers to. Nothing on the
serving path imports this module (tests/test_architecture.py checks it)."""

from __future__ import annotations

import numpy as np

from service.generation.autoregressive import components, pixel_noise, start, to_generate
from service.generation.likelihood import sample_pixel
from service.registry.registry import LoadedModel


def generate_naive(
    model: LoadedModel,
    x: np.ndarray,
    keep: np.ndarray,
    noise: np.ndarray,
    temperature: float = 1.0,
) -> np.ndarray:
    """One full pass of the pixel graph per generated pixel: what ``autoregressive.generate``
    must equal, pixel for pixel."""
    card = model.ready_card
    assert model.family is not None  # a ready model's family is served
    graph, k = model.family.pixel_graph_of(model.graphs), components(card)
    x = start(x, keep)
    for i, j in to_generate(keep):
        params = graph.run({"image": x})["params"]
        x[:, :, i, j] = sample_pixel(params[:, :, i, j], noise[:, i, j], temperature, k, x.shape[1])
    return x


def sample_naive(model: LoadedModel, n: int, seed: int, temperature: float = 1.0) -> np.ndarray:
    """``/sample``'s images for n and seed, drawn the naive way."""
    c, h, w = model.ready_card.image_shape
    empty = np.zeros((n, c, h, w), np.float32)
    nothing = np.zeros((h, w), dtype=bool)
    return generate_naive(model, empty, nothing, pixel_noise(seed, n, h, w, c), temperature)
