"""LitServe peer: one LitAPI per model at POST /sample/<model> ``{"n": 1, "seed": 7}`` ->
``{"images": [...]}``, ``--workers`` inference workers per model (``workers_per_device``) and
LitServe's own batching (bench/README.md).

    python bench/peers/litserve_server.py --port 8001 [--workers 2] [--max-batch-size 64]
"""

from pathlib import Path
from typing import Any

import litserve as ls
from workload import GRAPH_ROLES, GraphSampler, peer_arguments, threads_per_worker


class SampleAPI(ls.LitAPI):
    def __init__(
        self, model: str, store: Path, max_batch_size: int, batch_timeout: float, threads: int
    ) -> None:
        super().__init__(
            max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=f"/sample/{model}"
        )
        self.graph_model, self.store, self.threads = model, store, threads

    def setup(self, device: str) -> None:
        self.sampler = GraphSampler(self.graph_model, self.store, self.threads)

    # `request` stays unannotated: LitServe picks the request type from the annotation, and
    # with none it passes the JSON body as a dict.
    def decode_request(self, request) -> tuple[int, int]:  # type: ignore[no-untyped-def]
        return int(request.get("n", 1)), int(request.get("seed", 0))

    def batch(self, inputs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return inputs

    def predict(self, x: Any) -> Any:
        if self.max_batch_size == 1:  # LitServe passes one request, not a list
            return self.sampler.sample([x])[0]
        return self.sampler.sample(x)

    def unbatch(self, output: list[list[str]]) -> list[list[str]]:
        return output

    def encode_response(self, output: list[str]) -> dict[str, Any]:
        return {"images": output}


def main() -> None:
    args = peer_arguments(
        __doc__.splitlines()[0], {"--port": 8001}, ("--workers", "inference workers per model")
    )

    timeout, threads = args.batch_timeout_us / 1e6, threads_per_worker(args.workers)
    apis = [SampleAPI(m, args.store, args.max_batch_size, timeout, threads) for m in GRAPH_ROLES]
    server = ls.LitServer(apis, accelerator="cpu", workers_per_device=args.workers, timeout=120)
    server.run(host=args.host, port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
