"""A learned prior for a VAE's latent space: a RealNVP flow (Dinh et al. 2017) that maps
standard normal noise eps to z = f(eps), so log p(z) = log N(f^-1(z); 0, I) + log |det df^-1/dz|.

Each layer is an affine coupling: the dimensions its mask keeps pass through and set the scale
and shift of the others, so both directions are one pass and the log-determinant is the sum of
the log-scales. The masks alternate between odd/even and first/second half, so every
dimension is both transformed and read by the others. The last layer of each coupling's
network starts at zero: the flow starts as the identity, the prior as N(0, I).
"""

from __future__ import annotations

import math

import torch
from torch import nn

SCALE = 2.0
"""Each coupling's log-scale is SCALE * tanh(.): bounded, for a stable start."""


def _masks(d: int, layers: int) -> torch.Tensor:
    """(layers, d) of 0/1: odd, even, first half, second half, repeating."""
    index = torch.arange(d)
    patterns = [index % 2 == 0, index % 2 == 1, index < d // 2, index >= d // 2]
    return torch.stack([patterns[i % 4] for i in range(layers)]).float()


class AffineCoupling(nn.Module):
    def __init__(self, d: int, hidden: int, mask: torch.Tensor) -> None:
        super().__init__()
        self.mask: torch.Tensor
        self.register_buffer("mask", mask)
        last = nn.Linear(hidden, 2 * d)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(
            nn.Linear(d, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), last
        )

    def _scale_shift(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(kept).chunk(2, dim=1)
        free = 1 - self.mask
        return SCALE * torch.tanh(s / SCALE) * free, t * free

    def forward(self, eps: torch.Tensor) -> torch.Tensor:
        """eps -> z, one layer. (B, d) -> (B, d)"""
        kept = eps * self.mask
        s, t = self._scale_shift(kept)
        return kept + (1 - self.mask) * (eps * torch.exp(s) + t)

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z -> eps, and each dimension's log |d eps / d z| on the diagonal. -> (B, d), (B, d)"""
        kept = z * self.mask
        s, t = self._scale_shift(kept)
        return kept + (1 - self.mask) * (z - t) * torch.exp(-s), -s


class RealNVP(nn.Module):
    """eps (B, d) standard normal <-> z (B, d), through ``layers`` affine couplings."""

    def __init__(self, d: int, layers: int = 8, hidden: int = 256) -> None:
        super().__init__()
        self.layers = nn.ModuleList(AffineCoupling(d, hidden, m) for m in _masks(d, layers))

    @property
    def couplings(self) -> list[AffineCoupling]:
        return [layer for layer in self.layers if isinstance(layer, AffineCoupling)]

    def forward(self, eps: torch.Tensor) -> torch.Tensor:
        """Sampling: z = f(eps)."""
        for layer in self.couplings:
            eps = layer(eps)
        return eps

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """eps = f^-1(z), and the sum over the layers of each dimension's diagonal log-scale
        (the log-determinant, summed over dimensions; per dimension, a first guess of how
        f^-1 scales a small spread around z)."""
        scales = torch.zeros_like(z)
        for layer in reversed(self.couplings):
            z, log_scale = layer.inverse(z)
            scales = scales + log_scale
        return z, scales

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) per row. (B, d) -> (B,)"""
        eps, scales = self.inverse(z)
        return -0.5 * (eps**2 + math.log(2 * math.pi)).sum(1) + scales.sum(1)
