"""Reusable layers and the pixel likelihoods shared by the VAE families and the autoregressive
ones (PixelCNN, PixelRNN).

Pixels are k/255 for k in 0..255. The discretized logistic puts on each value the mass of a bin
of width 1/255 around it, with the outermost bins stretched to -inf and +inf (PixelCNN++).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BIN = 1.0 / 255.0
MIN_LOG_SCALE = -7.0


class MaskedConv2d(nn.Conv2d):
    """A convolution that sees only pixels before the current one in raster order.

    `mask` zeroes the kernel below the centre row and right of the centre column; type "A" also
    hides the centre (the pixel being predicted), type "B" keeps it. The mask multiplies the
    weight inside forward, so the ONNX exporter sees it.
    """

    def __init__(self, mask_type: str, in_ch: int, out_ch: int, kernel: tuple[int, int]) -> None:
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        kh, kw = kernel
        super().__init__(in_ch, out_ch, kernel, padding=(kh // 2, kw // 2))
        mask = torch.ones_like(self.weight)
        mask[:, :, kh // 2, kw // 2 + (mask_type == "B") :] = 0
        mask[:, :, kh // 2 + 1 :, :] = 0
        self.mask: torch.Tensor
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class VerticalConv2d(nn.Conv2d):
    """Gated PixelCNN's vertical stack: a (k//2 + 1) × k kernel over the rows up to the centre.

    It is causal by its shape (padding on top only), so it needs no mask and does no wasted work.
    """

    def __init__(self, in_ch: int, out_ch: int, k: int) -> None:
        super().__init__(in_ch, out_ch, (k // 2 + 1, k))
        self.pad = (k // 2, k // 2, k // 2, 0)  # left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, self.pad), self.weight, self.bias)


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Shift down one row, so row i sees only rows < i.  # (B, C, H, W) -> (B, C, H, W)"""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def _log_sigmoid_diff(x: torch.Tensor, mu: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    """log P(x) for each pixel value x under logistic(mu, s), discretized on 1/255 bins."""
    inv_s = torch.exp(-log_s)
    centred = x - mu
    plus = inv_s * (centred + BIN / 2)
    minus = inv_s * (centred - BIN / 2)
    log_cdf_plus = F.logsigmoid(plus)  # used for x = 0 (bin stretched to -inf)
    log_one_minus_cdf_minus = -F.softplus(minus)  # used for x = 1 (bin stretched to +inf)
    cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    # Where the bin mass underflows, fall back to the density times the bin width.
    mid = inv_s * centred
    log_pdf_mid = mid - log_s - 2.0 * F.softplus(mid) + math.log(BIN)
    inner = torch.where(cdf_delta > 1e-5, torch.log(torch.clamp(cdf_delta, min=1e-12)), log_pdf_mid)
    return torch.where(
        x < BIN / 2, log_cdf_plus, torch.where(x > 1 - BIN / 2, log_one_minus_cdf_minus, inner)
    )


def discretized_logistic_log_prob(
    x: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """Per-image log-likelihood in nats of a one-component discretized logistic.

    x, mu, log_scale: (B, 1, H, W) -> (B,)
    """
    log_scale = torch.clamp(log_scale, min=MIN_LOG_SCALE)
    return _log_sigmoid_diff(x, mu, log_scale).flatten(1).sum(1)


def params_per_component(channels: int) -> int:
    """Params channels per mixture component for images of ``channels`` channels: a logit, and
    for each channel a mean and a log-scale, and (colour) the coefficients that move the means
    of G and B by the pixel's earlier channels (PixelCNN++): 3 for 1 channel, 10 for 3."""
    return 1 + 2 * channels + channels * (channels - 1) // 2


def split_params(params: torch.Tensor, channels: int) -> tuple[torch.Tensor, ...]:
    """(B, P K, ...) -> logits (B, K, ...), means, log-scales and coefficients, each
    (B, C or C(C-1)/2, K, ...): the layout of docs/model-store.md ("Pixel likelihoods")."""
    k = params.shape[1] // params_per_component(channels)
    logits, rest = params[:, :k], params[:, k:]
    sizes = [channels * k, channels * k, rest.shape[1] - 2 * channels * k]
    mu, log_s, coeffs = rest.split(sizes, 1)
    shape = (params.shape[0], -1, k, *params.shape[2:])
    return logits, mu.reshape(shape), log_s.reshape(shape), coeffs.reshape(shape)


def channel_means(mu: torch.Tensor, coeffs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The means of each channel given the pixel's earlier channels: R's own; G's plus
    coeffs[0] R; B's plus coeffs[1] R + coeffs[2] G. mu, coeffs (B, C, K, ...), x (B, C, ...)."""
    if mu.shape[1] == 1:
        return mu
    r, g = x[:, 0:1], x[:, 1:2]
    return torch.cat(
        [mu[:, 0:1], mu[:, 1:2] + coeffs[:, 0:1] * r[:, :, None],
         mu[:, 2:3] + coeffs[:, 1:2] * r[:, :, None] + coeffs[:, 2:3] * g[:, :, None]],
        dim=1,
    )  # fmt: skip


def mixture_log_prob(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Per-image log-likelihood in nats of a discretized logistic mixture.

    x: (B, 1, H, W); params: (B, 3K, H, W) = K logits, K means, K log-scales -> (B,)
    x: (B, 3, H, W); params: (B, 10K, H, W) = K logits shared by the channels, 3K means, 3K
    log-scales, 3K coefficients (R, then G given R, then B given R and G) -> (B,)
    """
    if x.shape[1] == 1:
        logits, mu, log_s = torch.chunk(params, 3, dim=1)  # each (B, K, H, W)
        log_s = torch.clamp(log_s, min=MIN_LOG_SCALE)
        log_p = _log_sigmoid_diff(x, mu, log_s) + F.log_softmax(logits, dim=1)
        return torch.logsumexp(log_p, dim=1).flatten(1).sum(1)
    logits, mu, log_s, coeffs = split_params(params, x.shape[1])
    log_s = torch.clamp(log_s, min=MIN_LOG_SCALE)
    means = channel_means(mu, coeffs, x)
    log_p = _log_sigmoid_diff(x[:, :, None], means, log_s).sum(1) + F.log_softmax(logits, dim=1)
    return torch.logsumexp(log_p, dim=1).flatten(1).sum(1)


def sample_mixture(
    params: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    channels: int = 1,
) -> torch.Tensor:
    """Draw pixels from a discretized logistic mixture. (B, P K, ...) -> (B, C, ...) in k/255:
    one component per pixel, then R, G given R, B given R and G."""
    logits, mu, log_s, coeffs = split_params(params, channels)
    log_s = torch.clamp(log_s, min=MIN_LOG_SCALE)
    probs = F.softmax((logits - logits.amax(dim=1, keepdim=True)) / temperature, dim=1)
    flat = probs.movedim(1, -1).reshape(-1, probs.shape[1])
    k = torch.multinomial(flat, 1, generator=generator).reshape(*probs.shape[:1], *probs.shape[2:])
    k = k.unsqueeze(1)
    drawn: list[torch.Tensor] = []
    for c in range(channels):
        mu_k = torch.gather(mu[:, c], 1, k)
        if c == 1:
            mu_k = mu_k + torch.gather(coeffs[:, 0], 1, k) * drawn[0]
        elif c == 2:
            mu_k = mu_k + torch.gather(coeffs[:, 1], 1, k) * drawn[0]
            mu_k = mu_k + torch.gather(coeffs[:, 2], 1, k) * drawn[1]
        s_k = torch.exp(torch.gather(log_s[:, c], 1, k)) * temperature
        u = torch.rand(mu_k.shape, generator=generator).clamp(1e-5, 1 - 1e-5)
        drawn.append(quantize(mu_k + s_k * (torch.log(u) - torch.log1p(-u))))
    return torch.cat(drawn, dim=1)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest of the 256 pixel values k/255."""
    return torch.round(torch.clamp(x, 0.0, 1.0) * 255.0) / 255.0


def mean_bits_per_dim(nll_nats: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean per-image negative log-likelihood in nats -> bits per dimension of images x."""
    return nll_nats.mean() / (x[0].numel() * math.log(2.0))
