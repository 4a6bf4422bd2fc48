"""genserve's HTTP service: generative models of a model store, on onnxruntime, behind a
FastAPI app (``api``). Layers, top to bottom: api, inference_protocol, generation, registry,
runtime (docs/architecture.md)."""
