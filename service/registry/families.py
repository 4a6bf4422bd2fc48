"""What the registry needs of a family (``Family``), the operations, and the sampling knobs'
bounds. The families themselves, one class per kind, and their table are in
``service/generation/families.py``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, TypeVar

from modelstore.card import ModelCard
from service.errors import ServiceError
from service.runtime.sessions import Graph

T = TypeVar("T")


class Operation(StrEnum):
    SAMPLE = "sample"
    ENCODE = "encode"
    RECONSTRUCT = "reconstruct"
    INTERPOLATE = "interpolate"
    SCORE = "score"
    COMPLETE = "complete"
    TRAVERSE = "traverse"


@dataclass(frozen=True)
class Family:
    """What the registry needs of a family of models: the graphs it loads, the operations it
    serves and why it refuses the others, its sampling knobs, and how its card is checked. One
    subclass per kind of family (``service/generation/families.py``) adds what the family
    does; the table of families is there, and reaches the loader through ``LoadOptions``."""

    graphs: tuple[str, ...]
    operations: frozenset[Operation]
    optional_graphs: tuple[str, ...] = ()
    """Opened when the card has them: e.g. the PixelCNN's fast-sampler halves."""
    knobs: frozenset[str] = frozenset()
    """Optional sampling knobs that mean something for this family."""
    why_not: Mapping[Operation, str] = field(default_factory=dict)
    """Why an operation is refused, where there is more to say than "not supported"."""
    conditional: bool = False
    """Its graphs take a class ``label`` beside the image or latent."""
    pixel_graph: str | None = None
    """The graph of a pixel-by-pixel family: image -> params of the pixel mixture."""

    autoregressive: ClassVar[bool] = False
    """It draws pixel by pixel: one run at a time on every core, and a bounded number of
    samplings at once (the model listing and the metrics say so)."""
    channels: ClassVar[tuple[int, ...]] = (1, 3)
    """The image channels (the card's C) it serves: grayscale, RGB."""

    def roles(self, card: ModelCard) -> tuple[str, ...]:
        """The graphs to open: the family's, and those of its optional ones the card has."""
        return (*self.graphs, *(g for g in self.optional_graphs if g in card.graphs))

    def check_card(self, card: ModelCard) -> None:
        """ServiceError if ``card`` lacks what the family needs beyond its graphs."""
        if card.image_shape[0] not in self.channels:
            served = " or ".join(map(str, self.channels))
            raise ServiceError(
                f"{card.name}: {card.family} models are served with {served} channel(s), "
                f"the card's image_shape is {list(card.image_shape)}"
            )
        if self.conditional and not card.class_names:
            raise ServiceError(f"{card.name}: a {card.family} card needs its class_names")

    def graph_options(self, batched: T, one_at_a_time: T) -> T:
        """Which of the loader's two ways to open a graph this family's graphs take."""
        return batched

    def pixel_graph_of(self, graphs: Mapping[str, Graph]) -> Graph:
        """A pixel-by-pixel family's graph among a model's ``graphs``."""
        assert self.pixel_graph is not None
        return graphs[self.pixel_graph]

    def v2_sample_inputs(self) -> list[tuple[str, str]]:
        """(name, datatype) of the v2 ``sample`` model's inputs beside ``n`` and ``seed``, each
        of shape (1,): its knobs, and a conditional family's ``label``."""
        label = [("label", "INT64")] if self.conditional else []
        return [*((knob, "FP32") for knob in sorted(self.knobs)), *label]

    @property
    def v2_reconstructs(self) -> bool:
        """Whether it has a v2 ``reconstruct`` model: it reconstructs, and without a label."""
        return Operation.RECONSTRUCT in self.operations and not self.conditional


KNOB_BOUNDS: dict[str, dict[str, float]] = {
    "temperature": {"gt": 0.0, "le": 10.0},
    "truncation": {"ge": 0.05, "le": 10.0},
}
"""The sampling knobs' accepted ranges, in pydantic's Field terms; every API takes them here."""

_CHECKS = {
    "gt": (lambda v, b: v > b, "<"),
    "ge": (lambda v, b: v >= b, "<="),
    "lt": (lambda v, b: v < b, "<"),
    "le": (lambda v, b: v <= b, "<="),
}


def knob_accepts(knob: str, value: float) -> bool:
    return all(_CHECKS[op][0](value, bound) for op, bound in KNOB_BOUNDS[knob].items())


def knob_rule(knob: str) -> str:
    """E.g. "0 < temperature <= 10"."""
    bounds = KNOB_BOUNDS[knob]
    low = next(((b, _CHECKS[op][1]) for op, b in bounds.items() if op in ("gt", "ge")), None)
    high = next(((b, _CHECKS[op][1]) for op, b in bounds.items() if op in ("lt", "le")), None)
    text = f"{low[0]:g} {low[1]} {knob}" if low else knob
    return f"{text} {high[1]} {high[0]:g}" if high else text
