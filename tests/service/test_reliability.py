"""Small, bounded versions of the reliability figures (harness/reliability.py, which
bench/reliability.py runs at full scale) against a real service on 127.0.0.1 (schemathesis,
soak, overload, hot reload, corrupt-model start-up, graceful shutdown), and the fault-isolation
and overload behaviour they rest on, checked directly."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper

from harness import reliability
from harness.live_service import Service, serve
from harness.store_faults import CORRUPTIONS, copy_store, publish_next_version
from modelstore.layout import card_file, graph_file
from service.api.app import create_app
from service.errors import Overloaded
from service.generation.operations import Operations
from service.generation.specs import Limits, SampleSpec
from service.runtime.batching import Batcher, BatchPolicy
from service.runtime.slots import LocalSlots
from tests.conftest import load_registry, tiny_settings
from tests.support.tiny_store import LATENT_DIM, write_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(tiny_store: Path) -> Iterator[Service]:
    with serve(tiny_store, SERVICE_ADMIN_TOKEN=reliability.ADMIN_TOKEN) as running:
        yield running


# ---------------------------------------------------------------- the figures, small


def test_schemathesis_finds_no_server_error_and_no_schema_break(service: Service) -> None:
    figure = reliability.schemathesis_figure(service, examples=3)
    assert figure.server_errors == 0 and figure.schema_breaks == 0, figure.failures
    assert figure.failures == [] and figure.problems == []
    assert figure.operations >= 15 and figure.generated >= 200


def test_soak_every_response_whole_and_memory_flat(service: Service) -> None:
    figure = reliability.soak(service, requests=600, concurrency=16, warm_up=200)
    assert figure.requests == 600
    assert figure.errors == 0 and figure.integrity_failures == 0, figure.problems
    assert figure.models == 3 and figure.problems == []  # every model served
    assert figure.rss_growth_pct < 10, figure
    assert 0 < figure.pss_end_mib <= figure.rss_end_mib, figure  # shared pages counted once


def test_overload_refuses_quickly_and_recovers(tiny_store: Path) -> None:
    figure = reliability.overload(tiny_store, requests=512, concurrency=128, recovery=20)
    assert figure.failed == 0 and figure.problems == [], figure.problems
    assert figure.rejected > 0 and figure.accepted > 0
    assert figure.accepted + figure.rejected == figure.requests
    assert figure.rejection_in_server_p99_ms <= 100, figure
    assert figure.recovery_ok == figure.recovery_requests == 20


def test_hot_reload_under_load_fails_no_request(tiny_store: Path) -> None:
    figure = reliability.hot_reload(tiny_store, reloads=2, concurrency=8)
    assert figure.reloads == 6 and figure.new_versions == 3  # a GAN, the VAE, the PixelCNN
    assert figure.requests > 0 and figure.failed == 0 and figure.problems == [], figure.problems
    assert figure.versions_served == dict.fromkeys(
        ["dcgan-tiny", "vae-tiny", "pixelcnn-tiny"], [1, 2]
    )


def test_corrupt_model_start_up_serves_the_others(tiny_store: Path) -> None:
    figure = reliability.corrupt_startup(tiny_store, "garbage graph")
    assert figure.problems == [], figure.problems
    assert figure.ready_status == 200 and figure.others_serve  # readiness "any", the default
    assert figure.others == 2 and 0 < figure.start_s < 120
    assert figure.reason == f"{figure.model}: onnxruntime could not load " + graph_file(
        figure.model, "encoder", 1
    )


def test_graceful_shutdown_finishes_the_requests_in_flight(tiny_store: Path) -> None:
    figure = reliability.graceful_shutdown(tiny_store, in_flight=8)
    assert figure.in_flight > 0, figure
    assert figure.finished_ok == figure.requests == 8, figure.problems
    # One process re-raises SIGTERM once it has drained; several workers' supervisor exits 0.
    assert figure.exit_code in (-15, 0) and figure.problems == []


# ---------------------------------------------------------------- fault isolation


@pytest.mark.parametrize(
    ("corruption", "reason"),
    [
        ("truncated graph", "vae-tiny: onnxruntime could not load vae-tiny.encoder/1/model.onnx"),
        ("garbage graph", "vae-tiny: onnxruntime could not load vae-tiny.encoder/1/model.onnx"),
        ("checksum mismatch", "vae-tiny: sha256 mismatch for vae-tiny.encoder/1/model.onnx"),
        ("card not JSON", "vae-tiny: vae-tiny.v1.json is not valid JSON"),
        ("card not UTF-8", "vae-tiny: a file of the model cannot be read (UnicodeDecodeError)"),
        ("card breaks the schema", "vae-tiny: vae-tiny.v1.json breaks the schema at graphs"),
    ],
)
def test_one_broken_model_is_unavailable_and_says_why(
    tmp_path: Path, tiny_store: Path, corruption: str, reason: str
) -> None:
    store = copy_store(tiny_store, tmp_path / "store")
    CORRUPTIONS[corruption](store, "vae-tiny")
    with TestClient(create_app(tiny_settings(store, readiness="strict"))) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["models"]["vae-tiny"]["state"] == "failed"
        assert ready.json()["models"]["vae-tiny"]["reason"].startswith(reason)
        assert reason in ready.json()["error"]
        refused = client.post("/sample", json={"model": "vae-tiny"})
        assert refused.status_code == 503 and refused.json()["code"] == "model_not_ready"
        assert client.post("/sample", json={"model": "dcgan-tiny"}).status_code == 200


def _batch_one_decoder() -> bytes:
    """A decoder that loads and warms up (batch 1) but fails at run time for a larger batch:
    its Reshape is fixed to one image."""
    nodes = [
        helper.make_node("Gemm", ["z", "w", "b"], ["flat"]),
        helper.make_node("Reshape", ["flat", "shape"], ["image"]),
    ]
    inits = [
        onnx.numpy_helper.from_array(np.zeros((LATENT_DIM, 784), np.float32), "w"),
        onnx.numpy_helper.from_array(np.zeros(784, np.float32), "b"),
        onnx.numpy_helper.from_array(np.array([1, 1, 28, 28], np.int64), "shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "batch_one",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", LATENT_DIM])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return bytes(model.SerializeToString())


def test_a_run_time_session_error_is_503_for_that_model_only(
    tmp_path: Path, tiny_store: Path
) -> None:
    store = copy_store(tiny_store, tmp_path / "store")
    z = [{"name": "z", "dtype": "float32", "shape": [-1, LATENT_DIM]}]
    image = [{"name": "image", "dtype": "float32", "shape": [-1, 1, 28, 28]}]
    write_model(store, "gan-one", "dcgan", {"generator": (_batch_one_decoder(), z, image)}, 8)
    with TestClient(create_app(tiny_settings(store))) as client:
        assert client.get("/health/ready").status_code == 200
        failed = client.post("/sample", json={"model": "gan-one", "n": 2})
        assert failed.status_code == 503 and failed.json() == {
            "error": "model 'gan-one' failed while running its generator",
            "code": "model_run_failed",
        }
        assert client.post("/sample", json={"model": "gan-one", "n": 1}).status_code == 200
        assert client.post("/sample", json={"model": "dcgan-tiny", "n": 2}).status_code == 200
        assert client.get("/health/ready").status_code == 200


def test_startup_survives_a_card_whose_checksums_point_outside_the_store(
    tmp_path: Path, tiny_store: Path
) -> None:
    store = copy_store(tiny_store, tmp_path / "store")
    card_path = store / card_file("vae-tiny", 1)
    card = json.loads(card_path.read_text())
    card["files"]["../../etc/passwd"] = {"sha256": hashlib.sha256(b"").hexdigest(), "bytes": 0}
    card_path.write_text(json.dumps(card))
    registry = load_registry(tiny_settings(store))
    assert registry.get("vae-tiny").reason == (
        "vae-tiny: file '../../etc/passwd' is not a path inside the store"
    )
    assert registry.get("dcgan-tiny").state.value == "ready"


# ---------------------------------------------------------------- overload, in the domain


def test_a_request_that_waits_past_the_queue_timeout_is_refused_not_run() -> None:
    ran: list[int] = []

    def slow(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(0.3)
        ran.append(len(feeds["x"]))
        return feeds

    batcher = Batcher(slow, BatchPolicy(max_batch=1, queue_timeout=0.05, instances=1))

    async def scenario() -> list[object]:
        submits = [batcher.submit({"x": np.zeros((1, 2), np.float32)}) for _ in range(3)]
        results = await asyncio.gather(*submits, return_exceptions=True)
        await batcher.close()
        return results

    started = time.perf_counter()
    first, *late = asyncio.run(scenario())
    assert isinstance(first, dict)
    for refused in late:
        assert isinstance(refused, Overloaded) and "waited more than 0.05 s" in refused.message
        assert refused.retry_after >= 1
    assert ran == [1] and time.perf_counter() - started < 1.0


def test_the_batcher_survives_time_outs_that_empty_its_queue() -> None:
    """The worker waits for a free instance while the only queued request expires."""
    batcher = Batcher(
        lambda feeds: (time.sleep(0.2), feeds)[1],
        BatchPolicy(max_batch=4, max_delay=0.01, queue_timeout=0.05, instances=1),
    )

    async def scenario() -> list[object]:
        first = asyncio.ensure_future(batcher.submit({"x": np.zeros((1, 1), np.float32)}))
        await asyncio.sleep(0.05)  # past max_delay: the first is running alone
        late = await asyncio.gather(
            batcher.submit({"x": np.zeros((1, 1), np.float32)}), return_exceptions=True
        )
        await first
        alive = batcher._worker is not None and not batcher._worker.done()
        after = await batcher.submit({"x": np.ones((2, 1), np.float32)})
        return [*late, alive, after["x"].shape]

    late, worker_alive, shape = asyncio.run(scenario())
    assert isinstance(late, Overloaded) and worker_alive and shape == (2, 1)


def test_a_full_queue_refuses_at_once_and_drains() -> None:
    batcher = Batcher(
        lambda feeds: (time.sleep(0.05), feeds)[1], BatchPolicy(max_batch=1, queue_limit=2)
    )

    async def scenario() -> list[object]:
        return await asyncio.gather(
            *(batcher.submit({"x": np.zeros((1, 1), np.float32)}) for _ in range(6)),
            return_exceptions=True,
        )

    results = asyncio.run(scenario())
    refused = [r for r in results if isinstance(r, Overloaded)]
    assert len(refused) == 4 and all("queue is full" in r.message for r in refused)
    assert not batcher.busy


def test_a_retired_batcher_finishes_its_queue_and_still_serves_stragglers() -> None:
    batcher = Batcher(lambda feeds: feeds, BatchPolicy())

    async def scenario() -> tuple[bool, bool]:
        queued = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 1), np.float32)}))
        await asyncio.sleep(0)
        batcher.retire()
        await queued
        await asyncio.sleep(0.01)
        stopped = batcher._worker is not None and batcher._worker.done()
        straggler = await batcher.submit({"x": np.ones((2, 1), np.float32)})
        return stopped, straggler["x"].shape == (2, 1)

    assert asyncio.run(scenario()) == (True, True)


def test_autoregressive_samplings_wait_in_a_bounded_queue_for_a_bounded_time(
    tiny_store: Path,
) -> None:
    model = load_registry(tiny_settings(tiny_store)).get("pixelcnn-tiny")
    limits = Limits(queue_limit=1, queue_timeout=0.1)

    async def scenario() -> list[object]:
        slots = LocalSlots(1)
        assert await slots.acquire(math.inf)  # a long sampling
        operations = Operations(limits, slots)
        waiting = asyncio.ensure_future(operations.sample(model, SampleSpec(1, 0)))
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded, match="1 autoregressive samplings are waiting"):
            await operations.sample(model, SampleSpec(1, 0))
        with pytest.raises(Overloaded, match="waited more than 0.1 s"):
            await waiting
        slots.release()
        images = (await operations.sample(model, SampleSpec(1, 0))).payload
        return [images.shape, slots.gate.free]

    assert asyncio.run(scenario()) == [(1, 1, 28, 28), 1]


def test_the_store_fault_helpers_write_the_store_layout(tmp_path: Path, tiny_store: Path) -> None:
    store = copy_store(tiny_store, tmp_path / "store")
    assert publish_next_version(store, "vae-tiny") == 2
    card = json.loads((store / card_file("vae-tiny", 2)).read_text())
    assert card["version"] == 2
    assert set(card["files"]) == {graph_file("vae-tiny", r, 2) for r in ("encoder", "decoder")}
    assert load_registry(tiny_settings(store)).get("vae-tiny").version == 2
    shutil.rmtree(store)
