"""The check both exact fast samplers (PixelCNN windows, PixelRNN row steps) must pass."""

from __future__ import annotations

import anyio
import numpy as np

from service import operations as ops
from service.registry import LoadedModel


def assert_fast_sampler_equals_naive(model: LoadedModel, n: int = 3) -> None:
    """The service's sampler returns the naive sampler's pixels, bit for bit, for two seeds and
    temperatures."""
    limits = ops.Limits(max_n=n, max_autoregressive_n=n)
    for seed, temperature in ((3, 1.0), (11, 0.7)):

        async def fast(seed: int = seed, temperature: float = temperature) -> np.ndarray:
            images: np.ndarray = await ops.sample(model, n, seed, limits, temperature)
            return images

        naive = ops.sample_naive(model, n, seed, temperature)
        np.testing.assert_array_equal(anyio.run(fast), naive)
        assert len(np.unique(naive)) > 10  # a real image, not a constant
