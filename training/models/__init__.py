"""One module per family; FAMILIES maps a family name to its model class and config."""

from __future__ import annotations

from typing import Any

from .base import GenerativeModel, GraphSpec
from .classifier import Classifier, ClassifierConfig
from .dcgan import DCGAN, DCGANConfig
from .pixelcnn import PixelCNN, PixelCNNConfig
from .vae import VAE, VAEConfig

FAMILIES: dict[str, tuple[type[GenerativeModel], type[Any]]] = {
    "vae": (VAE, VAEConfig),
    "dcgan": (DCGAN, DCGANConfig),
    "pixelcnn": (PixelCNN, PixelCNNConfig),
    "classifier": (Classifier, ClassifierConfig),
}
# Families the store is designed for whose models have not landed yet.
PLANNED_FAMILIES = ("autoencoder", "cvae", "wgan-gp", "pixelrnn")

__all__ = ["FAMILIES", "PLANNED_FAMILIES", "GenerativeModel", "GraphSpec"]
