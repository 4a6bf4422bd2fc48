"""PixelRNN with Row LSTM layers (van den Oord et al. 2016) and the PixelCNN's output: a mixture
of discretized logistics per pixel.

A masked 7×7 type-A convolution reads the image; each Row LSTM layer then runs down the image
one row at a time. Its input-to-state part is a masked 1×3 type-B convolution over the current
row's features (the pixel and the one to its left); its state-to-state part is a 1×3
convolution over the previous row's hidden state, so row i's state sees a triangle of every
row above it. Layers are residual; two 1×1 convolutions map the last layer to the mixture.

The exported graph has the PixelCNN's contract: image (B, C, h, W) -> params (B, P K, h, W),
for any h up to the image's height H (the graph pads the image to H rows and runs the H row
steps unrolled; rows below h cannot change the rows above, so the output is cut back to h).

Sampling that graph costs a full pass per pixel. A second graph, `step`, is the exact sampler's
unit: row i from the `reach + 1` image rows above and including it and the layers' states
after row i-1, to row i's params and states. The card names it (`sampler`, kind `row_step`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..imageset import DataSpec
from ..nn import MaskedConv2d, params_per_component, sample_mixture
from .base import AutoregressiveConfig, AutoregressiveModel, GraphSpec
from .pixelcnn import mixture_params, scaled_layers

State = tuple[torch.Tensor, torch.Tensor]
"""One layer's hidden and cell state for one row: each (B, W, C)."""


@dataclass
class PixelRNNConfig(AutoregressiveConfig):
    """``layers`` None: 4 at 28 rows, scaled with the height (``scaled_layers``)."""

    epochs: int = 6
    lr_decay: float = 0.9995
    """Per step: the rate falls to about 0.1× over six epochs. (0.998 left 4% of it after two
    epochs, and the held-out loss was still falling when the rate ran out.)"""


def _columns(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """(..., W, C) -> (..., W, (left + 1 + right) C): column j beside its neighbours j-left ..
    j+right, zeros past the edges. A 1×k convolution is then one matrix product."""
    padded = F.pad(x, (0, 0, left, right))
    width = x.shape[-2]
    return torch.cat([padded[..., k : k + width, :] for k in range(left + 1 + right)], dim=-1)


class RowLSTM(nn.Module):
    """Works on channels-last rows, (B, H, W, C), so each 1×k convolution is a matrix product
    (much faster on a CPU than a convolution over a single row)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.input_to_state = nn.Linear(2 * c, 4 * c)  # masked 1×3 type B: columns j-1, j
        self.state_to_state = nn.Linear(3 * c, 4 * c, bias=False)  # 1×3: columns j-1, j, j+1
        self.out = nn.Linear(c, c)

    def cell(self, gates_in: torch.Tensor, state: State) -> State:
        """One row step: (B, W, 4C) input gates and the previous row's state -> its state."""
        h, c = state
        i, f, o, g = (gates_in + self.state_to_state(_columns(h, 1, 1))).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    def initial(self, row: torch.Tensor) -> State:
        """The zero state above the first row, shaped like ``row`` (B, W, C)."""
        zeros = torch.zeros_like(row)  # dynamic-batch safe in ONNX
        return zeros, zeros

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gates_in = self.input_to_state(_columns(x, 1, 0))  # (B, H, W, 4C), all rows at once
        state, rows = self.initial(x[:, 0]), []
        for gates_row in gates_in.unbind(1):  # unbind, not slicing: its backward is one stack
            state = self.cell(gates_row, state)
            rows.append(state[0])
        return x + self.out(torch.stack(rows, dim=1))

    def step(self, x_row: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """forward() for one row (B, W, C), given the state of the row above."""
        state = self.cell(self.input_to_state(_columns(x_row, 1, 0)), state)
        return x_row + self.out(state[0]), state


BASE_LAYERS = 4
"""Row LSTM layers at 28 rows."""


class PixelRNNNet(nn.Module):
    """image (B, C, h, W) in k/255, h ≤ H -> params (B, P K, h, W) of the mixture (P: 3 for
    C = 1, 10 for C = 3; ``training.nn.params_per_component``)."""

    def __init__(self, cfg: PixelRNNConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        c = cfg.channels
        self.image_channels, self.height, self.width = image_shape
        self.first = MaskedConv2d("A", self.image_channels, c, (cfg.first_kernel, cfg.first_kernel))
        self.layers = nn.ModuleList([RowLSTM(c) for _ in range(cfg.layers or BASE_LAYERS)])
        out = params_per_component(self.image_channels) * cfg.mixture_components
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(c, 2 * c), nn.ReLU(), nn.Linear(2 * c, out))
        self.reach = cfg.first_kernel // 2
        """Rows above row i that the first layer reads for row i."""

    @property
    def rows(self) -> list[RowLSTM]:
        return [cast(RowLSTM, layer) for layer in self.layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = x.shape[2]
        rows = self.height
        filler = torch.zeros_like(x[:, :, :1]).expand(-1, -1, rows, -1)
        h = self.first(torch.cat([x, filler], dim=2)[:, :, :rows] * 2 - 1)  # (B, C, H, W)
        h = h.permute(0, 2, 3, 1)  # (B, H, W, C)
        for layer in self.rows:
            h = layer(h)
        return self.params(h)[:, :, :height]

    def params(self, h: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, P K, H, W)"""
        return mixture_params(self.head(h).permute(0, 3, 1, 2), self.image_channels)

    def step(self, window: torch.Tensor, states: list[State]) -> tuple[torch.Tensor, list[State]]:
        """Row i alone: window (B, C, reach + 1, W) holds rows i-reach..i already mapped to
        [-1, 1] (and zeros above the image, as the convolution's padding), states the layers'
        states after row i-1 -> row i's params (B, 3K, 1, W) and states. Exact for every
        column whose pixels left of it are filled in."""
        h = self.first(window)[:, :, -1].permute(0, 2, 1)  # (B, W, C)
        new_states = []
        for layer, state in zip(self.rows, states, strict=True):
            h, state = layer.step(h, state)
            new_states.append(state)
        return self.params(h[:, None]), new_states


class RowStep(nn.Module):
    """The exported `step` graph: image (B, C, h, W) in k/255, rows i-h+1..i with h ≤ reach + 1
    (fewer at the top of the image), and state (B, L, 2, W, C) after row i-1 (zeros above row
    0) -> params (B, 3K, 1, W) of row i and state (B, L, 2, W, C) after it. Column j's params
    and state depend on row i's pixels left of j only."""

    def __init__(self, net: PixelRNNNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rows = self.net.reach + 1
        above = torch.zeros_like(image[:, :, :1]).expand(-1, -1, rows, -1)  # the conv's padding
        window = torch.cat([above, image * 2 - 1], dim=2)[:, :, -rows:]
        states = [(layer[:, 0], layer[:, 1]) for layer in state.unbind(1)]
        params, states = self.net.step(window, states)
        return params, torch.stack([torch.stack(hc, dim=1) for hc in states], dim=1)

    def initial(self, n: int) -> torch.Tensor:
        net = self.net
        return torch.zeros(n, len(net.layers), 2, net.width, net.rows[0].out.in_features)


class PixelRNN(AutoregressiveModel):
    family = "pixelrnn"
    net: PixelRNNNet

    clip_grad_norm = 1.0

    def __init__(self, config: PixelRNNConfig, data: DataSpec) -> None:
        super().__init__(config, data)
        self.resolve_config(config)
        self.net = PixelRNNNet(config, data.image_shape)

    def resolve_config(self, config: PixelRNNConfig) -> None:
        if config.layers is None:
            config.layers = scaled_layers(BASE_LAYERS, self.data.image_shape[1])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
        """Exact ancestral sampling, one row step per pixel: the rows above are summed up in the
        Row LSTM states, so each pixel costs one pass over one row, not over the image."""
        step, rows = RowStep(self.net), self.net.reach + 1
        x, state = torch.zeros(n, *self.data.image_shape), step.initial(n)
        for i in range(self.net.height):
            window = x[:, :, max(0, i - rows + 1) : i + 1]  # a view: it sees each new pixel
            for j in range(self.net.width):
                params, row_state = step(window, state)
                x[:, :, i, j] = sample_mixture(
                    params[:, :, 0, j], temperature, generator, self.net.image_channels
                )
            state = row_state  # no column's state depends on the row's last pixel
        return x

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        image = self.example_images()
        step = RowStep(self.net)
        state = torch.randn_like(step.initial(2))
        return {
            "pixelrnn": GraphSpec(
                self.net, (image,), ["image"], ["params"],
                {"image": {0: "batch", 2: "height"}, "params": {0: "batch", 2: "height"}},
            ),
            "step": GraphSpec(
                step, (image[:, :, : self.net.reach + 1], state), ["image", "state"],
                ["params", "next_state"],
                {"image": {0: "batch", 2: "height"}, "state": {0: "batch"},
                 "params": {0: "batch"}, "next_state": {0: "batch"}},
            ),
        }  # fmt: skip

    def sampler_fields(self) -> dict[str, Any]:
        return {"kind": "row_step", "window_rows": self.net.reach + 1}
