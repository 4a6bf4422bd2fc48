"""The bench's naive-torch peer serves the bundled models as their ONNX graphs do: its torch
modules, rebuilt from the model cards and the graphs' initializers, draw the same images."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest

PEERS = Path(__file__).resolve().parents[2] / "bench" / "peers"


@pytest.fixture(scope="module")
def naive_torch() -> Iterator[ModuleType]:
    pytest.importorskip("torch")
    sys.path.insert(0, str(PEERS))  # the peers import their shared workload as a script does
    try:
        import naive_torch

        yield naive_torch
    finally:
        sys.path.remove(str(PEERS))


@pytest.mark.parametrize("model", ["dcgan-fashion", "vae-fashion"])
def test_naive_torch_rebuilds_the_bundled_models(naive_torch: ModuleType, model: str) -> None:
    import torch
    from workload import DEFAULT_STORE, graph_file, latents

    module = naive_torch.load_module(model, DEFAULT_STORE)
    graph = graph_file(model, DEFAULT_STORE)
    session = ort.InferenceSession(str(graph.path), providers=["CPUExecutionProvider"])
    z = latents(7, 3, graph.latent_dim)
    expected = session.run(None, {session.get_inputs()[0].name: z})[0]
    with torch.no_grad():
        output = module(torch.from_numpy(z))
    images = (output[0] if isinstance(output, tuple) else output).numpy()
    assert images.shape == expected.shape == (3, 1, 28, 28)
    np.testing.assert_allclose(images, expected, atol=1e-4)
