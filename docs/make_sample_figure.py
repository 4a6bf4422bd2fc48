"""Draw docs/images/samples.png through a running service: one row of images per model.

Each sampler gets one row of samples (seed 0, autoregressive models at temperature 1); the
conditional VAE one sample of each class, left to right in class order; the autoencoder, which
cannot sample, the reconstructions of the row of test images above it (the first test image
of each class).

python -m service --port 8000 &
python docs/make_sample_figure.py --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageDraw

SAMPLERS: dict[str, dict[str, Any]] = {
    "vae-fashion": {},
    "dcgan-fashion": {},
    "wgan-gp-fashion": {},
    "pixelcnn-fashion": {"temperature": 1.0},
    "pixelrnn-fashion": {"temperature": 1.0},
}
N, SEED, SCALE, LABEL_W = 10, 0, 2, 150


def _tiles(images: list[Any]) -> list[Image.Image]:
    """(C, H, W) nested arrays in [0, 1] -> 8-bit grayscale tiles."""
    return [
        Image.fromarray(np.round(np.asarray(a, np.float32)[0] * 255).astype(np.uint8))
        for a in images
    ]


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> list[Image.Image]:
    """The images a request returns; prints the request's wall-clock time per image."""
    started = time.perf_counter()
    response = client.post(path, json={**body, "format": "array"})
    seconds = time.perf_counter() - started
    response.raise_for_status()
    images = response.json()["images"]
    print(f"{body['model']} {path}: {seconds / len(images):.4f} s per image ({len(images)} images)")
    return _tiles(images)


def _test_images() -> list[np.ndarray]:
    """The first test image of each class, in class order, as (1, 28, 28) arrays."""
    from training.data import load_fashion_mnist

    test = load_fashion_mnist("test")
    firsts = [int((test.labels == c).nonzero()[0]) for c in range(10)]
    return [test.float_images()[i].numpy() for i in firsts]


def rows(client: httpx.Client) -> list[tuple[str, list[Image.Image]]]:
    drawn = []
    for model, knobs in SAMPLERS.items():
        drawn.append(
            (model, _post(client, "/sample", {"model": model, "n": N, "seed": SEED, **knobs}))
        )
        if model == "vae-fashion":
            per_class = [
                _post(
                    client, "/sample", {"model": "cvae-fashion", "n": 1, "seed": SEED, "label": c}
                )[0]
                for c in range(10)
            ]
            drawn.append(("cvae-fashion (class 0-9)", per_class))
    test = _test_images()
    drawn.append(("test images", _tiles([t.tolist() for t in test])))
    recon = _post(
        client,
        "/reconstruct",
        {"model": "autoencoder-fashion", "images": [t.tolist() for t in test]},
    )
    drawn.append(("autoencoder-fashion", recon))
    return drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    default_out = Path(__file__).parent / "images" / "samples.png"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    with httpx.Client(base_url=args.url, timeout=600) as client:
        drawn = rows(client)
    tile = 28 * SCALE
    canvas = Image.new("L", (LABEL_W + N * (tile + 4), len(drawn) * (tile + 4)), 255)
    draw = ImageDraw.Draw(canvas)
    for r, (name, tiles) in enumerate(drawn):
        y = r * (tile + 4)
        draw.text((6, y + tile // 2 - 6), name, fill=0)
        for i, image in enumerate(tiles):
            canvas.paste(
                image.resize((tile, tile), Image.Resampling.NEAREST), (LABEL_W + i * (tile + 4), y)
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
