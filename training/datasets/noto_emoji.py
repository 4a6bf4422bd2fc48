"""Noto Color Emoji as a folder of colour images, one subfolder per Unicode emoji group.

    python -m training.datasets.noto_emoji [--out data/noto-emoji] [--size 64]

Source: Debian's ``fonts-noto-color-emoji`` (Google's Noto Color Emoji font; its images are
Apache-2.0, the font SIL OFL 1.1: /usr/share/doc/fonts-noto-color-emoji/copyright) and
``unicode-data`` (emoji-test.txt: every emoji and its group). ``make data-noto-emoji`` installs
both and runs this.

Each fully-qualified emoji of emoji-test.txt (skin-tone variants included unless
``--no-skin-tones``; the "Component" group, lone skin-tone swatches and hair parts, left out) is
drawn from the font's 136×128 colour bitmaps with Pillow (raqm shaping, so that ZWJ sequences
and flags become one glyph; an emoji the font draws as several glyphs is skipped and counted),
cropped to its visible pixels' bounding box, padded to a square with a 4% margin, resized to
``--size`` (Lanczos) and composited onto a white background (``--background``), then written as
an 8-bit RGB PNG: ``<out>/<group>/<codepoints>.png``. The same font and data give the same files.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, features

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
STRIKE = 109
"""The font's one bitmap size (136×128 pixels per emoji)."""
SKIP_GROUPS = ("Component",)
SKIN_TONES = re.compile("[\U0001f3fb-\U0001f3ff]")
BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}


def emoji_list(path: Path = EMOJI_TEST, skin_tones: bool = True) -> list[tuple[str, str, str]]:
    """(group folder name, codepoints, emoji) for each fully-qualified emoji, in file order."""
    out, group = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
            continue
        if "; fully-qualified" not in line or group in SKIP_GROUPS:
            continue
        codes = line.split(";")[0].split()
        text = "".join(chr(int(c, 16)) for c in codes)
        if not skin_tones and SKIN_TONES.search(text):
            continue
        folder = re.sub(r"[^a-z0-9]+", "-", group.lower()).strip("-")
        out.append((folder, "-".join(c.lower() for c in codes), text))
    return out


def render(text: str, font: ImageFont.FreeTypeFont) -> Image.Image | None:
    """The emoji as RGBA cropped to its visible pixels; None when the font draws it as more
    than one glyph (wider than 1.5 times its height) or not at all."""
    canvas = Image.new("RGBA", (136 * 4, 160), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((8, 8), text, font=font, embedded_color=True)
    box = canvas.getchannel("A").getbbox()
    if box is None:
        return None
    left, top, right, bottom = box
    if right - left > 1.5 * (bottom - top) + 8:
        return None
    return canvas.crop(box)


def to_square(img: Image.Image, size: int, background: tuple[int, int, int]) -> Image.Image:
    w, h = img.size
    side = round(max(w, h) * 1.08)
    square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    square.paste(img, ((side - w) // 2, (side - h) // 2))
    square = square.resize((size, size), Image.Resampling.LANCZOS)
    flat = Image.new("RGBA", square.size, (*background, 255))
    return Image.alpha_composite(flat, square).convert("RGB")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.datasets.noto_emoji", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("data/noto-emoji"))
    p.add_argument("--size", type=int, default=64, help="pixels per side (28 to 64)")
    p.add_argument("--background", choices=sorted(BACKGROUNDS), default="white")
    p.add_argument("--no-skin-tones", action="store_true", help="leave out skin-tone variants")
    args = p.parse_args(argv)
    for path, package in ((FONT, "fonts-noto-color-emoji"), (EMOJI_TEST, "unicode-data")):
        if not path.is_file():
            print(f"error: no {path}: apt-get install {package} (make data-noto-emoji)",
                  file=sys.stderr)  # fmt: skip
            return 2
    if not features.check("raqm"):
        print("warning: Pillow without raqm: ZWJ sequences and flags are skipped", file=sys.stderr)
    font = ImageFont.truetype(str(FONT), STRIKE)
    counts: Counter[str] = Counter()
    skipped = 0
    for folder, name, text in emoji_list(skin_tones=not args.no_skin_tones):
        img = render(text, font)
        if img is None:
            skipped += 1
            continue
        (args.out / folder).mkdir(parents=True, exist_ok=True)
        to_square(img, args.size, BACKGROUNDS[args.background]).save(
            args.out / folder / f"{name}.png"
        )
        counts[folder] += 1
    for folder, n in sorted(counts.items()):
        print(f"{n:6d}  {folder}")
    print(f"{sum(counts.values()):6d}  images of {args.size}×{args.size} in {args.out} "
          f"({skipped} emoji skipped: drawn as more than one glyph)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
