"""Naive peer: FastAPI + PyTorch eager, written as a tutorial writes it. One request, one
forward pass: no batching, a sync route in FastAPI's thread pool, torch's default threads.
POST /sample ``{"model": "dcgan-fashion", "n": 1, "seed": 7}`` -> ``{"images": [...]}``.

The torch modules are the exported ones, rebuilt by ``training`` from the model card's config
with the weights read back from the ONNX graph's initializers: the very model the others serve.

    python bench/peers/naive_torch.py --port 8006
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from workload import DEFAULT_STORE, GRAPH_ROLES, graph_file, latents, png_base64


def load_module(model: str, store: Path) -> torch.nn.Module:
    """The torch module that was exported as the model's image graph, in eval mode."""
    from training.checkpoints import build_model

    graph = graph_file(model, store)
    card = graph.card
    generative = build_model(card["family"], card["training"]["config"])
    selection = card.get("evaluation", {}).get("generator_selection")
    if selection is not None:  # the DCGAN exports whichever generator scored better
        generative.use_ema = selection["chosen"] == "ema"
    module = generative.onnx_graphs()[GRAPH_ROLES[model]].module
    load_onnx_weights(module, graph.path)
    return module.eval()


def load_onnx_weights(module: torch.nn.Module, path: Path) -> None:
    """Copy the graph's initializers into the module: by name, or, for the few that the
    exporter renamed (a Linear's weight becomes a transposed MatMul operand), by shape.
    Buffers that the module builds from its config (a flow's coupling masks, which the
    exporter folds into constants) keep the module's own values."""
    import onnx
    from onnx import numpy_helper

    state = module.state_dict()
    arrays = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    renamed = [array for name, array in arrays.items() if name not in state]
    built_buffers = {
        name
        for name, _ in module.named_buffers()
        if name not in arrays and not name.rsplit(".", 1)[-1].startswith("running_")
    }
    weights = {}
    for key, tensor in state.items():
        if key in arrays:
            weights[key] = torch.from_numpy(arrays[key].copy())
            continue
        if key.endswith("num_batches_tracked") or key in built_buffers:
            continue
        shape = tuple(tensor.shape)
        found = [a for a in renamed if a.shape == shape or (a.ndim == 2 and a.T.shape == shape)]
        if len(found) != 1:
            raise ValueError(f"{path}: no single initializer fits {key} {list(shape)}")
        array = found[0] if found[0].shape == shape else found[0].T
        weights[key] = torch.from_numpy(np.ascontiguousarray(array))
    module.load_state_dict(weights, strict=False)


class SampleRequest(BaseModel):
    model: str
    n: int = 1
    seed: int = 0


def create_app(store: Path) -> FastAPI:
    app = FastAPI(title="naive torch")
    models = {name: load_module(name, store) for name in GRAPH_ROLES}
    dims = {name: graph_file(name, store).latent_dim for name in GRAPH_ROLES}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/sample")
    def sample(request: SampleRequest) -> dict[str, Any]:
        if request.model not in models:
            raise HTTPException(status_code=404, detail=f"unknown model {request.model}")
        z = torch.from_numpy(latents(request.seed, request.n, dims[request.model]))
        with torch.no_grad():
            output = models[request.model](z)
        images = output[0] if isinstance(output, tuple) else output
        return {"images": png_base64(images.numpy())}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8006)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    args = parser.parse_args()
    uvicorn.run(create_app(args.store), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
