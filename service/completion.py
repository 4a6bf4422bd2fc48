"""Image completion for the autoregressive families: the pixels a client gives are kept exactly
(on the 8-bit grid), the others are drawn pixel by pixel in raster order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from service import autoregressive
from service.errors import InvalidInput, LimitExceeded
from service.families import Operation
from service.imaging import parse_image
from service.likelihood import quantize
from service.operations import (
    ImageFinish,
    Limits,
    autoregressive_turn,
    check_knob,
    parse_batch,
    ready,
)
from service.registry import LoadedModel
from service.store import ModelCard

SEEDS = 2**64


@dataclass(frozen=True)
class Given:
    """Which pixels a client gives: exactly one of the top ``rows``, or a ``mask`` image
    (1 = keep, 0 = generate)."""

    rows: int | None = None
    mask: Any = None


def completion_seeds(seed: int, samples: int) -> list[int]:
    """Completion i draws its pixels from seed + i alone: the same whatever ``samples`` is, and
    the same as completion 0 of a request with that seed."""
    return [(seed + i) % SEEDS for i in range(samples)]


async def complete(
    model: LoadedModel,
    images: Sequence[Any],
    given: Given,
    samples: int,
    seed: int,
    limits: Limits,
    temperature: float | None = None,
    finish: ImageFinish = lambda images: images,
    autoregressive_limiter: anyio.CapacityLimiter | None = None,
) -> Any:
    """(B x samples, C, H, W) completions, image-major (the samples of image 0 first), through
    ``finish``. Completion i of every image uses seed + i (``completion_seeds``)."""
    card, family = ready(model, Operation.COMPLETE)
    check_knob(card, family, "temperature", temperature)
    count = len(images) * samples
    if count > limits.max_autoregressive_n:
        raise LimitExceeded(
            f"images x samples: at most {limits.max_autoregressive_n} completions per request "
            f"for autoregressive model {card.name!r}, got {len(images)} x {samples} = {count}"
        )
    x = quantize(await anyio.to_thread.run_sync(parse_batch, card, images, limits))
    keep = await anyio.to_thread.run_sync(kept_pixels, card, given)
    _, h, w = card.image_shape
    noise = np.concatenate(
        [autoregressive.pixel_noise(s, 1, h, w) for s in completion_seeds(seed, samples)]
    )
    starts = np.repeat(x, samples, axis=0)  # (B S, 1, H, W)

    def draw() -> Any:
        filled = autoregressive.generate(
            model, starts, keep, np.tile(noise, (len(x), 1, 1, 1)), temperature or 1.0
        )
        return finish(filled)

    async with autoregressive_turn(card.name, autoregressive_limiter, limits):
        return await anyio.to_thread.run_sync(draw)


def kept_pixels(card: ModelCard, given: Given) -> np.ndarray:
    """(H, W) bool: the pixels to keep."""
    _, h, w = card.image_shape
    if (given.rows is None) == (given.mask is None):
        raise InvalidInput("give exactly one of rows or mask")
    if given.rows is not None:
        if not 0 <= given.rows <= h:
            raise InvalidInput(f"rows: must be 0 to {h} for model {card.name!r}, got {given.rows}")
        keep = np.zeros((h, w), dtype=bool)
        keep[: given.rows] = True
        return keep
    mask = parse_image(given.mask, card.image_shape, "mask")[0]
    if not np.isin(mask, (0.0, 1.0)).all():
        raise InvalidInput("mask: every value must be 0 (generate) or 1 (keep)")
    keep_mask: np.ndarray = mask == 1.0
    return keep_mask
