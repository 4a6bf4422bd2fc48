"""Running graphs: onnxruntime sessions, the dynamic batcher in front of each, and memory."""
