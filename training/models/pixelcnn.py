"""Gated PixelCNN (van den Oord et al. 2016) with a discretized logistic mixture output.

The first layer is masked type A (it cannot see the pixel it predicts), every later layer type
B. A vertical stack, shifted down one row, feeds the horizontal stack, so there is no blind spot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from ..imageset import DataSpec
from ..nn import (
    MIN_LOG_SCALE,
    MaskedConv2d,
    VerticalConv2d,
    down_shift,
    params_per_component,
    sample_mixture,
)
from .base import AutoregressiveConfig, AutoregressiveModel, GraphSpec


@dataclass
class PixelCNNConfig(AutoregressiveConfig):
    channels: int = 48
    layers: int | None = None
    """None: scaled with the image height, 8 at 28 rows (``scaled_layers``); the model records
    the number it resolved to."""
    epochs: int = 7
    lr_decay: float = 0.99965


BASE_LAYERS = 8
"""Layers at 28 rows; taller images get proportionally more, so that the receptive field
covers the same share of the image."""


def scaled_layers(base: int, height: int) -> int:
    """``base`` layers at 28 rows, scaled in proportion to ``height`` (8 -> 18 at 64)."""
    return max(base, round(base * height / 28))


class GatedLayer(nn.Module):
    def __init__(self, c: int, k: int, mask_type: str, image_channels: int = 1) -> None:
        super().__init__()
        in_ch = image_channels if mask_type == "A" else c
        self.residual = mask_type == "B"
        self.v_conv = VerticalConv2d(in_ch, 2 * c, k)
        self.h_conv = MaskedConv2d(mask_type, in_ch, 2 * c, (1, k))
        self.v_to_h = nn.Conv2d(2 * c, 2 * c, 1)
        self.h_out = nn.Conv2d(c, c, 1)

    @staticmethod
    def gate(x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_pre = self.v_conv(v)  # (B, 2c, H, W): sees rows <= i
        return self.gate(v_pre), self.horizontal(h, self.link(v_pre))

    def link(self, v_pre: torch.Tensor) -> torch.Tensor:
        """What the vertical stack passes to the horizontal one: row i gets rows < i."""
        return self.v_to_h(down_shift(v_pre))

    def horizontal(self, h: torch.Tensor, link: torch.Tensor) -> torch.Tensor:
        """The horizontal stack: row i, left of j (and j itself after the first layer)."""
        h_new = self.h_out(self.gate(self.h_conv(h) + link))
        return h + h_new if self.residual else h_new


class PixelCNNNet(nn.Module):
    """image (B, C, H, W) in k/255 -> params (B, 3K, H, W) of the mixture at each pixel (C = 1),
    (B, 10K, H, W) for colour (C = 3; ``training.nn.mixture_log_prob``). The masks hide the
    whole pixel being predicted, all its channels: the dependence of G on R and of B on R and
    G is the mixture's, through its coefficients."""

    def __init__(self, cfg: PixelCNNConfig, image_channels: int = 1) -> None:
        super().__init__()
        c, layers = cfg.channels, cfg.layers or BASE_LAYERS
        self.image_channels = image_channels
        self.layers = nn.ModuleList(
            [GatedLayer(c, cfg.first_kernel, "A", image_channels)]
            + [GatedLayer(c, 3, "B") for _ in range(layers - 1)]
        )
        self.head = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c, 2 * c, 1), nn.ReLU(),
            nn.Conv2d(2 * c, params_per_component(image_channels) * cfg.mixture_components, 1),
        )  # fmt: skip
        # Receptive fields: the first layer reaches k//2 rows up and left, each later one 1.
        reach = cfg.first_kernel // 2 + layers - 1
        self.context_rows = reach + 2
        """Rows the last row's context depends on: its own, one for the down-shift, `reach`."""
        self.row_columns = reach + 1
        """Columns of row i the params at column j depend on, j included."""

    @property
    def gated(self) -> list[GatedLayer]:
        return [cast(GatedLayer, layer) for layer in self.layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = h = x * 2 - 1
        for layer in self.layers:
            v, h = layer(v, h)
        return self.params(h)

    def params(self, h: torch.Tensor) -> torch.Tensor:
        return mixture_params(self.head(h), self.image_channels)

    # The fast sampler's two halves. Row i's vertical context depends on rows < i only, so it
    # is computed once per row; the horizontal stack then runs per pixel on row i alone. Both
    # work on windows as large as the receptive field, which makes them exact: every value
    # they return is computed from the same inputs, by the same operations, as in forward().

    def context(self, window: torch.Tensor) -> torch.Tensor:
        """(B, C, R, W) rows i-R+1..i (row i's content is ignored) -> (B, L*2c, 1, W): every
        layer's vertical-to-horizontal link for row i."""
        v, links = window * 2 - 1, []
        for layer in self.gated:
            v_pre = layer.v_conv(v)
            links.append(layer.link(v_pre)[:, :, -1:])
            v = layer.gate(v_pre)
        return torch.cat(links, dim=1)

    def row(self, pixels: torch.Tensor, links: torch.Tensor) -> torch.Tensor:
        """(B, C, 1, J) row i up to column j, and its links (B, L*2c, 1, J) -> params
        (B, P K, 1, J); only the last column is exact unless the row starts at column 0."""
        h = pixels * 2 - 1
        for layer, link in zip(self.gated, links.chunk(len(self.gated), dim=1), strict=True):
            h = layer.horizontal(h, link)
        return self.params(h)


class PixelCNN(AutoregressiveModel):
    family = "pixelcnn"
    net: PixelCNNNet

    def __init__(self, config: PixelCNNConfig, data: DataSpec) -> None:
        super().__init__(config, data)
        self.resolve_config(config)
        self.net = PixelCNNNet(config, data.image_shape[0])

    def resolve_config(self, config: PixelCNNConfig) -> None:
        if config.layers is None:
            config.layers = scaled_layers(BASE_LAYERS, self.data.image_shape[1])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
        """Exact ancestral sampling, the service's windowed sampler: each row's context once,
        then the horizontal stack once per pixel, each on a window as large as its receptive
        field (``sample_naive`` passes the whole image per pixel and draws the same pixels)."""
        net, (channels, height, width) = self.net, self.data.image_shape
        rows, cols = net.context_rows, net.row_columns
        x = torch.zeros(n, *self.data.image_shape)
        for i in range(height):
            links = net.context(x[:, :, max(0, i - rows + 1) : i + 1])
            for j in range(width):
                left = max(0, j - cols + 1)
                params = net.row(x[:, :, i : i + 1, left : j + 1], links[..., left : j + 1])
                params = params[:, :, 0, -1]
                x[:, :, i, j] = sample_mixture(params, temperature, generator, channels)
        return x

    @torch.no_grad()
    def sample_naive(
        self, n: int, generator: torch.Generator, temperature: float = 1.0
    ) -> torch.Tensor:
        """The reference: one pass of the whole network per pixel."""
        x = torch.zeros(n, *self.data.image_shape)
        channels, height, width = self.data.image_shape
        for i in range(height):
            for j in range(width):
                params = self.net(x[:, :, : i + 1])[:, :, i, j]  # rows > i cannot matter
                x[:, :, i, j] = sample_mixture(params, temperature, generator, channels)
        return x

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        net, rows, cols = self.net, self.net.context_rows, self.net.row_columns
        image = self.example_images()
        links = torch.randn(2, len(net.layers) * 2 * self.config.channels, 1, cols)
        return {
            "pixelcnn": GraphSpec(
                net, (image,), ["image"], ["params"],
                {"image": {0: "batch", 2: "height"}, "params": {0: "batch", 2: "height"}},
            ),
            "context": GraphSpec(
                _Method(net, "context"), (image[:, :, :rows],), ["image"], ["links"],
                {"image": {0: "batch", 2: "height"}, "links": {0: "batch"}},
            ),
            "row": GraphSpec(
                _Method(net, "row"), (image[:, :, :1, :cols], links), ["image", "links"],
                ["params"],
                {"image": {0: "batch", 3: "width"}, "links": {0: "batch", 3: "width"},
                 "params": {0: "batch", 3: "width"}},
            ),
        }  # fmt: skip

    def sampler_fields(self) -> dict[str, Any]:
        net = self.net
        return {
            "kind": "windowed",
            "context_rows": net.context_rows,
            "row_columns": net.row_columns,
        }


def mixture_params(raw: torch.Tensor, channels: int) -> torch.Tensor:
    """The head's raw output (B, P K, ...) -> the mixture's params: means mapped from [-1, 1] to
    [0, 1], log-scales clamped, colour coefficients squashed to (-1, 1) by tanh."""
    if channels == 1:
        logits, mu, log_s = raw.chunk(3, dim=1)
        return torch.cat([logits, mu * 0.5 + 0.5, torch.clamp(log_s, min=MIN_LOG_SCALE)], dim=1)
    k = raw.shape[1] // params_per_component(channels)
    sizes = [k, channels * k, channels * k, raw.shape[1] - (1 + 2 * channels) * k]
    logits, mu, log_s, coeffs = raw.split(sizes, 1)
    return torch.cat(
        [logits, mu * 0.5 + 0.5, torch.clamp(log_s, min=MIN_LOG_SCALE), torch.tanh(coeffs)], dim=1
    )


class _Method(nn.Module):
    """Exports one method of a module as the graph's forward."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.module, self.method = module, method

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = getattr(self.module, self.method)(*inputs)
        return result
