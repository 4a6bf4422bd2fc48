"""DCGAN: a transposed-convolution generator (7 -> 14 -> 28), a convolutional discriminator and
an adversarial loss. An exponential moving average (EMA) of the generator is kept beside it;
evaluation picks whichever of the two scores better on the held-out split, and that one is
sampled and exported.

The recipe's parts are settings, so that each can be measured on its own (docs/training.md):
the loss (non-saturating or hinge), an R1 penalty on real images, spectral normalisation in the
discriminator, a learning rate per network (TTUR), DiffAugment, the widths, and how the EMA
generator's batch-norm statistics are kept.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..imageset import DataSpec
from ..metrics import frechet_distance
from .augment import diff_augment
from .base import GenerativeModel, GraphSpec, TrainingConfig, descend

if TYPE_CHECKING:
    from ..evaluation import Evaluation

BATCHNORM_BATCHES = 40
"""Batches of 256 latents that the batch-norm statistics of a generator are measured on."""


@dataclass
class GANConfig(TrainingConfig):
    """What the GAN families share."""

    latent_dim: int = 64
    channels: int = 64
    """The generator's width."""
    epochs: int = 15
    batch_size: int = 128
    lr: float = 2e-4
    """The generator's learning rate, and the discriminator's unless ``lr_d`` is set."""
    beta1: float = 0.5
    beta2: float = 0.999
    """Adam's betas, for both networks."""
    ema_decay: float = 0.999
    d_channels: int | None = None
    """The discriminator's width; None: ``channels``."""
    lr_d: float | None = None
    augment: str = ""
    """DiffAugment policy (Zhao et al. 2020) applied to every image the discriminator sees,
    e.g. "translation,cutout"; empty is off."""
    generator: str = "dcgan"
    """dcgan: fc to (2c, 7, 7), two transposed convolutions. deep: fc to (4c, 7, 7), two
    transposed convolutions with batch norm, and a 3x3 convolution to the image."""
    ema_batchnorm: str = "copy"
    """copy: the EMA generator takes the trained one's running batch-norm statistics each step
    (they describe the trained weights, not the averaged ones); recompute: at the end of each
    epoch, both generators' statistics are measured afresh on their own outputs."""


@dataclass
class DCGANConfig(GANConfig):
    # The recipe of the held-out ablation's two best changes (docs/training.md): the deeper
    # generator, twice the steps of batch 128 for the same images, and batch-norm statistics
    # measured afresh for both generators.
    epochs: int = 14
    """What dcgan-fashion v2 trained for: 48 minutes on one thread."""
    batch_size: int = 64
    channels: int = 32
    d_channels: int | None = 64
    generator: str = "deep"
    ema_batchnorm: str = "recompute"
    loss: str = "ns"
    """ns: the non-saturating loss of Goodfellow et al.; hinge: Lim & Ye 2017's hinge loss."""
    r1_gamma: float = 0.0
    """R1 penalty (Mescheder et al. 2018), gamma / 2 * |grad D(real)|^2; 0 is off."""
    d_norm: str = "batch"
    """The discriminator's normalisation: batch (batch norm after its second convolution),
    spectral (spectral normalisation of every layer, Miyato et al. 2018) or none."""


class Generator(nn.Module):
    """z (B, d) -> image (B, C, H, W) in [-1, 1]."""

    def __init__(self, d: int, c: int, data: DataSpec, kind: str = "dcgan") -> None:
        super().__init__()
        channels, h, w = data.image_shape
        if kind not in ("dcgan", "deep"):
            raise ValueError(f"generator must be 'dcgan' or 'deep', got {kind!r}")
        top = 2 * c if kind == "dcgan" else 4 * c
        self.shape = (top, h // 4, w // 4)
        self.fc = nn.Sequential(
            nn.Linear(d, top * (h // 4) * (w // 4), bias=False),
            nn.BatchNorm1d(top * (h // 4) * (w // 4)),
        )
        if kind == "dcgan":
            self.net = nn.Sequential(
                nn.ReLU(),
                nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, bias=False),  # (B, c, H/2)
                nn.BatchNorm2d(c), nn.ReLU(),
                nn.ConvTranspose2d(c, channels, 4, stride=2, padding=1),  # (B, C, H, W)
                nn.Tanh(),
            )  # fmt: skip
        else:
            self.net = nn.Sequential(
                nn.ReLU(),
                nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1, bias=False),  # H/2
                nn.BatchNorm2d(2 * c), nn.ReLU(),
                nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, bias=False),  # H
                nn.BatchNorm2d(c), nn.ReLU(),
                nn.Conv2d(c, channels, 3, padding=1),
                nn.Tanh(),
            )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, *self.shape))


class Discriminator(nn.Module):
    def __init__(self, c: int, data: DataSpec, norm: str = "batch") -> None:
        super().__init__()
        if norm not in ("batch", "spectral", "none"):
            raise ValueError(f"d_norm must be 'batch', 'spectral' or 'none', got {norm!r}")
        channels, h, w = data.image_shape
        sn = spectral_norm if norm == "spectral" else (lambda layer: layer)
        batch = norm == "batch"
        self.net = nn.Sequential(
            sn(nn.Conv2d(channels, c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),  # H/2
            sn(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1, bias=not batch)),  # (B, 2c, H/4)
            nn.BatchNorm2d(2 * c) if batch else nn.Identity(), nn.LeakyReLU(0.2),
            nn.Flatten(), sn(nn.Linear(2 * c * (h // 4) * (w // 4), 1)),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class ImageOut(nn.Module):
    """The exported generator: maps tanh's [-1, 1] to the store's [0, 1]."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.generator(z) + 1) * 0.5


class DCGAN(GenerativeModel):
    family = "dcgan"
    size_multiple = 4

    def __init__(self, config: GANConfig, data: DataSpec) -> None:
        super().__init__(config, data)
        if config.ema_batchnorm not in ("copy", "recompute"):
            raise ValueError(
                f"ema_batchnorm must be 'copy' or 'recompute', got {config.ema_batchnorm!r}"
            )
        self.generator = Generator(config.latent_dim, config.channels, data, config.generator)
        self.discriminator = self.make_discriminator(config.d_channels or config.channels)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.use_ema = True  # set by evaluation's held-out selection; not part of the weights

    def make_discriminator(self, c: int) -> nn.Module:
        if self.config.loss not in ("ns", "hinge"):
            raise ValueError(f"loss must be 'ns' or 'hinge', got {self.config.loss!r}")
        return Discriminator(c, self.data, self.config.d_norm)

    @property
    def sampler(self) -> Generator:
        return self.generator_ema if self.use_ema else self.generator

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        cfg = self.config
        betas = (cfg.beta1, cfg.beta2)
        return [
            torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_d or cfg.lr, betas=betas),
        ]

    def critic(self, images: torch.Tensor) -> torch.Tensor:
        """The discriminator's score of images in [-1, 1], through DiffAugment when it is on."""
        return self.discriminator(diff_augment(images, self.config.augment))

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        opt_g, opt_d = optimizers
        real = x * 2 - 1
        z = torch.randn(len(x), self.config.latent_dim)
        fake = self.generator(z)
        hinge = self.config.loss == "hinge"
        # Discriminator: real -> 1, fake -> 0 (or, hinge, real above 1 and fake below -1).
        gamma = self.config.r1_gamma
        if gamma > 0:
            real.requires_grad_(True)
        real_score = self.critic(real)
        fake_score = self.critic(fake.detach())
        if hinge:
            d_loss = F.relu(1 - real_score).mean() + F.relu(1 + fake_score).mean()
        else:
            d_loss = F.softplus(-real_score).mean() + F.softplus(fake_score).mean()
        logs = {}
        if gamma > 0:
            (grad,) = torch.autograd.grad(real_score.sum(), real, create_graph=True)
            r1 = grad.float().pow(2).flatten(1).sum(1).mean()
            d_loss = d_loss + gamma / 2 * r1
            logs["r1"] = r1.item()
        descend(opt_d, d_loss)
        # Generator: non-saturating, maximise log D(G(z)); hinge, maximise D(G(z)).
        self.discriminator.requires_grad_(False)
        score = self.critic(fake)
        g_loss = -score.mean() if hinge else F.softplus(-score).mean()
        descend(opt_g, g_loss)
        self.discriminator.requires_grad_(True)
        self._update_ema()
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item(), **logs}

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.config.ema_decay
        for p_ema, p in zip(
            self.generator_ema.parameters(), self.generator.parameters(), strict=True
        ):
            p_ema.lerp_(p, 1 - decay)
        if self.config.ema_batchnorm == "copy":
            for b_ema, b in zip(
                self.generator_ema.buffers(), self.generator.buffers(), strict=True
            ):
                b_ema.copy_(b)

    def end_of_epoch(self) -> None:
        if self.config.ema_batchnorm == "recompute":
            for generator in (self.generator, self.generator_ema):
                recompute_batchnorm(generator, self.config.latent_dim)

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """The discriminator's loss on held-out real images against samples of the sampler."""
        z = torch.randn(len(x), self.config.latent_dim)
        fake = self.sampler(z)
        return float(
            F.softplus(-self.discriminator(x * 2 - 1)).mean()
            + F.softplus(self.discriminator(fake)).mean()
        )

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=generator)
        return (self.sampler(z) + 1) * 0.5

    def evaluate(self, ev: Evaluation) -> dict[str, float | None]:
        """The samples' quality, of the generator (EMA or trained) that is closer to held-out
        images."""
        ev.how["generator_selection"] = self.select_generator(ev)
        return super().evaluate(ev)

    def select_generator(self, ev: Evaluation, n: int = 5000) -> dict[str, Any]:
        """Pick the EMA or the trained generator by their Fréchet distance to held-out images
        (never the test split), with other samples than the evaluation's."""
        f_held = ev.heldout_features
        scores = {}
        for use_ema in (True, False):
            self.use_ema = use_ema
            g = torch.Generator().manual_seed(ev.seed + 1)
            _, f = ev.features(self.sample(n, g))
            scores["ema" if use_ema else "trained"] = frechet_distance(f, f_held)
        self.use_ema = scores["ema"] <= scores["trained"]
        chosen = "ema" if self.use_ema else "trained"
        return {"chosen": chosen, "heldout_fd": scores, "samples": n}

    def apply_evaluation(self, evaluation: dict[str, Any]) -> None:
        """Export the generator the metrics describe."""
        selection = evaluation.get("generator_selection")
        if selection:
            self.use_ema = selection["chosen"] == "ema"

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        return {
            "generator": GraphSpec(
                ImageOut(self.sampler), (torch.randn(2, self.config.latent_dim),),
                ["z"], ["image"], {"z": {0: "batch"}, "image": {0: "batch"}},
            )
        }  # fmt: skip

    def card_fields(self) -> dict[str, Any]:
        return {"latent_dim": self.config.latent_dim}


@torch.no_grad()
def recompute_batchnorm(generator: nn.Module, latent_dim: int, seed: int = 0) -> None:
    """Measure the batch-norm layers' statistics of ``generator`` on its own outputs, as the
    average over BATCHNORM_BATCHES batches (its own random stream: training's is untouched)."""
    layers = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    was_training = generator.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average
    generator.train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(BATCHNORM_BATCHES):
        generator(torch.randn(256, latent_dim, generator=g))
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    generator.train(was_training)
