"""Image completion for the autoregressive families: the pixels a client gives are kept exactly
(on the 8-bit grid), the others are drawn pixel by pixel in raster order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from modelstore.card import ModelCard
from service.errors import InvalidInput, LimitExceeded
from service.generation import autoregressive
from service.generation.checks import check_knob, parse_batch, ready
from service.generation.imaging import parse_image
from service.generation.likelihood import quantize
from service.generation.specs import CompleteSpec, Given, Limits
from service.registry.families import Operation
from service.registry.registry import LoadedModel
from service.runtime.slots import Slots

SEEDS = 2**64


def completion_seeds(seed: int, samples: int) -> list[int]:
    """Completion i draws its pixels from seed + i alone: the same whatever ``samples`` is, and
    the same as completion 0 of a request with that seed."""
    return [(seed + i) % SEEDS for i in range(samples)]


async def complete(
    model: LoadedModel,
    spec: CompleteSpec,
    seed: int,
    limits: Limits,
    finish: Callable[[np.ndarray], Any],
    slots: Slots | None = None,
    watch: autoregressive.RowWatch | None = None,
) -> tuple[Any, int]:
    """``finish`` of the (B x samples, C, H, W) completions, image-major (the samples of image
    0 first), and how many there are. Completion i of every image uses seed + i
    (``completion_seeds``)."""
    card, family = ready(model, Operation.COMPLETE)
    check_knob(card, family, "temperature", spec.temperature)
    images, samples = spec.images, spec.samples
    count = len(images) * samples
    if count > limits.max_autoregressive_n:
        raise LimitExceeded(
            f"images x samples: at most {limits.max_autoregressive_n} completions per request "
            f"for autoregressive model {card.name!r}, got {len(images)} x {samples} = {count}"
        )
    x = quantize(await anyio.to_thread.run_sync(parse_batch, card, images, limits))
    keep = await anyio.to_thread.run_sync(kept_pixels, card, spec.given)
    _, h, w = card.image_shape
    noise = np.concatenate(
        [autoregressive.pixel_noise(s, 1, h, w) for s in completion_seeds(seed, samples)]
    )
    starts = np.repeat(x, samples, axis=0)  # (B S, 1, H, W)
    temperature, rows = spec.temperature or 1.0, watch or autoregressive.RowWatch()

    def draw() -> Any:
        noises = np.tile(noise, (len(x), 1, 1, 1))
        return finish(autoregressive.generate(model, starts, keep, noises, temperature, rows))

    rows.accepted(autoregressive.rows_to_generate(keep))
    async with autoregressive.turn(card.name, slots, limits):
        return await autoregressive.run_watched(draw, rows), count


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
