"""PyTriton peer: the real Triton server, one model per graph with Triton's dynamic batcher and
PyTriton's ``@batch``, ``--instances N`` inference callables (each its own session) per model
(bench/README.md). KServe v2 JSON: inputs ``seed`` (INT64) and ``n`` (INT32), output ``images``
a BYTES tensor of base64 PNGs; a batch's shorter rows are padded with empty strings, since
``@batch`` splits one (batch, width) output back into requests. Python 3.12, with
LD_LIBRARY_PATH holding its lib/ so that Triton's Python backend finds libpython:

    LD_LIBRARY_PATH=$(pyenv prefix 3.12.1)/lib .venv-pytriton/bin/python \\
        bench/peers/pytriton_server.py --http-port 8003 --grpc-port 8004 --metrics-port 8005
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig
from workload import GRAPH_ROLES, GraphSampler, peer_arguments, threads_per_worker


def infer_function(sampler: GraphSampler) -> Callable[..., dict[str, np.ndarray]]:
    @batch
    def infer(seed: np.ndarray, n: np.ndarray) -> dict[str, np.ndarray]:
        requests = [(int(k), int(s)) for k, s in zip(n[:, 0], seed[:, 0], strict=True)]
        images = sampler.sample(requests)
        width = max(len(row) for row in images)
        padded = [row + [""] * (width - len(row)) for row in images]
        return {"images": np.array(padded, dtype=np.bytes_)}  # (B, width)

    return infer


def main() -> None:
    args = peer_arguments(
        __doc__.splitlines()[0],
        {"--http-port": 8003, "--grpc-port": 8004, "--metrics-port": 8005},
        ("--instances", "inference callables per model"),
    )

    config = TritonConfig(
        http_address=args.host,
        http_port=args.http_port,
        grpc_address=args.host,
        grpc_port=args.grpc_port,
        metrics_address=args.host,
        metrics_port=args.metrics_port,
        log_verbose=0,
    )
    threads = threads_per_worker(args.instances)
    with Triton(config=config) as triton:
        for model in GRAPH_ROLES:
            instances = [
                infer_function(GraphSampler(model, args.store, threads))
                for _ in range(args.instances)
            ]
            triton.bind(
                model_name=model,
                infer_func=instances,
                inputs=[
                    Tensor(name="seed", dtype=np.int64, shape=(1,)),
                    Tensor(name="n", dtype=np.int32, shape=(1,)),
                ],
                outputs=[Tensor(name="images", dtype=bytes, shape=(-1,))],
                config=ModelConfig(
                    max_batch_size=args.max_batch_size,
                    batcher=DynamicBatcher(max_queue_delay_microseconds=args.batch_timeout_us),
                ),
                strict=True,
            )
        triton.serve()


if __name__ == "__main__":
    main()
