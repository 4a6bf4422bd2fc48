"""DiffAugment (Zhao et al. 2020): random, differentiable transformations of every image a GAN's
discriminator sees, real or generated, so that it cannot memorise the training set. Images are
in [-1, 1] with a black (-1) background."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TRANSLATION = 0.125
"""Shift by up to this fraction of the side, filling with the background."""
CUTOUT = 0.5
"""Blank a square of this fraction of the side at a random place."""


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """Apply each comma-separated transformation of ``policy`` (translation, cutout); an empty
    policy returns ``x`` itself. (B, C, H, W) -> (B, C, H, W)"""
    for name in filter(None, (part.strip() for part in policy.split(","))):
        if name not in AUGMENTATIONS:
            raise ValueError(
                f"unknown augmentation {name!r}; choose from {', '.join(AUGMENTATIONS)}"
            )
        x = AUGMENTATIONS[name](x)
    return x


def translation(x: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    sy, sx = int(h * TRANSLATION + 0.5), int(w * TRANSLATION + 0.5)
    dy = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :, None] + dy + sy  # (B, H, 1)
    cols = torch.arange(w, device=x.device)[None, None, :] + dx + sx  # (B, 1, W)
    padded = F.pad(x, (sx, sx, sy, sy), value=-1.0)  # (B, C, H + 2 sy, W + 2 sx)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * CUTOUT + 0.5), int(w * CUTOUT + 0.5)
    top = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device) - ch // 2
    left = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device) - cw // 2
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    inside = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)  # (B, H, W)
    return torch.where(inside[:, None], torch.full_like(x, -1.0), x)


AUGMENTATIONS = {"translation": translation, "cutout": cutout}
