"""The check both exact fast samplers (PixelCNN windows, PixelRNN row steps) must pass, and the
small trained models they are checked on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import numpy as np

from service.generation.operations import Operations
from service.generation.reference import sample_naive
from service.generation.specs import Limits, SampleSpec
from service.registry.registry import LoadedModel


def small_trained_store(root: Path, family: str, name: str, settings: dict[str, Any]) -> Path:
    """A store holding one small ``family`` model trained briefly on the synthetic set."""
    from training.export import export_checkpoint
    from training.trainer import train

    ckpt = train(family, "synthetic", root / "run", overrides=settings, limit=64, progress=False)
    export_checkpoint(ckpt, root / "store", name, metrics={"metrics": {}, "evaluation": {}})
    return root / "store"


def assert_fast_sampler_equals_naive(model: LoadedModel, n: int = 3) -> None:
    """The service's sampler returns the naive sampler's pixels, bit for bit, for two seeds and
    temperatures."""
    limits = Limits(max_n=n, max_autoregressive_n=n)
    for seed, temperature in ((3, 1.0), (11, 0.7)):

        async def fast(seed: int = seed, temperature: float = temperature) -> np.ndarray:
            images: np.ndarray = (
                await Operations(limits).sample(model, SampleSpec(n, seed, temperature))
            ).payload
            return images

        naive = sample_naive(model, n, seed, temperature)
        np.testing.assert_array_equal(anyio.run(fast), naive)
        assert len(np.unique(naive)) > 10  # a real image, not a constant
