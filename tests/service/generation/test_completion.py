"""/complete's domain on a small real PixelCNN: the fast sampler resumed from given pixels gives
exactly what the naive loop gives, keeps the given pixels, and each completion is its seed's."""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from service.generation import autoregressive, completion  # noqa: E402
from service.generation.likelihood import quantize  # noqa: E402
from service.generation.operations import Operations  # noqa: E402
from service.generation.reference import generate_naive  # noqa: E402
from service.generation.specs import CompleteSpec, Given, Limits, SampleSpec  # noqa: E402
from service.registry.registry import LoadedModel  # noqa: E402
from tests.conftest import load_registry, tiny_settings  # noqa: E402
from training.export import export_checkpoint  # noqa: E402
from training.trainer import train  # noqa: E402

SMALL = {"channels": 8, "layers": 3, "mixture_components": 3, "batch_size": 32, "epochs": 1}
LIMITS = Limits(max_n=8, max_autoregressive_n=8)


@pytest.fixture(scope="module")
def pixelcnn(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    root = tmp_path_factory.mktemp("completion")
    ckpt = train("pixelcnn", "synthetic", root / "run", overrides=SMALL, limit=64, progress=False)
    export_checkpoint(
        ckpt, root / "store", "pixelcnn-small", metrics={"metrics": {}, "evaluation": {}}
    )
    model = load_registry(tiny_settings(root / "store")).get("pixelcnn-small")
    assert {"context", "row"} <= set(model.graphs)  # the fast path is the one under test
    return model


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 28, 28)).astype(np.float32)


def _complete(
    model: LoadedModel, x: np.ndarray, given: Given, samples: int = 1, seed: int = 0, **knobs: Any
) -> Any:
    async def run() -> Any:
        spec = CompleteSpec(list(x), given, samples, seed, **knobs)
        return (await Operations(LIMITS).complete(model, spec)).payload

    return anyio.run(run)


def _naive(model: LoadedModel, x: np.ndarray, keep: np.ndarray, samples: int, seed: int) -> Any:
    seeds = completion.completion_seeds(seed, samples)
    noise = np.concatenate([autoregressive.pixel_noise(s, 1, 28, 28) for s in seeds])
    starts = np.repeat(quantize(x), samples, axis=0)
    return generate_naive(model, starts, keep, np.tile(noise, (len(x), 1, 1, 1)))


def test_fast_completion_equals_the_naive_one_and_keeps_the_given_pixels(
    pixelcnn: LoadedModel,
) -> None:
    x = _images(2)
    mask = np.ones((28, 28), dtype=bool)
    mask[10:14, 3:20] = False  # a hole in the middle: kept pixels after it in raster order too
    mask[25:, :] = False
    for given, keep in (
        (Given(rows=22), np.arange(28)[:, None].repeat(28, 1) < 22),
        (Given(mask=mask.astype(float).tolist()), mask),
    ):
        fast = _complete(pixelcnn, x, given, samples=2, seed=9)
        np.testing.assert_array_equal(fast, _naive(pixelcnn, x, keep, 2, 9))
        kept = np.repeat(quantize(x), 2, axis=0)[:, 0][:, keep]
        np.testing.assert_array_equal(fast[:, 0][:, keep], kept)
        assert not np.array_equal(fast[0], fast[1])  # two samples of one image differ


def test_completion_i_is_its_seed_whatever_the_count(pixelcnn: LoadedModel) -> None:
    x = _images(1, seed=1)
    given = Given(rows=24)
    three = _complete(pixelcnn, x, given, samples=3, seed=40)
    np.testing.assert_array_equal(_complete(pixelcnn, x, given, samples=2, seed=40), three[:2])
    np.testing.assert_array_equal(_complete(pixelcnn, x, given, samples=1, seed=42), three[2:])


def test_completing_nothing_given_is_sampling(pixelcnn: LoadedModel) -> None:
    """rows = 0 keeps no pixel: completion 0 of seed s is /sample's image 0 of seed s."""

    async def sample() -> np.ndarray:
        images: np.ndarray = (await Operations(LIMITS).sample(pixelcnn, SampleSpec(1, 5))).payload
        return images

    completed = _complete(pixelcnn, _images(1), Given(rows=0), samples=1, seed=5)
    np.testing.assert_array_equal(completed, anyio.run(sample))
