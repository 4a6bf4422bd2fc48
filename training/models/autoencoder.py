"""Deterministic convolutional autoencoder: the VAE's encoder and decoder without the noise.

The encoder maps an image to one code `z`; the decoder maps `z` back to an image. Training
minimises the binary cross-entropy between each pixel's value in [0, 1] and the decoder's
sigmoid output (the pixel intensities are the targets). There is no prior over `z`, so the
model cannot sample: it encodes, reconstructs and interpolates between codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..imageset import DataSpec
from ..metrics import class_entropy, frechet_distance
from .base import GenerativeModel, GraphSpec, descend
from .latent import ConvDecoder, ImageEncoder, LatentConfig

if TYPE_CHECKING:
    from ..evaluation import Evaluation


@dataclass
class AutoencoderConfig(LatentConfig):
    epochs: int = 4


class Decoder(ConvDecoder):
    """z (B, d) -> pixel logits (B, C, H, W)."""

    def __init__(self, c: int, d: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__(d, c, image_shape[0], image_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.stack(z)


class ImageOut(nn.Module):
    """The exported decoder: z -> image in [0, 1]."""

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))


class Autoencoder(GenerativeModel):
    family = "autoencoder"
    tracks_samples = False
    size_multiple = 4

    def __init__(self, config: AutoencoderConfig, data: DataSpec) -> None:
        super().__init__(config, data)
        self.encoder = ImageEncoder(config.channels, config.latent_dim, data.image_shape)  # -> z
        self.decoder = Decoder(config.channels, config.latent_dim, data.image_shape)

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image binary cross-entropy in nats, summed over pixels. (B, C, H, W) -> (B,)"""
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
        descend(opt, loss)
        return {"bce": loss.item()}

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Mean squared error per pixel of the reconstructions."""
        return float(((self.reconstruct(x) - x) ** 2).mean())

    def evaluate(self, ev: Evaluation) -> dict[str, float | None]:
        """No prior to sample from: the mean squared error per pixel of the split's
        reconstructions, and their FD against the same images, beside the floor of as many
        real images of the reference split."""
        x = ev.x
        recon = torch.cat([self.reconstruct(x[i : i + 500]) for i in range(0, len(x), 500)])
        _, f_images = ev.features(x)
        logits, f_recon = ev.features(recon)
        bce = ev.per_image(lambda xb, _: self.reconstruction_loss(xb), "BCE")
        n = len(x)
        ev.how.update(
            reconstruction_fd=f"reconstructions of the {n} {ev.split} images vs the same images",
            fd_floor=f"{n} real {ev.reference_split} images vs the same {ev.split} images",
        )  # fmt: skip
        return {
            f"{ev.split}_reconstruction_mse": float(((recon - x) ** 2).mean()),
            f"{ev.split}_reconstruction_bce_nats": float(bce.mean()),
            "reconstruction_fd": frechet_distance(f_recon, f_images),
            "fd_real_floor": frechet_distance(ev.reference_features[:n], f_images),
            "reconstruction_class_entropy": (
                None if logits is None else class_entropy(logits.argmax(1), len(logits[0]))
            ),
        }

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        d = self.config.latent_dim
        return {
            "encoder": GraphSpec(
                self.encoder, (self.example_images(),), ["image"], ["z"],
                {"image": {0: "batch"}, "z": {0: "batch"}},
            ),
            "decoder": GraphSpec(
                ImageOut(self.decoder), (torch.randn(2, d),), ["z"], ["image"],
                {"z": {0: "batch"}, "image": {0: "batch"}},
            ),
        }  # fmt: skip

    def card_fields(self) -> dict[str, Any]:
        return {"latent_dim": self.config.latent_dim}
