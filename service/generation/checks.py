"""The checks every operation shares: the model can do it, the knobs apply, the images fit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelstore.card import ModelCard
from service.errors import InvalidInput, LimitExceeded, UnsupportedOperation
from service.generation.imaging import parse_images
from service.generation.specs import Limits
from service.registry.families import Family, Operation
from service.registry.registry import LoadedModel


def ready(model: LoadedModel, operation: Operation) -> tuple[ModelCard, Family]:
    """The card and family of a ready model that can do ``operation``; UnsupportedOperation
    saying why otherwise."""
    card, family = model.ready_card, model.family
    assert family is not None  # a ready model's family is served
    if operation not in family.operations:
        why = family.why_not.get(operation, "not supported by its family")
        raise UnsupportedOperation(f"model {card.name!r} cannot {operation}: {why}")
    return card, family


def latent_dim(card: ModelCard) -> int:
    if card.latent_dim is None:
        raise UnsupportedOperation(f"model {card.name!r} has no latent space")
    return card.latent_dim


def parse_batch(card: ModelCard, images: Sequence[Any], limits: Limits) -> np.ndarray:
    """A request's images as (B, C, H, W) floats in [0, 1]: at least one, at most
    ``max_images``."""
    if not images:
        raise InvalidInput("images: give at least one image")
    if len(images) > limits.max_images:
        raise LimitExceeded(
            f"images: at most {limits.max_images} images per request, got {len(images)}"
        )
    return parse_images(images, card.image_shape, "images")
