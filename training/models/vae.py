"""Convolutional VAE with a discretized logistic likelihood on the 8-bit pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..data import DataSpec
from ..nn import MIN_LOG_SCALE, mean_bits_per_dim
from .base import GraphSpec
from .latent import ConvDecoder, GaussianLatentModel, ImageEncoder, VariationalConfig


@dataclass
class VAEConfig(VariationalConfig):
    epochs: int = 12


class Encoder(ImageEncoder):
    """image (B, C, H, W) -> mean, log_var (B, d)."""

    def __init__(self, c: int, d: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__(c, 2 * d, image_shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        mean, log_var = super().forward(x).chunk(2, dim=1)  # each (B, d)
        return mean, log_var


class Decoder(ConvDecoder):
    """z -> (mu, log_scale) of the pixel likelihood; mu in (0, 1) is also the image shown."""

    def __init__(self, c: int, d: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__(d, c, 2 * image_shape[0], image_shape)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_scale = self.stack(z).chunk(2, dim=1)  # each (B, C, H, W)
        return torch.sigmoid(mu), torch.clamp(log_scale, min=MIN_LOG_SCALE)


class VAE(GaussianLatentModel):
    family = "vae"

    def __init__(self, config: VAEConfig, data: DataSpec) -> None:
        super().__init__(config, data)
        self.encoder = Encoder(config.channels, config.latent_dim, data.image_shape)
        self.decoder = Decoder(config.channels, config.latent_dim, data.image_shape)

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        (opt,) = optimizers
        beta = self.kl_weight(int(self.step))
        loss = mean_bits_per_dim(self.neg_elbo(x, y, beta), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.step.add_(1)
        return {"bpd": loss.item(), "beta": beta}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=generator)
        return self.decoder(z)[0]

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        d = self.config.latent_dim
        return {
            "encoder": GraphSpec(
                self.encoder, (self.example_images(),), ["image"], ["mean", "log_var"],
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
