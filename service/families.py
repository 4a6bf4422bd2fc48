"""The one table of what each model family can do. A new family plugs in here."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Operation(StrEnum):
    SAMPLE = "sample"
    ENCODE = "encode"
    RECONSTRUCT = "reconstruct"
    INTERPOLATE = "interpolate"


@dataclass(frozen=True)
class Family:
    graphs: tuple[str, ...]
    operations: frozenset[Operation]
    optional_graphs: tuple[str, ...] = ()
    """Opened when the card has them: e.g. the PixelCNN's fast-sampler halves."""
    knobs: frozenset[str] = frozenset()
    """Optional sampling knobs that mean something for this family."""
    why_not: dict[Operation, str] = field(default_factory=dict)
    """Why an operation is refused, where there is more to say than "not supported"."""

    @property
    def has_encoder(self) -> bool:
        return "encoder" in self.graphs

    @property
    def autoregressive(self) -> bool:
        return "pixelcnn" in self.graphs


S, E, R, INTERP = Operation.SAMPLE, Operation.ENCODE, Operation.RECONSTRUCT, Operation.INTERPOLATE
_GAN = Family(
    graphs=("generator",),
    operations=frozenset({S, INTERP}),
    knobs=frozenset({"truncation"}),
    why_not={E: "a GAN has no encoder", R: "a GAN has no encoder"},
)

FAMILIES: dict[str, Family] = {
    "vae": Family(graphs=("encoder", "decoder"), operations=frozenset({S, E, R, INTERP})),
    "autoencoder": Family(
        graphs=("encoder", "decoder"),
        operations=frozenset({E, R, INTERP}),
        why_not={S: "a plain autoencoder has no prior to sample from"},
    ),
    "dcgan": _GAN,
    "wgan-gp": _GAN,
    "pixelcnn": Family(
        graphs=("pixelcnn",),
        optional_graphs=("context", "row"),
        operations=frozenset({S}),
        knobs=frozenset({"temperature"}),
        why_not=dict.fromkeys((E, R, INTERP), "a PixelCNN only samples for now"),
    ),
}
