"""Class labels of the conditional families: a class name (any case) or index from a client,
int64 indices for the graphs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelstore.card import ModelCard
from service.errors import InvalidInput

Label = str | int
LabelInput = Label | Sequence[Label] | None
"""One class for every image, one per image, or none."""
_LABEL_STREAM = 0x1ABE1
"""Labels drawn from a seed come from their own stream, apart from the latents'."""


def class_names(card: ModelCard) -> list[str]:
    return list(card.class_names or [])


def label_names(card: ModelCard, labels: np.ndarray) -> list[str]:
    names = class_names(card)
    return [names[int(i)] for i in labels]


def indices(card: ModelCard, label: Label | Sequence[Label], n: int, field: str) -> np.ndarray:
    """The (n,) int64 labels of a conditional model's request: one class for every image, or
    one per image; an unknown class is refused."""
    if isinstance(label, str | int):
        return np.full(n, index(card, label, field), dtype=np.int64)
    if len(label) != n:
        raise InvalidInput(f"{field}: give one label for every image ({n}), got {len(label)}")
    return np.array([index(card, v, f"{field}[{i}]") for i, v in enumerate(label)], np.int64)


def drawn(card: ModelCard, seed: int, n: int) -> np.ndarray:
    """n labels drawn uniformly from a seed; label i is the same whatever n is."""
    rng = np.random.default_rng([seed, _LABEL_STREAM])
    return rng.integers(0, len(class_names(card)), n, dtype=np.int64)


def index(card: ModelCard, value: Label, field: str = "label") -> int:
    names = class_names(card)
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(names):
            return value
        raise InvalidInput(
            f"{field}: class index {value} is out of range for model {card.name!r}: "
            f"0 to {len(names) - 1}"
        )
    folded = [name.casefold() for name in names]
    if isinstance(value, str) and value.strip().casefold() in folded:
        return folded.index(value.strip().casefold())
    if isinstance(value, str) and value.strip().isdigit():
        return index(card, int(value.strip()), field)
    raise InvalidInput(f"{field}: unknown class {value!r} for model {card.name!r}: {choices(card)}")


def choices(card: ModelCard) -> str:
    names = class_names(card)
    return f"{', '.join(repr(n) for n in names)} (or 0 to {len(names) - 1})"
