"""Images in and out: what a caller passes (arrays, PIL images, paths, PNG bytes) to the base64
PNGs the API takes, the API's base64 PNGs back to float32 arrays, and grids like the API's."""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

import numpy as np
from PIL import Image

ImageInput: TypeAlias = np.ndarray | Image.Image | str | os.PathLike[str] | bytes
"""One image, or with an array of N images several: an array, floats in [0, 1] or uint8,
grayscale (H, W), (1, H, W), (N, H, W) or (N, 1, H, W), or colour, channels last, (H, W, 3),
(N, H, W, 3) (an alpha channel, 4, is dropped); a PIL image or a path to an image file (sent
grayscale or RGB as it is); or the bytes of a PNG file. The service converts each image to
its model's channels."""
Images: TypeAlias = ImageInput | Sequence[ImageInput]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRID_PADDING = 2
"""Black pixels between the tiles of a grid, as in the API's PNG grids."""


# ---------------------------------------------------------------- to the API


def encode_images(images: Images) -> list[str]:
    """Every image of ``images`` as a base64 PNG."""
    if isinstance(images, Sequence) and not isinstance(images, str | bytes):
        return [png for item in images for png in _encode(item)]
    return _encode(images)


def encode_image(image: ImageInput, what: str = "image") -> str:
    """Exactly one image as a base64 PNG (a mask, an interpolation end, a traversal's base)."""
    encoded = _encode(image)
    if len(encoded) != 1:
        raise ValueError(f"{what}: expected one image, got {len(encoded)}")
    return encoded[0]


def encode_mask(mask: ImageInput) -> str:
    """A completion mask: in an array, any non-zero pixel keeps (sent white), zero draws."""
    if isinstance(mask, np.ndarray):
        mask = np.where(np.asarray(mask) != 0, np.uint8(255), np.uint8(0))
    return encode_image(mask, "mask")


def _encode(image: ImageInput) -> list[str]:
    if isinstance(image, bytes):
        if not image.startswith(PNG_SIGNATURE):
            raise ValueError("image bytes: not a PNG file")
        return [base64.b64encode(image).decode("ascii")]
    return [base64.b64encode(png_bytes(pixels)).decode("ascii") for pixels in _pixels(image)]


def _pixels(image: ImageInput) -> list[np.ndarray]:
    """(H, W) or (H, W, 3) uint8 arrays."""
    if isinstance(image, str | os.PathLike):
        with Image.open(Path(image)) as opened:
            return [_from_pil(opened)]
    if isinstance(image, Image.Image):
        return [_from_pil(image)]
    if not isinstance(image, np.ndarray):
        raise TypeError(f"not an image: {type(image).__name__} (array, PIL image, path or PNG)")
    array = image
    colour = array.ndim in (3, 4) and array.shape[-1] in (3, 4)
    if colour:
        array = array[..., :3]  # alpha dropped, as the service drops it
    elif array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == (3 if colour else 2):
        array = array[None]
    if array.ndim != (4 if colour else 3):
        raise ValueError(
            f"image array of shape {list(image.shape)}: expected (H, W), (1, H, W), (N, H, W) "
            "or (N, 1, H, W), or colour with the channels last, (H, W, 3) or (N, H, W, 3)"
        )
    return list(to_uint8(array))


def _from_pil(image: Image.Image) -> np.ndarray:
    """Grayscale images (L, 1, I, F, LA) as (H, W), any other (RGB, RGBA, P, CMYK...) as RGB."""
    colour = image.mode == "P" or not set(image.getbands()) <= {"L", "1", "I", "F", "A"}
    mode = "RGB" if colour else "L"
    return np.asarray(image if image.mode == mode else image.convert(mode))


def to_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 as it is; bool as 0 and 255; numbers in [0, 1] rounded to 0..255, as the API's."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255)
    values = np.asarray(array, dtype=np.float32)
    if not np.isfinite(values).all():
        raise ValueError("image array holds NaN or infinite values")
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        raise ValueError(
            f"image array values lie in [{values.min():g}, {values.max():g}]; expected floats "
            "in [0, 1] or uint8"
        )
    return np.rint(values * 255.0).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    """An (H, W) uint8 array as an 8-bit grayscale PNG, (H, W, 3) as RGB (no filtering, zlib
    level 6), in a tenth of the time Pillow's encoder takes for a small image."""
    h, w = pixels.shape[:2]
    colour = pixels.ndim == 3
    scanlines = np.zeros((h, w * (3 if colour else 1) + 1), dtype=np.uint8)  # filter type 0
    scanlines[:, 1:] = pixels.reshape(h, -1)
    header = struct.pack(">IIBBBBB", w, h, 8, 2 if colour else 0, 0, 0, 0)
    idat = zlib.compress(scanlines.tobytes(), 6)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


# ---------------------------------------------------------------- from the API


def decode_images(encoded: Sequence[str]) -> np.ndarray:
    """Base64 PNGs of one size to a read-only float32 array in [0, 1]: (N, H, W) when every PNG
    is grayscale (a model of 1 channel), else (N, H, W, 3), RGB (a model of 3)."""
    if not encoded:
        images: np.ndarray = np.zeros((0, 0, 0), np.float32)
    else:
        decoded = [decode_pixels(text, colour=None) for text in encoded]
        if any(pixels.ndim == 3 for pixels in decoded):
            decoded = [p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=2) for p in decoded]
        images = np.stack(decoded).astype(np.float32) / np.float32(255.0)
    images.setflags(write=False)
    return images


def decode_pixels(text: str, colour: bool | None = False) -> np.ndarray:
    """A base64 PNG to uint8 pixels: (H, W), made grayscale if it is not; ``colour=True``:
    (H, W, 3), made RGB; ``None``: as the PNG is, (H, W) grayscale or (H, W, 3) RGB (alpha
    dropped)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the service sent an image that is not valid base64") from exc
    fast = _decode_unfiltered(raw)
    if fast is not None and (colour is None or colour == (fast.ndim == 3)):
        return fast
    with Image.open(io.BytesIO(raw), formats=["PNG"]) as image:
        if colour is None:
            colour = image.mode == "P" or not set(image.getbands()) <= {"L", "1", "I", "A"}
        mode = "RGB" if colour else "L"
        return np.asarray(image if image.mode == mode else image.convert(mode))


def _decode_unfiltered(raw: bytes) -> np.ndarray | None:
    """The PNGs the service writes (8-bit grayscale or RGB, no interlace, every row filter 0)
    in a fifth of Pillow's time, as (H, W) or (H, W, 3); None for any other PNG, which Pillow
    then decodes."""
    if not raw.startswith(PNG_SIGNATURE):
        return None
    width = height = 0
    channels = 1
    idat: list[bytes] = []
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(raw):
        (length,) = struct.unpack_from(">I", raw, position)
        kind = raw[position + 4 : position + 8]
        data = raw[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data)
            if depth != 8 or colour not in (0, 2) or interlace != 0:
                return None
            channels = 3 if colour == 2 else 1
        elif kind == b"IDAT":
            idat.append(data)
        elif kind == b"IEND":
            break
        position += 12 + length
    try:
        flat = zlib.decompress(b"".join(idat))
    except zlib.error:
        return None
    if not width or len(flat) != height * (width * channels + 1):
        return None
    rows = np.frombuffer(flat, np.uint8).reshape(height, width * channels + 1)
    if rows[:, 0].any():
        return None
    pixels = rows[:, 1:]
    return pixels.reshape(height, width, 3) if channels == 3 else pixels


def image_axes(images: np.ndarray) -> int:
    """The trailing axes of an array of decoded images that make one image: 2, (H, W), or 3,
    (H, W, 3), for colour (an array of several images whose last axis is 3)."""
    return 3 if images.ndim >= 4 and images.shape[-1] == 3 else 2


# ---------------------------------------------------------------- grids


def tile(
    images: np.ndarray, columns: int | None = None, scale: int = 1, padding: int = GRID_PADDING
) -> np.ndarray:
    """(N, H, W) or colour (N, H, W, 3) images in [0, 1] as one uint8 grid, (rows, columns) or
    (rows, columns, 3), ``columns`` to a row (default about square), ``padding`` black pixels
    between tiles, ``scale`` times larger: the API's PNG grid (``Accept: image/png``), pixel
    for pixel."""
    colour = images.ndim == 4 and images.shape[-1] == 3
    if images.ndim != 3 and not colour or not len(images):
        raise ValueError(
            f"a grid needs (N, H, W) or (N, H, W, 3) images, got shape {list(images.shape)}"
        )
    if (columns is not None and columns < 1) or scale < 1:
        raise ValueError("columns and scale must be at least 1")
    n, h, w = images.shape[:3]
    cols = min(columns or math.ceil(math.sqrt(n)), n)
    rows = math.ceil(n / cols)
    canvas = np.zeros(
        (rows * (h + padding) - padding, cols * (w + padding) - padding, *images.shape[3:]),
        np.uint8,
    )
    for i, image in enumerate(to_uint8(images)):
        top, left = (i // cols) * (h + padding), (i % cols) * (w + padding)
        canvas[top : top + h, left : left + w] = image
    return canvas.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else canvas
