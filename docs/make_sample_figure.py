"""Draw docs/images/samples.png through a running service: one row of samples per model.

python -m service --port 8000 &
python docs/make_sample_figure.py --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

import httpx
from PIL import Image, ImageDraw

MODELS = {"vae-fashion": {}, "dcgan-fashion": {}, "pixelcnn-fashion": {"temperature": 1.0}}
N, SEED, SCALE, LABEL_W = 10, 0, 2, 130


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    default_out = Path(__file__).parent / "images" / "samples.png"
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args()
    rows = []
    with httpx.Client(base_url=args.url, timeout=600) as client:
        for model, knobs in MODELS.items():
            body = {"model": model, "n": N, "seed": SEED, **knobs}
            response = client.post("/sample", json=body, headers={"Accept": "image/png"})
            response.raise_for_status()
            # The service tiles N images ceil(sqrt(N)) to a row, 2 px apart; cut them out again.
            grid = Image.open(io.BytesIO(response.content)).convert("L")
            cols, step = math.ceil(math.sqrt(N)), 28 + 2
            boxes = [((i % cols) * step, (i // cols) * step) for i in range(N)]
            tiles = [grid.crop((x, y, x + 28, y + 28)) for x, y in boxes]
            rows.append((model, tiles))
    tile = 28 * SCALE
    canvas = Image.new("L", (LABEL_W + N * (tile + 4), len(rows) * (tile + 4)), 255)
    draw = ImageDraw.Draw(canvas)
    for r, (model, tiles) in enumerate(rows):
        y = r * (tile + 4)
        draw.text((6, y + tile // 2 - 6), model, fill=0)
        for i, image in enumerate(tiles):
            canvas.paste(image.resize((tile, tile), Image.NEAREST), (LABEL_W + i * (tile + 4), y))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
