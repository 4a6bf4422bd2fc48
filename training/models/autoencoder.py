"""Deterministic convolutional autoencoder: the VAE's encoder and decoder without the noise.

The encoder maps an image to one code `z`; the decoder maps `z` back to an image. Training
minimises the binary cross-entropy between each pixel's value in [0, 1] and the decoder's
sigmoid output (the pixel intensities are the targets). There is no prior over `z`, so the
model cannot sample: it encodes, reconstructs and interpolates between codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import GenerativeModel, GraphSpec


@dataclass
class AutoencoderConfig:
    latent_dim: int = 32
    channels: int = 32
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3


class Encoder(nn.Module):
    """image (B, 1, 28, 28) in [0, 1] -> z (B, d)."""

    def __init__(self, c: int, d: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),  # (B, 2c, 14, 14)
            nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1), nn.SiLU(),  # (B, 4c, 7, 7)
            nn.Flatten(),
            nn.Linear(4 * c * 49, d),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z: torch.Tensor = self.net(x * 2 - 1)
        return z


class Decoder(nn.Module):
    """z (B, d) -> pixel logits (B, 1, 28, 28)."""

    def __init__(self, c: int, d: int) -> None:
        super().__init__()
        self.c = c
        self.fc = nn.Linear(d, 4 * c * 49)
        self.net = nn.Sequential(
            nn.SiLU(),
            nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1), nn.SiLU(),  # 14x14
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.SiLU(),  # 28x28
            nn.Conv2d(c, 1, 3, padding=1),
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(self.fc(z).view(-1, 4 * self.c, 7, 7))
        return logits


class ImageOut(nn.Module):
    """The exported decoder: z -> image in [0, 1]."""

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))


class Autoencoder(GenerativeModel):
    family = "autoencoder"

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__(config)
        self.encoder = Encoder(config.channels, config.latent_dim)
        self.decoder = Decoder(config.channels, config.latent_dim)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.parameters(), lr=self.config.lr)]

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image binary cross-entropy in nats, summed over pixels. (B, 1, 28, 28) -> (B,)"""
        logits = self.decoder(self.encoder(x)).float()
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x)))

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        (opt,) = optimizers
        loss = self.reconstruction_loss(x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"bce": loss.item()}

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Mean squared error per pixel of the reconstructions."""
        return float(((self.reconstruct(x) - x) ** 2).mean())

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        d = self.config.latent_dim
        return {
            "encoder": GraphSpec(
                self.encoder, (torch.rand(2, 1, 28, 28),), ["image"], ["z"],
                {"image": {0: "batch"}, "z": {0: "batch"}},
            ),
            "decoder": GraphSpec(
                ImageOut(self.decoder), (torch.randn(2, d),), ["z"], ["image"],
                {"z": {0: "batch"}, "image": {0: "batch"}},
            ),
        }  # fmt: skip

    def card_fields(self) -> dict[str, Any]:
        return {"latent_dim": self.config.latent_dim}
