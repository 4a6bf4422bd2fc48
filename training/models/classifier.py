"""The project's Fashion-MNIST classifier. Its penultimate layer is the feature space of the
Fréchet distance, and its predictions give the class histogram of samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..imageset import DataSpec
from .base import GenerativeModel, GraphSpec, TrainingConfig, descend

if TYPE_CHECKING:
    from ..evaluation import Evaluation


@dataclass
class ClassifierConfig(TrainingConfig):
    channels: int = 32
    features: int = 128
    """The penultimate layer's size: the dimension of the FD's feature space."""
    epochs: int = 6


class ClassifierNet(nn.Module):
    """image (B, C, H, W) in [0, 1] -> (logits (B, classes), features (B, F))."""

    def __init__(self, c: int, f: int, data: DataSpec) -> None:
        super().__init__()
        channels, h, w = data.image_shape
        self.body = nn.Sequential(
            nn.Conv2d(channels, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
            nn.MaxPool2d(2),  # (B, c, 14, 14)
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
            nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 2c, 7, 7)
            nn.Flatten(), nn.Dropout(0.3),
            nn.Linear(2 * c * (h // 4) * (w // 4), f), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(f, data.num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x * 2 - 1)
        return self.head(features), features


class Classifier(GenerativeModel):
    """Not generative, but trained, checkpointed and exported the same way."""

    family = "classifier"
    tracks_samples = False
    needs_classes = True

    def __init__(self, config: ClassifierConfig, data: DataSpec) -> None:
        super().__init__(config, data)
        self.net = ClassifierNet(config.channels, config.features, data)

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        (opt,) = optimizers
        # Light augmentation: random horizontal flips keep garments garments.
        flip = torch.rand(len(x)) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        loss = F.cross_entropy(self.net(x)[0], y)
        descend(opt, loss)
        return {"loss": loss.item()}

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Error rate on the held-out split."""
        return float((self.net(x)[0].argmax(1) != y).float().mean())

    def evaluate(self, ev: Evaluation) -> dict[str, float | None]:
        """Accuracy on the split; a classifier has no samples to measure."""
        pred = ev.per_image(lambda xb, _: self.net(xb)[0].argmax(1), "accuracy")
        return {f"{ev.split}_accuracy": float((pred == ev.y.numpy()).mean())}

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        return {
            "classifier": GraphSpec(
                self.net, (self.example_images(),), ["image"], ["logits", "features"],
                {"image": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
            )
        }  # fmt: skip
