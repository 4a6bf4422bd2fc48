"""Image completion for the autoregressive families: the pixels a client gives are kept exactly
(on the 8-bit grid), the others are drawn pixel by pixel in raster order."""

from __future__ import annotations

import numpy as np

from modelstore.card import ModelCard
from service.errors import InvalidInput
from service.generation.imaging import parse_image
from service.generation.specs import Given

SEEDS = 2**64


def completion_seeds(seed: int, samples: int) -> list[int]:
    """Completion i draws its pixels from seed + i alone: the same whatever ``samples`` is, and
    the same as completion 0 of a request with that seed."""
    return [(seed + i) % SEEDS for i in range(samples)]


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
    masks = parse_image(given.mask, card.image_shape, "mask")
    mask = masks[0]
    if not np.isin(mask, (0.0, 1.0)).all():
        raise InvalidInput("mask: every value must be 0 (generate) or 1 (keep)")
    if (masks != mask).any():
        raise InvalidInput("mask: a pixel's channels must agree (a pixel is kept or drawn whole)")
    keep_mask: np.ndarray = mask == 1.0
    return keep_mask
