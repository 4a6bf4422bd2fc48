"""Grayscale pixel models sample, complete and score bit for bit as they did before colour: the
digests below were taken with the code that served one channel only."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from service.generation import autoregressive
from service.generation.likelihood import mixture_log_prob
from tests.conftest import SHIPPED_STORE, load_registry, tiny_settings
from tests.support.tiny_store import write_pixelrnn

EXPECTED = {
    "pixelcnn-tiny": ("dc5d38baab640252", "a70908d1a01a305d",
                      [-6978.209545593463, -7043.552344472885]),
    "pixelrnn-tiny": ("f5f654ca016a3819", "1a407187adb657d2",
                      [-4943.72791233868, -4995.201159148504]),
    "pixelcnn-fashion": ("d268d75f57e83acc", "0b6818c87433986c",
                         [-4729.596158504159, -4723.602737012458]),
    "pixelrnn-fashion": ("10ab1555e5d6060f", "514fa9f5d8413a54",
                         [-4722.878076915826, -4737.885428898762]),
}  # fmt: skip
"""Per model: the digest of 2 images sampled at seed 7 and T = 0.8, of 2 completions below 14
given rows at seed 9, and the log-likelihoods of the 2 given images."""


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()[:16]


def _check(store: Path, name: str) -> None:
    model = load_registry(tiny_settings(store)).get(name)
    c, h, w = model.ready_card.image_shape
    assert c == 1
    keep = np.zeros((h, w), bool)
    empty = np.zeros((2, 1, h, w), np.float32)
    sampled = autoregressive.generate(
        model, empty, keep, autoregressive.pixel_noise(7, 2, h, w), 0.8
    )
    keep[:14] = True
    given = np.random.default_rng(1).integers(0, 256, (2, 1, h, w)).astype(np.float32) / 255
    completed = autoregressive.generate(model, given, keep, autoregressive.pixel_noise(9, 2, h, w))
    assert model.family is not None
    params = model.family.pixel_graph_of(model.graphs).run({"image": given})["params"]
    samples, completions, log_p = EXPECTED[name]
    assert (_digest(sampled), _digest(completed)) == (samples, completions)
    np.testing.assert_allclose(mixture_log_prob(given, params), log_p, rtol=1e-12)


def test_tiny_gray_pixel_models_are_unchanged(tiny_store: Path, tmp_path: Path) -> None:
    _check(tiny_store, "pixelcnn-tiny")
    write_pixelrnn(tmp_path)
    _check(tmp_path, "pixelrnn-tiny")


@pytest.mark.parametrize("name", ["pixelcnn-fashion", "pixelrnn-fashion"])
def test_shipped_gray_pixel_models_are_unchanged(name: str, tmp_path: Path) -> None:
    """The shipped versions the digests were taken with (v2 of both), alone in a store (on the
    pinned onnxruntime): old versions stay in the store and serve as they did."""
    from tests.support.tiny_store import copy_model

    if not (SHIPPED_STORE / f"{name}.v2.json").is_file():
        pytest.skip(f"{name} v2 is not in the shipped store")
    copy_model(SHIPPED_STORE, name, tmp_path, version=2)
    _check(tmp_path, name)
