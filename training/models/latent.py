"""What the latent-variable families share: the convolutional encoder and decoder stacks, and
the ELBO and importance-weighted bound (IWAE, Burda et al. 2016) of a Gaussian posterior.

The stacks halve the image twice (28 -> 14 -> 7) and grow the channels c -> 2c -> 4c; the
decoder mirrors the encoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..imageset import DataSpec
from ..nn import discretized_logistic_log_prob, mean_bits_per_dim
from .base import GenerativeModel, TrainingConfig

if TYPE_CHECKING:
    from ..evaluation import Evaluation

_LOG_2PI = math.log(2 * math.pi)


@dataclass
class LatentConfig(TrainingConfig):
    latent_dim: int = 32
    channels: int = 32
    """The encoder's first width; it doubles twice."""


@dataclass
class VariationalConfig(LatentConfig):
    kl_warmup_steps: int = 2000
    """Steps over which the KL term's weight rises linearly from 0 to 1."""


def conv_encoder(
    in_channels: int, c: int, out_features: int, image_shape: tuple[int, int, int]
) -> nn.Sequential:
    """(B, in_channels, H, W) -> (B, out_features)."""
    _, h, w = image_shape
    return nn.Sequential(
        nn.Conv2d(in_channels, c, 3, padding=1), nn.SiLU(),
        nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),  # (B, 2c, H/2, W/2)
        nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1), nn.SiLU(),  # (B, 4c, H/4, W/4)
        nn.Flatten(),
        nn.Linear(4 * c * (h // 4) * (w // 4), out_features),
    )  # fmt: skip


class ImageEncoder(nn.Module):
    """image (B, C, H, W) in [0, 1] -> (B, out_features), through ``conv_encoder``."""

    def __init__(self, c: int, out_features: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.net = conv_encoder(image_shape[0], c, out_features, image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x * 2 - 1)
        return out


class ConvDecoder(nn.Module):
    """(B, in_features) -> (B, out_channels, H, W): a linear layer to a (4c, H/4, W/4) map,
    then the encoder's stack in reverse."""

    def __init__(
        self, in_features: int, c: int, out_channels: int, image_shape: tuple[int, int, int]
    ) -> None:
        super().__init__()
        self.build(in_features, c, out_channels, image_shape)

    def build(
        self, in_features: int, c: int, out_channels: int, image_shape: tuple[int, int, int]
    ) -> None:
        """Create the layers; a subclass that registers layers of its own before these (so
        that a seed initialises them in that order) calls it from its own ``__init__``."""
        _, h, w = image_shape
        self.c, self.grid = c, (h // 4, w // 4)
        self.fc = nn.Linear(in_features, 4 * c * self.grid[0] * self.grid[1])
        self.net = nn.Sequential(
            nn.SiLU(),
            nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),  # H/2
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.SiLU(),  # H
            nn.Conv2d(c, out_channels, 3, padding=1),
        )  # fmt: skip

    def stack(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(self.fc(features).view(-1, 4 * self.c, *self.grid))
        return out


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per row, in nats. (B, D) -> (B,)"""
    mean, log_var = mean.float(), log_var.float()
    return 0.5 * (mean**2 + log_var.exp() - 1 - log_var).sum(1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per row. (B, D) -> (B,)"""
    return -0.5 * (z**2 + _LOG_2PI).sum(1)


def gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, exp(log_var)) per row. (B, D) -> (B,)"""
    return -0.5 * ((z - mean) ** 2 * torch.exp(-log_var) + log_var + _LOG_2PI).sum(1)


class GaussianLatentModel(GenerativeModel):
    size_multiple = 4
    """A VAE of either kind: a diagonal Gaussian posterior q(z | x, y), a discretized logistic
    likelihood p(x | z, y) and a prior p(z | y), N(0, I) unless a family says otherwise. The
    label ``y`` is ignored by the unconditional families; the bounds are per image, in nats.

    The exported graphs always have the prior N(0, I) on their latent (the service's contract,
    docs/model-store.md). A family that trains with another prior folds it into the graphs and
    says, through ``served_posterior`` and ``served_likelihood``, what they compute; the card's
    bounds are those of the graphs, as the service's /score computes them."""

    encoder: nn.Module
    decoder: nn.Module

    def __init__(self, config: VariationalConfig, data: DataSpec) -> None:
        super().__init__(config, data)
        self.step: torch.Tensor  # optimisation steps taken, for the KL warm-up; checkpointed
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def posterior(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_var) of q(z | x, y), each (B, D): the encoder's outputs."""
        mean, log_var = self.encoder(x, y) if self.uses_labels else self.encoder(x)
        return mean, log_var

    def likelihood(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_scale) of p(x | z, y), each (B, C, H, W): the decoder's outputs."""
        mu, log_scale = self.decoder(z, y) if self.uses_labels else self.decoder(z)
        return mu, log_scale

    def log_prior(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(z | y) per row; the standard normal by default."""
        return standard_normal_log_prob(z)

    def kl(
        self, z: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """KL(q(z | x, y) || p(z | y)) per row, in closed form for the standard normal prior;
        a family with another prior estimates it from the sample ``z``."""
        return gaussian_kl(mean, log_var)

    def neg_elbo(self, x: torch.Tensor, y: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """Per-image negative ELBO in nats, the KL term weighted by ``beta``. -> (B,)"""
        mean, log_var = self.posterior(x, y)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        mu, log_scale = self.likelihood(z, y)
        rec = discretized_logistic_log_prob(x, mu.float(), log_scale.float())
        return -rec + beta * self.kl(z, mean, log_var, y)

    def served_posterior(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_var) of the exported encoder, over the exported latent."""
        return self.posterior(x, y)

    def served_likelihood(
        self, z: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log_scale) of the exported decoder, from the exported latent."""
        return self.likelihood(z, y)

    def served_neg_elbo(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The negative ELBO of the exported graphs (prior N(0, I)), per image in nats."""
        mean, log_var = self.served_posterior(x, y)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        mu, log_scale = self.served_likelihood(z, y)
        rec = discretized_logistic_log_prob(x, mu.float(), log_scale.float())
        return -rec + gaussian_kl(mean, log_var)

    def kl_weight(self, step: int) -> float:
        """The KL warm-up: beta rises linearly to 1 over ``kl_warmup_steps``."""
        return min(1.0, (step + 1) / max(1, self.config.kl_warmup_steps))

    @torch.no_grad()
    def iwae_log_prob(self, x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        """Importance-weighted lower bound on log p(x | y) in nats, k samples, of the exported
        graphs: their posterior as the proposal, their prior N(0, I). -> (B,)"""
        mean, log_var = self.served_posterior(x, y)
        std = torch.exp(0.5 * log_var)
        log_w = []
        for _ in range(k):
            eps = torch.randn_like(mean)
            z = mean + eps * std
            mu, log_scale = self.served_likelihood(z, y)
            log_px_z = discretized_logistic_log_prob(x, mu, log_scale)
            log_qz = -0.5 * (eps**2 + log_var + _LOG_2PI).sum(1)
            log_w.append(log_px_z + standard_normal_log_prob(z) - log_qz)
        return torch.logsumexp(torch.stack(log_w), dim=0) - math.log(k)

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float(mean_bits_per_dim(self.neg_elbo(x, y), x))

    def bounds(self, ev: Evaluation) -> dict[str, float]:
        """The test split's negative ELBO and IWAE bound, in bits/dim."""
        k = ev.iwae_k
        elbo = ev.per_image(self.served_neg_elbo, "ELBO")
        iwae = ev.per_image(lambda xb, yb: -self.iwae_log_prob(xb, yb, k), f"IWAE k={k}")
        ev.how["iwae_k"] = k
        return {"test_bpd_neg_elbo": ev.bits_per_dim(elbo), "test_bpd_iwae": ev.bits_per_dim(iwae)}

    def evaluate(self, ev: Evaluation) -> dict[str, float | None]:
        return {**self.bounds(ev), **super().evaluate(ev)}
