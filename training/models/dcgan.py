"""DCGAN: a transposed-convolution generator (7 -> 14 -> 28), a convolutional discriminator and
the non-saturating loss. An exponential moving average (EMA) of the generator is kept beside it;
evaluation picks whichever of the two scores better on the held-out split, and that one is
sampled and exported."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import GenerativeModel, GraphSpec


@dataclass
class DCGANConfig:
    latent_dim: int = 64
    channels: int = 64
    epochs: int = 15
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    ema_decay: float = 0.999


class Generator(nn.Module):
    """z (B, d) -> image (B, 1, 28, 28) in [-1, 1]."""

    def __init__(self, d: int, c: int) -> None:
        super().__init__()
        self.c = c
        self.fc = nn.Sequential(nn.Linear(d, 2 * c * 49, bias=False), nn.BatchNorm1d(2 * c * 49))
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, bias=False),  # (B, c, 14, 14)
            nn.BatchNorm2d(c), nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28)
            nn.Tanh(),
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, 2 * self.c, 7, 7))


class Discriminator(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # (B, c, 14, 14)
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1, bias=False),  # (B, 2c, 7, 7)
            nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * c * 49, 1),
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

    def __init__(self, config: DCGANConfig) -> None:
        super().__init__(config)
        self.generator = Generator(config.latent_dim, config.channels)
        self.discriminator = self.make_discriminator(config.channels)
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.use_ema = True  # set by evaluation's held-out selection; not part of the weights

    def make_discriminator(self, c: int) -> nn.Module:
        return Discriminator(c)

    @property
    def sampler(self) -> Generator:
        return self.generator_ema if self.use_ema else self.generator

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (self.config.beta1, 0.999)
        return [
            torch.optim.Adam(self.generator.parameters(), lr=self.config.lr, betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=self.config.lr, betas=betas),
        ]

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        opt_g, opt_d = optimizers
        real = x * 2 - 1
        z = torch.randn(len(x), self.config.latent_dim)
        fake = self.generator(z)
        # Discriminator: real -> 1, fake -> 0.
        d_loss = (
            F.softplus(-self.discriminator(real)).mean()
            + F.softplus(self.discriminator(fake.detach())).mean()
        )
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        # Generator, non-saturating: maximise log D(G(z)).
        g_loss = F.softplus(-self.discriminator(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        self._update_ema()
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.config.ema_decay
        for p_ema, p in zip(
            self.generator_ema.parameters(), self.generator.parameters(), strict=True
        ):
            p_ema.lerp_(p, 1 - decay)
        for b_ema, b in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            b_ema.copy_(b)

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

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        return {
            "generator": GraphSpec(
                ImageOut(self.sampler), (torch.randn(2, self.config.latent_dim),),
                ["z"], ["image"], {"z": {0: "batch"}, "image": {0: "batch"}},
            )
        }  # fmt: skip

    def card_fields(self) -> dict[str, Any]:
        return {"latent_dim": self.config.latent_dim}
