"""The one table of what each model family can do. A new family plugs in here."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


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
    graphs: tuple[str, ...]
    operations: frozenset[Operation]
    optional_graphs: tuple[str, ...] = ()
    """Opened when the card has them: e.g. the PixelCNN's fast-sampler halves."""
    knobs: frozenset[str] = frozenset()
    """Optional sampling knobs that mean something for this family."""
    why_not: dict[Operation, str] = field(default_factory=dict)
    """Why an operation is refused, where there is more to say than "not supported"."""
    pixel_graph: str | None = None
    """The graph of an autoregressive family: image -> params of the pixel mixture."""
    conditional: bool = False
    """Its graphs take a class ``label`` beside the image or latent."""

    @property
    def has_encoder(self) -> bool:
        return "encoder" in self.graphs

    @property
    def autoregressive(self) -> bool:
        return self.pixel_graph is not None


S, E, R, INTERP = Operation.SAMPLE, Operation.ENCODE, Operation.RECONSTRUCT, Operation.INTERPOLATE
SCORE, COMPLETE, TRAVERSE = Operation.SCORE, Operation.COMPLETE, Operation.TRAVERSE
_ONLY_AUTOREGRESSIVE = "only an autoregressive model (pixelcnn, pixelrnn) completes images"
_NO_LATENT = "it has no latent space"
_GAN = Family(
    graphs=("generator",),
    operations=frozenset({S, INTERP}),
    knobs=frozenset({"truncation"}),
    why_not={
        E: "a GAN has no encoder",
        R: "a GAN has no encoder",
        SCORE: "a GAN defines no likelihood",
        COMPLETE: _ONLY_AUTOREGRESSIVE,
        TRAVERSE: "latent traversal is served for the VAE families",
    },
)
_VAE = Family(
    graphs=("encoder", "decoder"),
    operations=frozenset({S, E, R, INTERP, SCORE, TRAVERSE}),
    why_not={COMPLETE: _ONLY_AUTOREGRESSIVE},
)


def _autoregressive(graph: str, optional_graphs: tuple[str, ...] = ()) -> Family:
    return Family(
        graphs=(graph,),
        optional_graphs=optional_graphs,
        operations=frozenset({S, SCORE, COMPLETE}),
        knobs=frozenset({"temperature"}),
        why_not=dict.fromkeys((E, R, INTERP, TRAVERSE), _NO_LATENT),
        pixel_graph=graph,
    )


FAMILIES: dict[str, Family] = {
    "vae": _VAE,
    "cvae": Family(
        graphs=_VAE.graphs, operations=_VAE.operations, why_not=_VAE.why_not, conditional=True
    ),
    "autoencoder": Family(
        graphs=("encoder", "decoder"),
        operations=frozenset({E, R, INTERP}),
        why_not={
            S: "a plain autoencoder has no prior to sample from",
            SCORE: "a plain autoencoder defines no likelihood",
            COMPLETE: _ONLY_AUTOREGRESSIVE,
            TRAVERSE: "a plain autoencoder has no prior that gives its latent axes a scale",
        },
    ),
    "dcgan": _GAN,
    "wgan-gp": _GAN,
    "pixelcnn": _autoregressive("pixelcnn", optional_graphs=("context", "row")),
    "pixelrnn": _autoregressive("pixelrnn", optional_graphs=("step",)),
}


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
