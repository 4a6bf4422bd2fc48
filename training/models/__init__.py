"""One module per family; MODEL_CLASSES maps a family name to its model class and config class,
and is the one list of the families that can be trained (the CLI's choices come from it)."""

from __future__ import annotations

from typing import Any

from .autoencoder import Autoencoder, AutoencoderConfig
from .base import GenerativeModel, GraphSpec
from .classifier import Classifier, ClassifierConfig
from .cvae import CVAE, CVAEConfig
from .dcgan import DCGAN, DCGANConfig
from .pixelcnn import PixelCNN, PixelCNNConfig
from .pixelrnn import PixelRNN, PixelRNNConfig
from .vae import VAE, VAEConfig
from .wgan_gp import WGANGP, WGANGPConfig

MODEL_CLASSES: dict[str, tuple[type[GenerativeModel], type[Any]]] = {
    "vae": (VAE, VAEConfig),
    "dcgan": (DCGAN, DCGANConfig),
    "pixelcnn": (PixelCNN, PixelCNNConfig),
    "autoencoder": (Autoencoder, AutoencoderConfig),
    "cvae": (CVAE, CVAEConfig),
    "wgan-gp": (WGANGP, WGANGPConfig),
    "pixelrnn": (PixelRNN, PixelRNNConfig),
    "classifier": (Classifier, ClassifierConfig),
}

__all__ = ["MODEL_CLASSES", "GenerativeModel", "GraphSpec"]
