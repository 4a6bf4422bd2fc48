"""Convolutional VAE with a discretized logistic likelihood on the 8-bit pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..nn import MIN_LOG_SCALE, discretized_logistic_log_prob, mean_bits_per_dim
from .base import GenerativeModel, GraphSpec


@dataclass
class VAEConfig:
    latent_dim: int = 32
    channels: int = 32
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    kl_warmup_steps: int = 2000


class Encoder(nn.Module):
    def __init__(self, c: int, d: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),  # (B, 2c, 14, 14)
            nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1), nn.SiLU(),  # (B, 4c, 7, 7)
            nn.Flatten(),
            nn.Linear(4 * c * 49, 2 * d),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.net(x * 2 - 1).chunk(2, dim=1)  # each (B, d)
        return mean, log_var


class Decoder(nn.Module):
    """z -> (mu, log_scale) of the pixel likelihood; mu in (0, 1) is also the image shown."""

    def __init__(self, c: int, d: int) -> None:
        super().__init__()
        self.c = c
        self.fc = nn.Linear(d, 4 * c * 49)
        self.net = nn.Sequential(
            nn.SiLU(),
            nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),  # 14x14
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.SiLU(),  # 28x28
            nn.Conv2d(c, 2, 3, padding=1),
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(z).view(-1, 4 * self.c, 7, 7)
        out = self.net(h)  # (B, 2, 28, 28)
        mu = torch.sigmoid(out[:, :1])
        log_scale = torch.clamp(out[:, 1:], min=MIN_LOG_SCALE)
        return mu, log_scale


class VAE(GenerativeModel):
    family = "vae"

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        self.encoder = Encoder(config.channels, config.latent_dim)
        self.decoder = Decoder(config.channels, config.latent_dim)
        self.step: torch.Tensor  # optimisation steps taken, for the KL warm-up; checkpointed
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=self.config.lr)]

    def neg_elbo(self, x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """Per-image negative ELBO in nats. (B, 1, 28, 28) -> (B,)"""
        mean, log_var = self.encoder(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        mu, log_scale = self.decoder(z)
        rec = discretized_logistic_log_prob(x, mu.float(), log_scale.float())
        kl = 0.5 * (mean.float() ** 2 + log_var.float().exp() - 1 - log_var.float()).sum(1)
        return -rec + beta * kl

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        (opt,) = optimizers
        beta = min(1.0, (int(self.step) + 1) / max(1, self.config.kl_warmup_steps))
        loss = mean_bits_per_dim(self.neg_elbo(x, beta), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.step.add_(1)
        return {"bpd": loss.item(), "beta": beta}

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return float(mean_bits_per_dim(self.neg_elbo(x), x))

    @torch.no_grad()
    def iwae_log_prob(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Importance-weighted lower bound on log p(x) in nats, k samples. (B,...) -> (B,)"""
        mean, log_var = self.encoder(x)
        std = torch.exp(0.5 * log_var)
        log_w = []
        for _ in range(k):
            eps = torch.randn_like(mean)
            z = mean + eps * std
            mu, log_scale = self.decoder(z)
            log_px_z = discretized_logistic_log_prob(x, mu, log_scale)
            log_pz = -0.5 * (z**2 + math.log(2 * math.pi)).sum(1)
            log_qz = -0.5 * (eps**2 + log_var + math.log(2 * math.pi)).sum(1)
            log_w.append(log_px_z + log_pz - log_qz)
        return torch.logsumexp(torch.stack(log_w), dim=0) - math.log(k)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=generator)
        return self.decoder(z)[0]

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        d = self.config.latent_dim
        return {
            "encoder": GraphSpec(
                self.encoder, (torch.rand(2, 1, 28, 28),), ["image"], ["mean", "log_var"],
                {"image": {0: "batch"}, "mean": {0: "batch"}, "log_var": {0: "batch"}},
            ),
            "decoder": GraphSpec(
                self.decoder, (torch.randn(2, d),), ["z"], ["image", "log_scale"],
                {"z": {0: "batch"}, "image": {0: "batch"}, "log_scale": {0: "batch"}},
            ),
        }  # fmt: skip

    def card_fields(self) -> dict[str, Any]:
        return {
            "latent_dim": self.config.latent_dim,
            "likelihood": {"kind": "discretized_logistic", "components": 1},
        }
