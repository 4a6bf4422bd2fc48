"""genserve.Client and AsyncClient against a real ``python -m service`` on 127.0.0.1: every
operation, the results' arrays and grids (pixel for pixel the service's own PNG grid), every
error the service can be made to answer as its own exception, retries on a real 503 and 429,
time-outs, and that the package needs neither the service nor FastAPI."""

from __future__ import annotations

import ast
import asyncio
import base64
import io
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

import genserve
from genserve import (
    AsyncClient,
    Client,
    ConnectionFailed,
    GenserveError,
    LimitExceeded,
    ModelNotFound,
    ModelNotReady,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    Retries,
    TimedOut,
    Unauthorized,
    UnsupportedOperation,
    ValidationError,
)
from genserve.errors import error_from_response
from genserve.images import decode_pixels, encode_images, png_bytes
from harness.live_server import REPO, free_port, running_service
from service.api.errors import STATUS_BY_ERROR, error_content
from tests.support.fresh_imports import assert_imports_leave_out

KEY = "client-test-key-0123456789"
ADMIN = "client-test-admin-0123456789"
RNG = np.random.default_rng(0)
ITEMS = RNG.random((3, 28, 28)).astype(np.float32)
"""Three input images, floats in [0, 1]."""
QUANTISED = np.rint(ITEMS * 255) / 255
"""What the service sees of them: 8-bit PNGs."""
GRAY = 2 / 255
"""Gray levels two runs of one seed may differ by (batched runs round differently)."""


@pytest.fixture(scope="module")
def url(tiny_store_all: Path) -> Iterator[str]:
    """Every tiny model; a 64 KiB body limit, so that a large request is refused."""
    with running_service(tiny_store_all, SERVICE_DEVICE="cpu", SERVICE_MAX_BODY_BYTES="65536") as u:
        yield u


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[Client]:
    with Client(url) as c:
        yield c


@pytest.fixture(scope="module")
def keyed_url(tiny_store: Path) -> Iterator[str]:
    """API keys on, one request a second per key."""
    settings = {
        "SERVICE_API_KEYS": f"app1:{KEY}",
        "SERVICE_API_KEY_RATE": "1",
        "SERVICE_API_KEY_BURST": "1",
    }
    with running_service(tiny_store, SERVICE_DEVICE="cpu", **settings) as u:
        yield u


@pytest.fixture(scope="module")
def queued_url(tiny_store: Path) -> Iterator[str]:
    """One pixel-by-pixel sampling at a time, and a request that waits 1 ms for its turn is
    refused with 503 overloaded + Retry-After: 1."""
    settings = {
        "SERVICE_MAX_CONCURRENT_AUTOREGRESSIVE": "1",
        "SERVICE_QUEUE_TIMEOUT_MS": "1",
        "SERVICE_MAX_AUTOREGRESSIVE_N": "64",
        "SERVICE_ADMIN_TOKEN": ADMIN,
    }
    with running_service(tiny_store, SERVICE_DEVICE="cpu", **settings) as u:
        yield u


def server_png(url: str, path: str, body: dict[str, object]) -> np.ndarray:
    """The service's own PNG (``Accept: image/png``), as pixels."""
    response = httpx.post(url + path, json=body, headers={"Accept": "image/png"}, timeout=60)
    response.raise_for_status()
    return np.asarray(Image.open(io.BytesIO(response.content)))


def request_count(url: str, model: str, status: int) -> float:
    """Requests for ``/sample`` the service has answered with ``status`` for ``model``."""
    text = httpx.get(url + "/metrics", timeout=10).text
    labels = f'model="{model}",operation="sample",status="{status}"'
    pattern = r"genserve_request_duration_seconds_count\{" + re.escape(labels) + r"\} ([0-9.e+]+)"
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


# ---------------------------------------------------------------- the store and health


def test_models_lists_every_model_with_its_card(client: Client) -> None:
    models = {m.name: m for m in client.models()}
    assert set(models) == {
        "vae-tiny",
        "dcgan-tiny",
        "pixelcnn-tiny",
        "ae-tiny",
        "cvae-tiny",
        "pixelrnn-tiny",
    }
    dcgan = models["dcgan-tiny"]
    assert dcgan.state == "ready" and dcgan.family == "dcgan" and dcgan.version == 1
    assert dcgan.operations == ("interpolate", "sample") and dcgan.image_shape == (1, 28, 28)
    assert dcgan.provider == "CPUExecutionProvider" and not dcgan.conditional
    cvae = models["cvae-tiny"]
    assert cvae.conditional and cvae.class_names is not None and "sneaker" in cvae.class_names
    sampling = models["pixelcnn-tiny"].sampling
    assert sampling is not None and sampling.method in ("windowed", "row_step", "naive")
    assert dcgan.raw["name"] == "dcgan-tiny"


def test_model_describes_one_and_an_unknown_one_is_model_not_found(client: Client) -> None:
    vae = client.model("vae-tiny")
    assert vae.name == "vae-tiny" and vae.latent_dim == 8 and "traverse" in vae.operations
    with pytest.raises(ModelNotFound) as missing:
        client.model("no-such-model")
    error = missing.value
    assert isinstance(error, NotFound) and isinstance(error, GenserveError)
    assert (error.status, error.code) == (404, "model_not_found")
    assert "no-such-model" in error.message and str(error).startswith("model_not_found: ")


def test_health_is_live_and_ready_with_each_model(client: Client) -> None:
    health = client.health()
    assert health.live and health.ready and health.error is None
    assert health.models["vae-tiny"].state == "ready"
    assert health.models["vae-tiny"].provider == "CPUExecutionProvider"


# ---------------------------------------------------------------- generation


def test_sample_decodes_the_images_and_its_grid_is_the_services_png(
    client: Client, url: str, tmp_path: Path
) -> None:
    result = client.sample("dcgan-tiny", n=16, seed=42)
    assert (result.model, result.version, result.seed, result.labels) == ("dcgan-tiny", 1, 42, None)
    images = result.images
    assert images.shape == (16, 28, 28) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.05
    assert not images.flags.writeable
    again = client.sample("dcgan-tiny", n=1, seed=42).images[0]
    assert np.abs(again - images[0]).max() <= GRAY  # image i of a seed whatever n is
    expected = server_png(
        url, "/sample", {"model": "dcgan-tiny", "n": 16, "seed": 42, "columns": 4, "scale": 2}
    )
    assert np.array_equal(np.asarray(result.grid(columns=4, scale=2)), expected)
    path = result.save_grid(tmp_path / "grid.png", scale=2)
    with Image.open(path) as written:
        assert written.size == ((4 * 30 - 2) * 2,) * 2 and written.mode == "L"
    tiles = result.pil()
    assert len(tiles) == 16 and tiles[0].size == (28, 28)
    assert np.array_equal(np.asarray(tiles[3]), np.rint(images[3] * 255).astype(np.uint8))


def test_sample_knobs_labels_scale_columns_and_a_drawn_seed(client: Client) -> None:
    truncated = client.sample("dcgan-tiny", n=2, seed=1, truncation=0.5)
    assert truncated.images.shape == (2, 28, 28)
    assert not np.array_equal(truncated.images, client.sample("dcgan-tiny", n=2, seed=1).images)
    pixelcnn = client.sample("pixelcnn-tiny", n=2, seed=3, temperature=0.8)
    assert pixelcnn.images.shape == (2, 28, 28) and pixelcnn.seed == 3
    by_name = client.sample("cvae-tiny", n=3, seed=5, label="Sneaker")
    by_index = client.sample("cvae-tiny", n=3, seed=5, label=7)
    assert by_name.labels == by_index.labels == ("sneaker",) * 3
    assert np.array_equal(by_name.images, by_index.images)
    drawn = client.sample("cvae-tiny", n=4, seed=None)
    assert isinstance(drawn.seed, int) and drawn.labels is not None and len(drawn.labels) == 4
    assert client.sample("vae-tiny", scale=2).images.shape == (1, 56, 56)
    six = client.sample("vae-tiny", n=6, seed=0, columns=3)
    assert six.grid().size == (3 * 30 - 2, 2 * 30 - 2)  # the call's columns, by default
    assert six.grid(columns=6).size == (6 * 30 - 2, 28)
    assert client.sample(n=1, seed=0).model == "cvae-tiny"  # the first ready one, by name


def test_encode_takes_arrays_pil_images_paths_and_png_bytes(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "item.png"
    pixels = np.rint(ITEMS[0] * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    forms = [
        ITEMS[0],
        ITEMS[0][None],
        pixels,
        Image.fromarray(pixels).convert("RGB"),
        path,
        str(path),
        path.read_bytes(),
    ]
    means = [client.encode("vae-tiny", form).latents[0] for form in forms]
    for mean in means[1:]:
        np.testing.assert_allclose(mean, means[0], atol=1e-5)
    batch = client.encode("vae-tiny", ITEMS)
    assert batch.mean is not None and batch.log_var is not None and batch.z is None
    assert batch.mean.shape == batch.log_var.shape == (3, 8)
    np.testing.assert_allclose(batch.mean[0], means[0], atol=1e-5)
    listed = client.encode("vae-tiny", [ITEMS[0], path, ITEMS[1:]])
    np.testing.assert_allclose(listed.latents, batch.latents[[0, 0, 1, 2]], atol=1e-5)
    code = client.encode("ae-tiny", ITEMS[:2])
    assert code.mean is None and code.z is not None and code.latents.shape == (2, 8)
    labelled = client.encode("cvae-tiny", ITEMS[:2], label=["sneaker", 3])
    assert labelled.latents.shape == (2, 8)


def test_reconstruct_gives_each_images_reconstruction_and_its_error(client: Client) -> None:
    result = client.reconstruct("vae-tiny", ITEMS)
    assert result.images.shape == (3, 28, 28) and result.error.shape == (3,)
    mse = ((result.images - QUANTISED) ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose(result.error, mse, atol=2e-3)
    assert client.reconstruct("ae-tiny", ITEMS[0], scale=3).images.shape == (1, 84, 84)
    assert client.reconstruct("cvae-tiny", ITEMS[:2], label=1).images.shape == (2, 28, 28)


def test_interpolate_between_seeds_latents_and_images(client: Client) -> None:
    seeds = client.interpolate("dcgan-tiny", 1, 2, steps=5, method="slerp")
    assert seeds.images.shape == (5, 28, 28) and seeds.latents.shape == (5, 8)
    first = client.sample("dcgan-tiny", n=1, seed=1).images[0]
    assert np.abs(seeds.images[0] - first).max() <= GRAY
    assert seeds.grid().size == (5 * 30 - 2, 28)  # a strip by default
    start, end = seeds.latents[1], list(seeds.latents[3])
    latents = client.interpolate("dcgan-tiny", start, end, steps=3)
    np.testing.assert_allclose(latents.latents[[0, -1]], seeds.latents[[1, 3]], atol=1e-5)
    images = client.interpolate("vae-tiny", ITEMS[0], ITEMS[1], steps=4)
    assert images.images.shape == (4, 28, 28)
    encoded = client.encode("vae-tiny", ITEMS[:2]).latents
    np.testing.assert_allclose(images.latents[[0, -1]], encoded, atol=1e-4)
    conditional = client.interpolate("cvae-tiny", 1, ITEMS[0], label="bag", scale=2)
    assert conditional.images.shape == (8, 56, 56)


def test_score_exact_and_iwae_with_k_seed_and_labels(client: Client) -> None:
    exact = client.score("pixelcnn-tiny", ITEMS)
    assert exact.kind == "exact" and exact.k is None and exact.seed is None
    assert exact.bits_per_dim.shape == (3,) and (exact.bits_per_dim > 0).all()
    np.testing.assert_allclose(
        exact.anomaly_score, exact.bits_per_dim - exact.png_bits_per_dim, atol=1e-9
    )
    np.testing.assert_allclose(
        exact.log_likelihood, -exact.bits_per_dim * 784 * np.log(2), rtol=1e-6
    )
    iwae = client.score("vae-tiny", ITEMS[:2], k=10, seed=3)
    assert (iwae.kind, iwae.k, iwae.seed) == ("iwae", 10, 3)
    again = client.score("vae-tiny", ITEMS[:2], k=10, seed=3)
    np.testing.assert_array_equal(iwae.bits_per_dim, again.bits_per_dim)
    labelled = client.score("cvae-tiny", ITEMS[:2], k=4, seed=0, label=["sneaker", "bag"])
    assert labelled.labels == ("sneaker", "bag")


def test_complete_keeps_the_given_rows_or_mask_and_draws_the_rest(client: Client) -> None:
    result = client.complete("pixelcnn-tiny", ITEMS[:2], rows=14, samples=3, seed=5)
    assert result.images.shape == (2, 3, 28, 28) and result.seeds == (5, 6, 7)
    for i in range(2):
        for s in range(3):
            np.testing.assert_allclose(result.images[i, s, :14], QUANTISED[i, :14], atol=1e-6)
    assert result.grid().size == (3 * 30 - 2, 2 * 30 - 2)  # one row per input image
    mask = np.zeros((28, 28), bool)
    mask[:, :10] = True
    masked = client.complete("pixelrnn-tiny", ITEMS[0], mask=mask, seed=1, temperature=0.9)
    assert masked.images.shape == (1, 1, 28, 28)
    np.testing.assert_allclose(masked.images[0, 0][mask], QUANTISED[0][mask], atol=1e-6)
    assert client.complete("pixelcnn-tiny", ITEMS[0], rows=20, scale=2).images.shape[-1] == 56


def test_traverse_from_a_seed_an_image_and_a_latent(client: Client) -> None:
    result = client.traverse("vae-tiny", dim=3, seed=7, steps=9)
    assert (result.seed, result.dim, result.label) == (7, 3, None)
    np.testing.assert_allclose(result.values, np.linspace(-3, 3, 9))
    np.testing.assert_allclose(result.latents[:, 3], result.values, atol=1e-6)
    assert result.images.shape == (9, 28, 28) and result.grid().size == (9 * 30 - 2, 28)
    from_image = client.traverse("vae-tiny", dim=0, image=ITEMS[0], range=(-1.0, 1.0), steps=3)
    assert from_image.seed is None and list(from_image.values) == [-1.0, 0.0, 1.0]
    base = np.full(8, 0.25)
    from_latent = client.traverse("vae-tiny", dim=1, latent=base, steps=2, columns=1)
    np.testing.assert_allclose(from_latent.latents[:, 0], 0.25, atol=1e-6)
    assert from_latent.grid().size == (28, 2 * 30 - 2)
    conditional = client.traverse("cvae-tiny", dim=2, seed=4, label="bag", scale=2)
    assert conditional.label == "bag" and conditional.images.shape == (8, 56, 56)


def test_the_async_client_answers_as_the_sync_one(url: str, client: Client) -> None:
    sample = client.sample("dcgan-tiny", n=4, seed=9)
    mean = client.encode("vae-tiny", ITEMS).mean
    exact = client.score("pixelcnn-tiny", ITEMS).bits_per_dim
    names = [m.name for m in client.models()]

    async def every_operation() -> None:
        async with AsyncClient(url) as aclient:
            assert [m.name for m in await aclient.models()] == names
            assert (await aclient.model("dcgan-tiny")).family == "dcgan"
            assert (await aclient.health()).ready
            drawn = await aclient.sample("dcgan-tiny", n=4, seed=9)
            assert np.abs(drawn.images - sample.images).max() <= GRAY
            encoded = await aclient.encode("vae-tiny", ITEMS)
            np.testing.assert_allclose(encoded.mean, mean, atol=1e-6)
            assert (await aclient.reconstruct("vae-tiny", ITEMS)).error.shape == (3,)
            path = await aclient.interpolate("dcgan-tiny", 1, 2, steps=4)
            assert path.images.shape == (4, 28, 28)
            scored = await aclient.score("pixelcnn-tiny", ITEMS)
            np.testing.assert_allclose(scored.bits_per_dim, exact)
            completed = await aclient.complete("pixelcnn-tiny", ITEMS[0], rows=14, seed=2)
            assert completed.seeds == (2,)
            assert (await aclient.traverse("vae-tiny", dim=3, seed=7)).seed == 7
            together = await asyncio.gather(*(aclient.sample("vae-tiny", seed=s) for s in range(4)))
            assert [r.seed for r in together] == [0, 1, 2, 3]

    asyncio.run(every_operation())


# ---------------------------------------------------------------- errors


def test_an_operation_the_family_cannot_do_is_unsupported_operation(client: Client) -> None:
    with pytest.raises(UnsupportedOperation) as refused:
        client.encode("dcgan-tiny", ITEMS[0])
    assert refused.value.status == 422 and "vae-tiny" in refused.value.message


def test_bad_input_is_validation_error_with_its_code(client: Client) -> None:
    with pytest.raises(ValidationError) as out_of_range:
        client.sample("dcgan-tiny", n=0)
    assert (out_of_range.value.status, out_of_range.value.code) == (422, "validation_error")
    assert out_of_range.value.details and out_of_range.value.details[0]["loc"] == ["body", "n"]
    with pytest.raises(ValidationError) as knob:
        client.sample("dcgan-tiny", temperature=0.5)
    assert knob.value.code == "invalid_input" and "temperature" in knob.value.message
    with pytest.raises(ValidationError) as size:
        client.encode("vae-tiny", np.zeros((32, 32), np.float32))
    assert size.value.code == "invalid_input" and "32x32" in size.value.message
    with pytest.raises(ValueError, match=r"values lie in \[2, 2\]"):  # caught before sending
        client.encode("vae-tiny", np.full((28, 28), 2.0))


def test_limits_are_limit_exceeded(client: Client) -> None:
    with pytest.raises(LimitExceeded) as too_many:
        client.sample("dcgan-tiny", n=65)
    assert too_many.value.code == "limit_exceeded" and "64" in too_many.value.message
    with pytest.raises(LimitExceeded, match="k: "):
        client.score("vae-tiny", ITEMS[0], k=100_000)


def test_a_body_over_the_limit_is_payload_too_large(client: Client) -> None:
    noise = RNG.integers(0, 256, (64, 28, 28), dtype=np.uint8)  # about 80 KiB as base64 PNGs
    with pytest.raises(PayloadTooLarge) as refused:
        client.encode("vae-tiny", noise)
    assert isinstance(refused.value, LimitExceeded)
    assert (refused.value.status, refused.value.code) == (413, "payload_too_large")


def test_a_wrong_path_is_not_found(url: str) -> None:
    with Client(url + "/no/such/prefix") as wrong, pytest.raises(NotFound) as refused:
        wrong.models()
    assert (refused.value.status, refused.value.code) == (404, "not_found")
    assert not isinstance(refused.value, ModelNotFound)


def test_every_code_of_the_services_error_table_has_its_class() -> None:
    """Each domain error the API maps to a status, and the codes of the API layer itself."""
    expected = {
        "model_not_found": ModelNotFound,
        "invalid_input": ValidationError,
        "unsupported_operation": UnsupportedOperation,
        "limit_exceeded": LimitExceeded,
        "payload_too_large": PayloadTooLarge,
        "model_not_ready": ModelNotReady,
        "model_run_failed": genserve.ModelRunFailed,
        "overloaded": Overloaded,
        "deadline_exceeded": genserve.DeadlineExceeded,
        "unauthorized": Unauthorized,
        "rate_limited": RateLimited,
        "admin_disabled": NotFound,  # an admin route: no class of its own in a client
        "model_load_failed": GenserveError,
    }
    api_codes = {
        ("validation_error", 422): ValidationError,
        ("invalid_json", 422): ValidationError,
        ("not_found", 404): NotFound,
        ("method_not_allowed", 405): genserve.MethodNotAllowed,
        ("internal_error", 500): genserve.ServerError,
        ("bad_gateway", 502): genserve.ServerError,
    }
    cases = {
        (error.code, status): expected[error.code] for error, status in STATUS_BY_ERROR.items()
    }
    for (code, status), cls in {**cases, **api_codes}.items():
        headers = {"Retry-After": "3"}
        response = httpx.Response(status, json=error_content("why", code), headers=headers)
        error = error_from_response(response)
        assert type(error) is cls, (code, type(error))
        assert (error.status, error.code, error.message, error.retry_after) == (
            status,
            code,
            "why",
            3,
        )
    proxy = error_from_response(httpx.Response(502, text="<html>Bad Gateway</html>"))
    assert isinstance(proxy, genserve.ServerError) and proxy.message == "<html>Bad Gateway</html>"


# ---------------------------------------------------------------- connections and time-outs


def test_an_unreachable_service_is_connection_failed_after_the_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with Client(nowhere, retries=0) as once, pytest.raises(ConnectionFailed) as failed:
        once.health()
    assert failed.value.status is None and failed.value.code == "connection_failed"
    assert nowhere in failed.value.message
    with caplog.at_level(logging.WARNING, logger="genserve"):
        with Client(nowhere, retries=Retries(2, backoff=0.01)) as twice:
            with pytest.raises(ConnectionFailed):
                twice.health()
    retried = [record.getMessage() for record in caplog.records]
    assert len(retried) == 2 and "GET /health/live: connection_failed; retry 2 of 2" in retried[1]


def test_time_outs_per_client_and_per_call(url: str) -> None:
    with Client(url, timeout=0.001) as hasty:
        started = time.monotonic()
        with pytest.raises(TimedOut) as late:
            hasty.sample("pixelrnn-tiny", n=16, seed=0)
        assert time.monotonic() - started < 1.0 and isinstance(late.value, ConnectionFailed)
        assert late.value.code == "timeout"
        assert hasty.sample("pixelrnn-tiny", n=16, seed=0, timeout=60).images.shape[0] == 16


def test_defaults_come_from_the_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENSERVE_URL", url + "/")
    with Client() as from_env:
        assert from_env.url == url and from_env.health().ready
    monkeypatch.delenv("GENSERVE_URL")
    assert Client().url == genserve.DEFAULT_URL


# ---------------------------------------------------------------- keys and rates


def test_without_the_key_the_api_is_unauthorized_but_health_is_open(keyed_url: str) -> None:
    with Client(keyed_url) as anonymous:
        assert anonymous.health().ready
        with pytest.raises(Unauthorized) as refused:
            anonymous.models()
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    with Client(keyed_url, api_key="not-a-key-of-this-service") as wrong:
        with pytest.raises(Unauthorized, match="not one of"):
            wrong.sample("dcgan-tiny")


def test_past_its_rate_a_key_is_rate_limited_then_retried_after_retry_after(
    keyed_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GENSERVE_API_KEY", KEY)
    with Client(keyed_url, retries=3) as patient, Client(keyed_url, retries=0) as hasty:
        assert patient.sample("dcgan-tiny", seed=1).seed == 1  # the key's one token
        with pytest.raises(RateLimited) as limited:
            hasty.sample("dcgan-tiny", seed=1)
        assert (limited.value.status, limited.value.retry_after) == (429, 1.0)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="genserve"):
            assert patient.sample("dcgan-tiny", seed=2).seed == 2
    assert time.monotonic() - started >= 0.9  # it waited what Retry-After said
    assert "rate_limited (429); retry 1 of 3 in 1 s" in caplog.text


# ---------------------------------------------------------------- a real 503, retried


@contextmanager
def slot_taken(url: str) -> Iterator[None]:
    """While a long pixel-by-pixel sampling holds the only slot (about 0.3 s): from its first
    row drawn, which its event stream tells, to its end."""
    failures: list[BaseException] = []
    drawing = threading.Event()

    def sample_long() -> None:
        body = {"model": "pixelcnn-tiny", "n": 64, "seed": 0}
        events = {"Accept": "text/event-stream"}
        try:
            with httpx.stream("POST", url + "/sample", json=body, headers=events, timeout=60) as r:
                r.raise_for_status()
                lines = list(_until_first_row(r.iter_lines(), drawing))
            assert "event: result" in lines, lines[-3:]
        except BaseException as exc:
            failures.append(exc)
        finally:
            drawing.set()

    blocker = threading.Thread(target=sample_long)
    blocker.start()
    drawing.wait(30)
    assert not failures, f"no long sampling: {failures}"
    try:
        yield
    finally:
        blocker.join()
        assert not failures, f"the long sampling failed: {failures}"


def _until_first_row(lines: Iterator[str], drawing: threading.Event) -> Iterator[str]:
    """Every line of an event stream, setting ``drawing`` once a row has been drawn."""
    for line in lines:
        if line.startswith("data: ") and '"rows_done":' in line and '"rows_done":0' not in line:
            drawing.set()
        yield line


def test_a_503_overloaded_is_retried_after_retry_after_and_then_succeeds(
    queued_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    refused, served = (request_count(queued_url, "pixelcnn-tiny", s) for s in (503, 200))
    with Client(queued_url, retries=3) as patient, slot_taken(queued_url):
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="genserve"):
            result = patient.sample("pixelcnn-tiny", n=1, seed=4)
        waited = time.monotonic() - started
    assert result.images.shape == (1, 28, 28) and waited >= 0.9
    assert "POST /sample: overloaded (503); retry 1 of 3 in 1 s" in caplog.text
    assert request_count(queued_url, "pixelcnn-tiny", 503) >= refused + 1
    assert request_count(queued_url, "pixelcnn-tiny", 200) == served + 2  # the long one, ours


def test_a_503_is_given_up_without_retries_or_past_the_time_out(queued_url: str) -> None:
    with Client(queued_url, retries=0) as never, slot_taken(queued_url):
        with pytest.raises(Overloaded) as refused:
            never.sample("pixelcnn-tiny", seed=4)
    assert (refused.value.status, refused.value.code, refused.value.retry_after) == (
        503,
        "overloaded",
        1.0,
    )
    with Client(queued_url, retries=5, timeout=0.5) as hurried, slot_taken(queued_url):
        started = time.monotonic()
        with pytest.raises(Overloaded):  # Retry-After: 1 is past the 0.5 s time-out
            hurried.sample("pixelcnn-tiny", seed=4)
        assert time.monotonic() - started < 0.5


def test_the_async_client_retries_a_503_as_the_sync_one(
    queued_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def call() -> genserve.SampleResult:
        async with AsyncClient(queued_url, retries=3) as aclient:
            return await aclient.sample("pixelcnn-tiny", n=2, seed=4)

    with slot_taken(queued_url), caplog.at_level(logging.WARNING, logger="genserve"):
        result = asyncio.run(call())
    assert result.images.shape == (2, 28, 28)
    assert "overloaded (503); retry 1 of 3" in caplog.text


def test_a_model_not_ready_is_retried_with_backoff_then_raised(
    queued_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    httpx.post(f"{queued_url}/admin/models/vae-tiny/unload", headers=admin).raise_for_status()
    before = request_count(queued_url, "", 503)
    try:
        with caplog.at_level(logging.WARNING, logger="genserve"):
            with Client(queued_url, retries=Retries(2, backoff=0.05)) as client:
                with pytest.raises(ModelNotReady) as refused:
                    client.sample("vae-tiny")
    finally:
        httpx.post(f"{queued_url}/admin/models/vae-tiny/load", headers=admin).raise_for_status()
    assert (refused.value.status, refused.value.retry_after) == (503, None)
    assert caplog.text.count("model_not_ready (503); retry") == 2
    assert request_count(queued_url, "", 503) == before + 3  # the first try and two retries


# ---------------------------------------------------------------- parts, without a service


def test_retries_honour_retry_after_and_give_up_where_they_should() -> None:
    retries = Retries(count=2, backoff=0.1, max_wait=5)
    overloaded = Overloaded("busy", status=503, retry_after=2.0)
    assert retries.wait(0, overloaded, remaining=10) == 2.0
    assert retries.wait(2, overloaded, remaining=10) is None  # the count is spent
    assert retries.wait(0, overloaded, remaining=1.5) is None  # past the time-out
    assert retries.wait(0, Overloaded("busy", status=503, retry_after=9), 60) is None  # max_wait
    backoff = retries.wait(1, ModelNotReady("down", status=503), remaining=10)
    assert backoff is not None and 0.1 <= backoff <= 0.2
    assert retries.wait(0, ValidationError("no", status=422), remaining=10) is None
    assert retries.wait(0, TimedOut("late"), remaining=10) is None
    assert retries.wait(0, ConnectionFailed("refused"), remaining=10) is not None
    assert Retries(count=0).wait(0, overloaded, remaining=10) is None


def test_images_go_out_as_pngs_and_come_back_from_any_png() -> None:
    pixels = RNG.integers(0, 256, (28, 28), dtype=np.uint8)
    (sent,) = encode_images(pixels)
    assert np.array_equal(decode_pixels(sent), pixels)
    with Image.open(io.BytesIO(png_bytes(pixels))) as image:  # Pillow reads what we write
        assert np.array_equal(np.asarray(image), pixels)
    for mode in ("L", "RGB"):  # filtered and colour PNGs take Pillow's way
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buffer, format="PNG", optimize=True)
        encoded = base64.b64encode(buffer.getvalue()).decode()
        assert np.abs(decode_pixels(encoded).astype(int) - pixels).max() <= 1
    assert len(encode_images(np.zeros((5, 1, 28, 28), np.float32))) == 5
    with pytest.raises(ValueError, match="expected"):
        encode_images(np.zeros((2, 3, 28, 28)))


def _imported(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_the_package_imports_nothing_of_the_service_but_serve_does_lazily() -> None:
    project = {"service", "modelstore", "training"}
    for path in sorted((REPO / "genserve").glob("*.py")):
        ours = sorted(
            m for m in _imported(ast.parse(path.read_text())) if m.split(".")[0] in project
        )
        assert ours == (["service.__main__"] if path.name == "cli.py" else []), path.name
    cli = ast.parse((REPO / "genserve" / "cli.py").read_text())
    at_import_time = set().union(
        *(_imported(node) for node in cli.body if not isinstance(node, ast.FunctionDef))
    )
    assert "service.__main__" not in at_import_time  # only `genserve serve` imports it


def test_the_package_needs_neither_the_service_nor_fastapi_nor_torch() -> None:
    assert_imports_leave_out(
        "genserve, genserve.cli", {"service", "fastapi", "torch", "onnxruntime", "pydantic"}
    )
