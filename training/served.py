"""The sample quality of a model as a running service serves it: FD and class entropy of images
drawn through ``POST /sample`` at each sampling temperature, against the test split in the
classifier's space. The pixel-by-pixel families' torch samplers take seconds per image; through
the service's exact fast samplers 1,000 samples take 1.5 to 3 minutes, which is how a shipped
model's card gets its FD against temperature without its checkpoint."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelstore.layout import write_atomically

from .data import DATASETS
from .evaluation import Evaluation, predicted_class_entropy
from .extractors import open_extractor
from .metrics import frechet_distance

REQUEST_N = 16
"""Images per request: the service's default cap for the pixel-by-pixel families
(SERVICE_MAX_AUTOREGRESSIVE_N)."""


def served_quality(
    url: str,
    model: str,
    temperatures: tuple[float, ...],
    fd_samples: int = 1000,
    classifier: Path | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """{"metrics": {...}, "evaluation": {...}}: FD and class entropy of ``fd_samples`` served
    samples at each temperature and at 1.0, in the card's keys (``fd_temperature_0.8``, ...),
    and at 1.0 the whole set of figures (``fd``, KID, precision, recall, the real floors).
    ``version``: the version the service must be serving."""
    from genserve import Client

    with Client(url, timeout=600) as client:
        info = client.model(model)
        if info.state != "ready":
            raise ValueError(f"{model} is not ready on {url}: {info.reason or info.state}")
        if version is not None and info.version != version:
            raise ValueError(f"{url} serves {model} v{info.version}, not v{version}")
        if info.sampling is None:
            raise ValueError(f"{model} has no sampling temperature (only the PixelCNN and "
                             "PixelRNN families have one)")  # fmt: skip
        if info.dataset not in DATASETS:
            raise ValueError(f"{model} was trained on {info.dataset!r}, not a shipped dataset")
        ev = Evaluation(info.dataset, partial(open_extractor, info.dataset, classifier),
                        fd_samples=fd_samples)  # fmt: skip
        metrics: dict[str, Any] = {}
        started = time.perf_counter()
        measured = sorted({*temperatures, 1.0})
        for t in measured:
            draw = partial(_served_draw, client, model, t)
            logits, features = ev.features(ev.draw(draw, f"{model} at temperature {t:g}"))
            if t == 1.0:
                metrics.update(ev.quality_against_split(features))
            metrics[f"fd_temperature_{t:g}"] = frechet_distance(features, ev.split_features)
            metrics[f"class_entropy_temperature_{t:g}"] = predicted_class_entropy(logits)
        ev.how.update(
            model=model, version=info.version, url=url, fd_samples=fd_samples,
            temperatures=measured,
            sampler=f"POST /sample of {model} v{info.version} ({info.provider}), "
            f"{REQUEST_N} images a request, each request's seed drawn from the evaluation's",
            seconds=round(time.perf_counter() - started, 1),
        )  # fmt: skip
    return {"metrics": metrics, "evaluation": ev.how}


def _served_draw(
    client: Any, model: str, temperature: float, n: int, generator: torch.Generator
) -> torch.Tensor:
    """``n`` images of ``model`` at ``temperature``, (n, C, H, W) in [0, 1], in requests of
    REQUEST_N with seeds from ``generator`` (so that a draw is repeatable)."""
    chunks = []
    for start in range(0, n, REQUEST_N):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        count = min(REQUEST_N, n - start)
        images = client.sample(model, n=count, seed=seed, temperature=temperature).images
        grey = images.ndim == 3  # (N, H, W); a colour model's are (N, H, W, 3)
        chunks.append(images[:, None] if grey else np.moveaxis(images, -1, 1))
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32))


def add_to_card(card: Path, measured: dict[str, Any]) -> None:
    """Write the temperature rows into a model card, and how they were measured (with the
    whole set of figures at temperature 1); the figures of its export stay as they are."""
    body = json.loads(card.read_text())
    rows = {k: v for k, v in measured["metrics"].items() if "_temperature_" in k}
    body["metrics"].update(rows)
    at_1 = {k: v for k, v in measured["metrics"].items() if k not in rows}
    body["evaluation"]["served_temperatures"] = {**measured["evaluation"], "at_temperature_1": at_1}
    write_atomically(card, (json.dumps(body, indent=2) + "\n").encode())
