"""The work every peer server does for one /sample request, the same as the service does it:
seed -> latents -> one onnxruntime run for the whole batch -> 8-bit PNG -> base64.

Peers import this module from their own folder, so it needs only numpy, Pillow and onnxruntime
(the PyTriton peer runs it in a separate Python 3.12 environment without the service package).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
DEFAULT_STORE = REPO / "model_store"
CPU = "CPUExecutionProvider"

GRAPH_ROLES = {"dcgan-fashion": "generator", "vae-fashion": "decoder"}
"""The models the bench measures, and the graph of each that turns latents into images."""


def peer_arguments(
    description: str,
    ports: dict[str, int],
    per_model: tuple[str, str],
    batch_timeout_help: str | None = None,
) -> argparse.Namespace:
    """What every batching peer takes: ``--host``, its ``ports`` (flag: default), ``--store``,
    ``per_model`` (the flag and help of its copies per model, default 1), and its batching."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    for flag, port in ports.items():
        parser.add_argument(flag, type=int, default=port)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    flag, help_text = per_model
    parser.add_argument(flag, type=int, default=1, help=help_text)
    parser.add_argument("--max-batch-size", type=int, default=64, help="requests per batch")
    parser.add_argument("--batch-timeout-us", type=int, default=1000, help=batch_timeout_help)
    return parser.parse_args()


def latents(seed: int, n: int, dim: int) -> np.ndarray:
    """The service's latents: row i depends on the seed only, never on n."""
    return np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)


def png_base64(images: np.ndarray) -> list[str]:
    """(B, 1, H, W) floats in [0, 1] to base64 8-bit grayscale PNGs."""
    encoded = []
    for image in images:
        pixels = np.round(np.clip(image[0], 0.0, 1.0) * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
        encoded.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
    return encoded


@dataclass(frozen=True)
class GraphFile:
    path: Path
    latent_dim: int
    card: dict[str, Any]


def graph_file(model: str, store: Path = DEFAULT_STORE) -> GraphFile:
    """The image graph of the newest version of ``model``, as its model card
    (``<name>.v<version>.json``) names it, relative to the store."""
    cards = {
        int(p.name.split(".v")[-1].removesuffix(".json")): p for p in store.glob(f"{model}.v*.json")
    }
    if not cards:
        raise FileNotFoundError(f"{store} has no model card for {model}")
    card = json.loads(cards[max(cards)].read_text())
    path = store / card["graphs"][GRAPH_ROLES[model]]["file"]
    return GraphFile(path, int(card["latent_dim"]), card)


def threads_per_worker(workers: int) -> int:
    """onnxruntime intra-op threads for each of ``workers`` sessions of a graph that may run at
    once: 0 (onnxruntime's choice) for one, else the usable cores shared out between them, as
    the service shares them between its workers, so that they do not fight for the cores."""
    if workers <= 1:
        return 0
    return max(1, len(os.sched_getaffinity(0)) // workers)


def open_session(path: Path, threads: int = 0, provider: str = CPU) -> ort.InferenceSession:
    """onnxruntime's defaults (every optimisation, one thread per physical core), on the CPU
    unless ``provider`` says otherwise."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=[provider])


class GraphSampler:
    """One graph in one session; ``sample`` serves a whole batch of requests with one run."""

    def __init__(
        self, model: str, store: Path = DEFAULT_STORE, threads: int = 0, provider: str = CPU
    ) -> None:
        graph = graph_file(model, store)
        self.model, self.latent_dim = model, graph.latent_dim
        self.session = open_session(graph.path, threads, provider)
        self.sample([(1, 0)])  # warm-up

    def images(self, requests: list[tuple[int, int]]) -> list[np.ndarray]:
        """(n, seed) per request -> that request's (n, 1, H, W) images."""
        z = np.concatenate([latents(seed, n, self.latent_dim) for n, seed in requests])
        (images,) = self.session.run(["image"], {"z": z})  # (sum n, 1, 28, 28)
        bounds = np.cumsum([n for n, _ in requests])[:-1]
        return np.split(images, bounds)

    def sample(self, requests: list[tuple[int, int]]) -> list[list[str]]:
        """(n, seed) per request -> that request's base64 PNGs."""
        return [png_base64(images) for images in self.images(requests)]
