"""WGAN-GP (Gulrajani et al. 2017): the DCGAN's generator against a critic trained on the
Wasserstein loss with a gradient penalty.

As in the paper: penalty weight λ = 10 on (|∇ critic(x̂)| - 1)² at random interpolates x̂ of
real and generated images, 5 critic steps per generator step, Adam(1e-4, β = (0, 0.9)), and a
critic without batch normalisation (the penalty is per image). Each training step is one critic
step on a fresh real batch; the generator steps after critic steps 1, 1 + n_critic, ... The
EMA generator, its held-out selection and the exported graph are the DCGAN's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..imageset import DataSpec
from .base import descend
from .dcgan import DCGAN, GANConfig


@dataclass
class WGANGPConfig(GANConfig):
    epochs: int = 30
    """About 4,700 generator steps at n_critic = 5; 7 epochs (1,095) left the classes unbalanced."""
    batch_size: int = 64
    lr: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.9
    ema_decay: float = 0.995
    n_critic: int = 5
    """Critic steps per generator step."""
    gp_weight: float = 10.0
    """The gradient penalty's weight, lambda."""


class Critic(nn.Module):
    """image (B, C, H, W) in [-1, 1] -> score (B,); no batch norm, so the gradient penalty
    of each image depends on that image alone."""

    def __init__(self, c: int, data: DataSpec) -> None:
        super().__init__()
        channels, h, w = data.image_shape
        grid = ((h // 4 + 1) // 2) * ((w // 4 + 1) // 2)  # (H/8) x (W/8), rounded up
        self.net = nn.Sequential(
            nn.Conv2d(channels, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # (B, c, H/2)
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # (B, 2c, H/4)
            nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1), nn.LeakyReLU(0.2),  # (B, 4c, H/8)
            nn.Flatten(), nn.Linear(4 * c * grid, 1, bias=False),  # a bias cancels in the loss
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class WGANGP(DCGAN):
    family = "wgan-gp"

    def __init__(self, config: WGANGPConfig, data: DataSpec) -> None:
        super().__init__(config, data)
        self.step: torch.Tensor  # critic steps taken; checkpointed, so resuming keeps the rhythm
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def make_discriminator(self, c: int) -> nn.Module:
        return Critic(c, self.data)

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        eps = torch.rand(len(real), 1, 1, 1)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.critic(mixed).sum(), mixed, create_graph=True)
        norm = grad.float().flatten(1).norm(dim=1)
        return ((norm - 1) ** 2).mean()

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        opt_g, opt_c = optimizers
        real = x * 2 - 1
        z = torch.randn(len(x), self.config.latent_dim)
        with torch.no_grad():
            fake = self.generator(z)
        wasserstein = self.critic(real).mean() - self.critic(fake).mean()
        penalty = self.gradient_penalty(real, fake)
        c_loss = -wasserstein + self.config.gp_weight * penalty
        descend(opt_c, c_loss)
        self.step.add_(1)
        logs = {"w_estimate": wasserstein.item(), "gp": penalty.item()}
        if (int(self.step) - 1) % self.config.n_critic == 0:  # after critic steps 1, 6, 11, ...
            self.discriminator.requires_grad_(False)
            g_loss = -self.critic(self.generator(z)).mean()
            descend(opt_g, g_loss)
            self.discriminator.requires_grad_(True)
            self._update_ema()
        return logs

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """The critic's Wasserstein estimate between held-out real images and samples."""
        fake = self.sampler(torch.randn(len(x), self.config.latent_dim))
        return float(self.discriminator(x * 2 - 1).mean() - self.discriminator(fake).mean())
