"""Take docs/images/ui.png: the web page of a running service, after a sample grid, an
interpolation and a reconstruction, in Debian's chromium driven headless by Playwright.

python -m service --port 8000 &
python docs/make_ui_screenshot.py --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
from pathlib import Path

from PIL import Image
from playwright.sync_api import FilePayload, expect, sync_playwright

FASHION_MNIST_TEST = (
    Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    / "t10k-images-idx3-ubyte.gz"
)
MODEL, SEED, UPLOADED = "vae-fashion", 0, 1  # UPLOADED: index in the test split (a pullover)


def fashion_png(index: int) -> bytes:
    with gzip.open(FASHION_MNIST_TEST, "rb") as f:
        pixels = f.read()[16 + index * 784 : 16 + (index + 1) * 784]
    out = io.BytesIO()
    Image.frombytes("L", (28, 28), pixels).save(out, format="PNG")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "images" / "ui.png")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{args.url}/ui/?model={MODEL}")
        expect(page.locator("#seed-used")).not_to_have_text("none yet")
        page.fill("#seed", str(SEED))
        page.press("#seed", "Enter")
        expect(page.locator("#seed-used")).to_have_text(str(SEED))
        page.get_by_label("slerp").check()
        page.click("#interpolate-form button[type=submit]")
        expect(page.locator("#strip img")).to_have_count(8)
        for _ in range(3):
            page.get_by_label("Step", exact=True).press("ArrowRight")
        upload = FilePayload(
            name="pullover.png", mimeType="image/png", buffer=fashion_png(UPLOADED)
        )
        page.set_input_files("#upload", files=[upload])
        page.click("#reconstruct")
        expect(page.locator("#reconstruction-figure")).to_be_visible()
        page.wait_for_function("[...document.images].every((img) => img.complete)")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
