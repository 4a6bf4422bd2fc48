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

__all__ = ["FAMILIES", "GenerativeModel", "GraphSpec"]
