"""/score's numbers against the training package's own: the numpy pixel likelihoods against
``training/nn.py``, the exact score against the PixelCNN's log_prob, the IWAE against
``VAE.iwae_log_prob``, on small models exported from real (short) training runs."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from service.generation import likelihood, operations, scoring  # noqa: E402
from service.generation.specs import Limits, ScoreSpec  # noqa: E402
from service.registry.registry import LoadedModel  # noqa: E402
from tests.conftest import load_registry, tiny_settings  # noqa: E402
from training import nn as train_nn  # noqa: E402
from training.checkpoints import load_checkpoint  # noqa: E402
from training.export import export_checkpoint  # noqa: E402
from training.trainer import train  # noqa: E402

_VAE = {"channels": 4, "latent_dim": 6, "batch_size": 32}
SMALL: dict[str, tuple[str, dict[str, Any]]] = {
    "pixelcnn": (
        "pixelcnn",
        {"channels": 8, "layers": 3, "mixture_components": 3, "batch_size": 32},
    ),
    "vae": ("vae", _VAE),
    "vaeflow": ("vae", {**_VAE, "prior": "flow", "flow_hidden": 16}),
}
LIMITS = Limits(max_images=16, max_iwae_k=64)


def _pixels(rng: np.random.Generator, n: int) -> np.ndarray:
    """Images on the 8-bit grid, with plenty of exact 0s and 1s (the stretched edge bins)."""
    k = rng.integers(0, 256, (n, 1, 28, 28))
    k[:, :, :4] = 0
    k[:, :, -4:] = 255
    return (k / 255.0).astype(np.float32)


def test_mixture_log_prob_equals_training() -> None:
    rng = np.random.default_rng(0)
    x = _pixels(rng, 3)
    params = rng.normal(0, 1, (3, 12, 28, 28)).astype(np.float32)  # K = 4
    params[:, 4:8] = rng.random((3, 4, 28, 28))  # means in [0, 1]
    params[:, 8:] = rng.uniform(-9, 0, (3, 4, 28, 28))  # below the clamp, and tiny bins
    ours = likelihood.mixture_log_prob(x, params)
    theirs = train_nn.mixture_log_prob(torch.from_numpy(x), torch.from_numpy(params)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def _colour_params(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """(n, 10k, 28, 28): logits, 3k means in [0, 1], 3k log-scales (some below the clamp), 3k
    coefficients in (-1, 1)."""
    params = rng.normal(0, 1, (n, 10 * k, 28, 28)).astype(np.float32)
    params[:, k : 4 * k] = rng.random((n, 3 * k, 28, 28))
    params[:, 4 * k : 7 * k] = rng.uniform(-9, 0, (n, 3 * k, 28, 28))
    params[:, 7 * k :] = np.tanh(params[:, 7 * k :])
    return params


def test_colour_mixture_log_prob_equals_training() -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([_pixels(rng, 3) for _ in range(3)], axis=1)  # (3, 3, 28, 28)
    params = _colour_params(rng, 3, 4)
    ours = likelihood.mixture_log_prob(x, params)
    theirs = train_nn.mixture_log_prob(torch.from_numpy(x), torch.from_numpy(params)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def test_colour_mixture_sums_to_one_over_every_colour() -> None:
    """R, G given R, B given R and G: the 256^3 colours of a pixel have probabilities that sum
    to one (summed R by R)."""
    rng = np.random.default_rng(6)
    params = _colour_params(rng, 1, 2)[:, :, :1, :1].astype(np.float64)
    values = np.arange(256) / 255.0
    g, b = np.meshgrid(values, values, indexing="ij")
    total, every = 0.0, np.broadcast_to(params, (g.size, 20, 1, 1))
    for r in values:
        x = np.stack([np.full(g.size, r), g.ravel(), b.ravel()], axis=1)[:, :, None, None]
        total += np.exp(likelihood.mixture_log_prob(x, every)).sum()
    assert total == pytest.approx(1.0, abs=1e-4)


def test_logistic_log_prob_equals_training() -> None:
    rng = np.random.default_rng(1)
    x = _pixels(rng, 3)
    mu = rng.random((3, 1, 28, 28)).astype(np.float32)
    log_scale = rng.uniform(-9, -1, (3, 1, 28, 28)).astype(np.float32)
    ours = likelihood.logistic_log_prob(x, mu, log_scale)
    theirs = train_nn.discretized_logistic_log_prob(
        torch.from_numpy(x), torch.from_numpy(mu), torch.from_numpy(log_scale)
    ).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)


def trained_store(
    root: Path, data: Any, runs: dict[str, tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    """Each run (name: family and config) trained one epoch on 64 images of ``data`` and
    exported to ``root/store``: their torch modules and the service's loaded models."""
    torch_models = {}
    for name, (family, config) in runs.items():
        ckpt = train(family, data, root / name, overrides={**config, "epochs": 1}, limit=64,
                     progress=False)  # fmt: skip
        export_checkpoint(ckpt, root / "store", name, metrics={"metrics": {}, "evaluation": {}})
        torch_models[name] = load_checkpoint(ckpt)[0]
    return {"torch": torch_models, "registry": load_registry(tiny_settings(root / "store"))}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A VAE and a PixelCNN, one short epoch each on 64 synthetic images, exported to a store:
    their torch modules and the service's loaded models."""
    root = tmp_path_factory.mktemp("scoring")
    runs = {f"{short}-small": (family, config) for short, (family, config) in SMALL.items()}
    yield trained_store(root, "synthetic", runs)


@pytest.fixture(scope="module")
def exported_rgb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A colour PixelCNN and PixelRNN, one short epoch each on 64 of one's own RGB images."""
    from tests.service.generation.test_samplers import rgb_synthetic

    root = tmp_path_factory.mktemp("scoring-rgb")
    config = {"channels": 8, "mixture_components": 3, "batch_size": 32}
    runs = {
        f"{family}-rgb": (family, {**config, "layers": layers})
        for family, layers in (("pixelcnn", 3), ("pixelrnn", 2))
    }
    yield trained_store(root, rgb_synthetic(root), runs)


@pytest.mark.parametrize("name", ["pixelcnn-rgb", "pixelrnn-rgb"])
def test_exact_score_equals_the_log_prob_in_colour(exported_rgb: dict[str, Any], name: str) -> None:
    rng = np.random.default_rng(7)
    x = np.concatenate([_pixels(rng, 4) for _ in range(3)], axis=1)  # (4, 3, 28, 28)
    scores = _score(exported_rgb["registry"].get(name), x, seed=0)
    with torch.no_grad():
        log_p = exported_rgb["torch"][name].log_prob(torch.from_numpy(x)).numpy()
    assert scores.kind == "exact"
    np.testing.assert_allclose(scores.log_likelihood, log_p, rtol=0, atol=0.03)  # nats, of ~12000
    np.testing.assert_allclose(scores.bits_per_dim, -log_p / (3 * 784 * math.log(2)), rtol=1e-4)


def _score(
    model: LoadedModel, x: np.ndarray, seed: int, k: int | None = None, label: Any = None
) -> scoring.Scores:
    async def run() -> scoring.Scores:
        return await operations.score(model, ScoreSpec(list(x), k, seed, label), seed, LIMITS)

    return anyio.run(run)


def test_exact_score_equals_the_pixelcnn_log_prob(exported: dict[str, Any]) -> None:
    x = _pixels(np.random.default_rng(2), 4)
    scores = _score(exported["registry"].get("pixelcnn-small"), x, seed=0)
    with torch.no_grad():
        log_p = exported["torch"]["pixelcnn-small"].log_prob(torch.from_numpy(x)).numpy()
    assert scores.kind == "exact" and scores.k is None
    np.testing.assert_allclose(scores.log_likelihood, log_p, rtol=0, atol=0.01)  # nats, of ~4000
    np.testing.assert_allclose(scores.bits_per_dim, -log_p / (784 * math.log(2)), rtol=1e-4)


@pytest.mark.parametrize("name", ["vae-small", "vaeflow-small"])
def test_iwae_equals_the_vae_own_with_the_same_noise(
    exported: dict[str, Any], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A flow prior too: the exported graphs' bound is the one the training code reports."""
    x = _pixels(np.random.default_rng(3), 5)
    k, seed = 7, 11
    scores = _score(exported["registry"].get(name), x, seed=seed, k=k)
    vae = exported["torch"][name]
    # The service gives every image the same k noise vectors, drawn from the seed: feed the
    # training code's loop the same ones, in order.
    eps = np.random.default_rng(seed).standard_normal((k, 6), dtype=np.float32)
    draws = iter(eps)
    monkeypatch.setattr(
        torch, "randn_like", lambda t: torch.from_numpy(next(draws)).expand_as(t).clone()
    )
    theirs = vae.iwae_log_prob(torch.from_numpy(x), None, k).numpy()
    assert scores.kind == "iwae" and scores.k == k and scores.seed == seed
    np.testing.assert_allclose(scores.log_likelihood, theirs, rtol=0, atol=0.01)


def test_iwae_is_reproducible_and_independent_of_the_batch(exported: dict[str, Any]) -> None:
    model = exported["registry"].get("vae-small")
    x = _pixels(np.random.default_rng(4), 4)
    batch = _score(model, x, seed=5, k=16).bits_per_dim
    alone = _score(model, x[2:3], seed=5, k=16).bits_per_dim
    np.testing.assert_allclose(alone, batch[2:3], rtol=1e-6)
    other_seed = _score(model, x, seed=6, k=16).bits_per_dim
    assert not np.allclose(batch, other_seed)
    # A tighter bound with more samples, on average: bits/dim goes down, never up by much.
    tight = _score(model, x, seed=5, k=64).bits_per_dim
    assert tight.mean() <= batch.mean() + 1e-3
