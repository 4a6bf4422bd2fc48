"""What every family provides to the trainer, the evaluator and the exporter."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..imageset import DataSpec
from ..nn import mean_bits_per_dim, mixture_log_prob

if TYPE_CHECKING:
    from ..evaluation import Evaluation


@dataclass
class TrainingConfig:
    """What every family's config holds; each family overrides the defaults that differ."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    lr_schedule: str = "constant"
    """constant; linear or cosine: after ``lr_hold`` epochs at ``lr``, the rate falls to
    ``lr * lr_final`` by epoch ``lr_horizon`` and stays there (set step by step)."""
    lr_hold: float = 0.0
    lr_final: float = 0.0
    lr_horizon: int | None = None
    """The epoch the decay ends at; unset, the planned ``epochs`` (recorded when the run starts,
    so that asking for more epochs on resume does not move it)."""
    heldout_samples: int = 5000
    """Samples whose FD and KID to the held-out images are measured after every epoch (0: none;
    the held-out loss alone then picks the best checkpoint)."""
    patience: int = 0
    """Stop when the tracked figure has not improved for this many epochs (0: never)."""


SCHEDULES = ("constant", "linear", "cosine")
RUN_SETTINGS = ("epochs", "patience", "heldout_samples")
"""Settings a resumed run may change: they decide how long it goes and what it watches, not the
weights of the epochs already trained."""


def lr_factor(config: TrainingConfig, epochs_done: float) -> float:
    """The learning rate's multiplier after ``epochs_done`` (fractional) epochs."""
    if config.lr_schedule == "constant" or epochs_done <= config.lr_hold:
        return 1.0
    horizon = config.lr_horizon or config.epochs
    t = min(1.0, (epochs_done - config.lr_hold) / max(horizon - config.lr_hold, 1e-9))
    if config.lr_schedule == "linear":
        return 1.0 - t * (1.0 - config.lr_final)
    return config.lr_final + (1.0 - config.lr_final) * 0.5 * (1.0 + math.cos(math.pi * t))


def descend(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One step of ``opt`` down the gradient of ``loss``, the previous gradients dropped."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


@dataclass
class GraphSpec:
    """One ONNX graph to export: a module, example inputs and the names of its tensors."""

    module: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)


class GenerativeModel(nn.Module):
    """Base class: a model configured by its own dataclass, which it carries into checkpoints,
    and sized by the dataset it models (``data``: image shape and classes)."""

    family: str = ""
    uses_labels: bool = False
    tracks_samples: bool = True
    """Whether training watches the quality of its samples (families without ``sample`` don't)."""
    image_channels: tuple[int, ...] = (1, 3)
    """The numbers of image channels the family's networks take."""
    size_multiple: int = 1
    """Image heights and widths must be multiples of this (strided layers that halve them)."""
    needs_classes: bool = False
    """Whether the family learns from labels, so that its data must come in classes."""

    @classmethod
    def unsupported(cls, data: DataSpec) -> str | None:
        """Why the family cannot model ``data`` (yet), or None when it can."""
        c, h, w = data.image_shape
        shape = f"{c}×{h}×{w}"
        if c not in cls.image_channels:
            taken = " or ".join(str(n) for n in cls.image_channels)
            return f"{cls.family} takes {taken}-channel images, not {shape}; try --channels 1"
        m = cls.size_multiple
        if h % m or w % m:
            return (f"{cls.family} takes heights and widths that are multiples of {m}, not "
                    f"{shape}; try --size {max(28, m * round(max(h, w) / m))}")  # fmt: skip
        if cls.needs_classes and data.num_classes < 2:
            return (f"{cls.family} learns from labels and needs at least 2 classes (a subfolder "
                    f"each, or an .npz with labels); this data has {data.num_classes}")  # fmt: skip
        return None

    def __init__(self, config: Any, data: DataSpec) -> None:
        super().__init__()
        self.config = config
        self.data = data

    def resolve_config(self, config: Any) -> None:
        """Fill in, for this model's data, the settings left to depend on it (None), so that
        the config recorded in checkpoints and cards holds the numbers used."""

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam on every parameter at the config's ``lr``, unless a family needs more."""
        return [torch.optim.Adam(self.parameters(), lr=self.config.lr)]

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        """One optimisation step on a batch of images (B, C, H, W) in [0, 1]."""
        raise NotImplementedError

    def compile_for_training(self) -> None:
        """``torch.compile`` each trained network in place (their weights keep their names)."""
        for child in self.children():
            child.compile()

    def end_of_epoch(self) -> None:
        """Called after each epoch's steps, before validation and the checkpoint."""

    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """A number to watch on the held-out split (lower is better)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, C, H, W) in [0, 1]."""
        raise NotImplementedError

    def evaluate(self, ev: Evaluation) -> dict[str, float | None]:
        """The family's metrics for its card. By default: the quality of its samples."""
        return ev.sample_quality(self)

    def apply_evaluation(self, evaluation: dict[str, Any]) -> None:
        """Make the model the one its evaluation describes, before export (e.g. the generator
        a GAN's held-out selection chose). Nothing to do by default."""

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        raise NotImplementedError

    def card_fields(self) -> dict[str, Any]:
        """Family-specific fields of the model card (latent size, likelihood)."""
        return {}

    def example_images(self, n: int = 2) -> torch.Tensor:
        """(n, C, H, W) pixel values k/255, for tracing the graphs."""
        return torch.randint(0, 256, (n, *self.data.image_shape)).float() / 255


@dataclass
class AutoregressiveConfig(TrainingConfig):
    channels: int = 64
    layers: int | None = None
    """None: the family's layers at 28 rows, scaled in proportion to the image height; the
    model records the number it resolved to in its config (``resolve_config``)."""
    first_kernel: int = 7
    """The first layer's masked kernel, first_kernel x first_kernel."""
    mixture_components: int = 5
    batch_size: int = 64
    heldout_samples: int = 300
    """Each evaluation draws pixel by pixel in torch (784 sampler steps), so fewer than the
    others."""
    lr_decay: float = 0.9995
    """The learning rate is multiplied by this after every step."""


class AutoregressiveModel(GenerativeModel):
    """A model of exact per-pixel likelihoods: ``self.net`` maps images to the parameters of a
    discretized logistic mixture at each pixel. Trained by maximum likelihood, in bits/dim."""

    net: nn.Module
    clip_grad_norm: float | None = None
    image_channels = (1, 3)
    """Colour pixels are drawn R, then G given R, then B given R and G: the masks hide the whole
    pixel being predicted, and the mixture carries the dependence between its channels."""

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact per-image log-likelihood in nats. (B, C, H, W) -> (B,)"""
        return mixture_log_prob(x, self.net(x).float())

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        (opt,) = optimizers
        loss = mean_bits_per_dim(-self.log_prob(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.parameters(), self.clip_grad_norm)
        opt.step()
        for group in opt.param_groups:
            group["lr"] *= self.config.lr_decay
        return {"bpd": loss.item(), "lr": opt.param_groups[0]["lr"]}

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float(mean_bits_per_dim(-self.log_prob(x), x))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
        """(n, C, H, W) in [0, 1], each pixel drawn from the mixture at ``temperature``."""
        raise NotImplementedError

    def sampler_fields(self) -> dict[str, Any]:
        """The card's ``sampler``: how the service samples the family exactly and fast."""
        raise NotImplementedError

    def card_fields(self) -> dict[str, Any]:
        channels = self.data.image_shape[0]
        return {
            "latent_dim": None,
            "likelihood": {
                "kind": "discretized_logistic_mixture",
                "components": self.config.mixture_components,
                **({} if channels == 1 else {"channels": channels, "coefficients": True}),
            },
            "sampler": self.sampler_fields(),
        }

    def evaluate(self, ev: Evaluation) -> dict[str, float | None]:
        """Exact test bits/dim, then the samples' quality."""
        nll = ev.per_image(lambda xb, _: -self.log_prob(xb), "NLL")
        metrics = {"test_bpd": ev.bits_per_dim(nll), **super().evaluate(ev)}
        for t in ev.temperatures:
            draw = functools.partial(self.sample, temperature=t)
            fd, entropy = ev.fd_and_class_entropy(draw, f"temperature {t:g}")
            metrics[f"fd_temperature_{t:g}"] = fd
            metrics[f"class_entropy_temperature_{t:g}"] = entropy
        if ev.temperatures:
            ev.how["temperatures"] = [*ev.temperatures, 1.0]
        return metrics
