from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app, load_store
from service.config import ServiceConfig, Settings
from service.generation.families import FAMILIES
from service.registry.control import ModelControl
from service.registry.registry import Registry
from tests.support.tiny_store import (
    write_autoencoder,
    write_cvae,
    write_pixelrnn,
    write_rgb_pixel_store,
    write_rgb_store,
    write_tiny_store,
)

REPO = Path(__file__).resolve().parent.parent
SHIPPED_STORE = REPO / "model_store"


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vae-tiny, dcgan-tiny and pixelcnn-tiny: tiny ONNX graphs, model.json per the contract."""
    return write_tiny_store(tmp_path_factory.mktemp("tiny_store"))


@pytest.fixture(scope="session")
def tiny_store_with_ae(tmp_path_factory: pytest.TempPathFactory, tiny_store: Path) -> Path:
    root = tmp_path_factory.mktemp("tiny_store_ae") / "store"
    shutil.copytree(tiny_store, root)
    write_autoencoder(root)
    return root


@pytest.fixture(scope="session")
def tiny_store_all(tmp_path_factory: pytest.TempPathFactory, tiny_store_with_ae: Path) -> Path:
    """Every tiny model: the tiny store, ae-tiny, cvae-tiny and pixelrnn-tiny."""
    root = tmp_path_factory.mktemp("tiny_store_all") / "store"
    shutil.copytree(tiny_store_with_ae, root)
    write_cvae(root)
    write_pixelrnn(root)
    return root


@pytest.fixture(scope="session")
def tiny_store_rgb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Colour models only: vae-rgb-tiny (3, 32, 32) and dcgan-rgb-tiny (3, 28, 28)."""
    return write_rgb_store(tmp_path_factory.mktemp("tiny_store_rgb"))


@pytest.fixture(scope="session")
def tiny_store_rgb_pixel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One colour pixel model: pixelcnn-rgb-tiny (3, 32, 32)."""
    return write_rgb_pixel_store(tmp_path_factory.mktemp("tiny_store_rgb_pixel"))


@pytest.fixture(scope="session")
def shipped_or_tiny_store(tiny_store: Path) -> Path:
    """The repo's model_store/ once it holds a model the service serves, else the tiny store."""
    cards = SHIPPED_STORE.glob("*.v*.json")
    families = {json.loads(card.read_text()).get("family") for card in cards}
    return SHIPPED_STORE if families & set(FAMILIES) else tiny_store


def tiny_settings(store: Path, **overrides: Any) -> Settings:
    return Settings(model_store=store, device="cpu", intra_op_threads=1, **overrides)


def load_registry(settings: Settings) -> Registry:
    """Every model of the store, loaded as the service's start-up loads them."""
    return load_store(ServiceConfig.from_settings(settings))[0]


def load_control(settings: Settings) -> ModelControl:
    """``load_registry``'s models, with the control that loads, unloads and reloads them."""
    return ModelControl(*load_store(ServiceConfig.from_settings(settings)))


@pytest.fixture(scope="session")
def registry(tiny_store_with_ae: Path) -> Registry:
    return load_registry(tiny_settings(tiny_store_with_ae))


@pytest.fixture(scope="module")
def client(tiny_store_with_ae: Path) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_settings(tiny_store_with_ae))) as test_client:
        yield test_client
