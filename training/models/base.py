"""What every family provides to the trainer, the evaluator and the exporter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class GraphSpec:
    """One ONNX graph to export: a module, example inputs and the names of its tensors."""

    module: nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)


class GenerativeModel(nn.Module):
    """Base class: a model configured by its own dataclass, which it carries into checkpoints."""

    family: str = ""
    uses_labels: bool = False

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        raise NotImplementedError

    def training_step(
        self, x: torch.Tensor, y: torch.Tensor, optimizers: list[torch.optim.Optimizer]
    ) -> dict[str, float]:
        """One optimisation step on a batch of images (B, 1, 28, 28) in [0, 1]."""
        raise NotImplementedError

    def validation_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """A number to watch on the held-out split (lower is better)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, 1, 28, 28) in [0, 1]."""
        raise NotImplementedError

    def onnx_graphs(self) -> dict[str, GraphSpec]:
        raise NotImplementedError

    def card_fields(self) -> dict[str, Any]:
        """Family-specific fields of the model card (latent size, likelihood)."""
        return {}
