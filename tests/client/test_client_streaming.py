"""genserve's streams (``stream_sample``, ``stream_complete``) and ``timeout_ms``, against a real
``python -m service`` serving the shipped PixelCNN and PixelRNN: the events in order, partial
canvases that fill row by row, the same result as the plain call, refusals and deadlines as
their exceptions, and a cancelled stream that stops the service's work; sync and async."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from genserve import (
    AsyncClient,
    Client,
    ConnectionFailed,
    DeadlineExceeded,
    GenserveError,
    ModelNotFound,
    Partial,
    Progress,
    Retries,
    TimedOut,
    ValidationError,
)
from genserve.errors import ServerError, error_from_event, error_from_response
from genserve.events import EventDecoder, ServerEvent
from harness.live_server import REPO, free_port, running_service
from service.api.errors import STATUS_BY_ERROR, error_content

STORE = REPO / "model_store"
PIXELCNN = "pixelcnn-fashion"
PIXELRNN = "pixelrnn-fashion"
DISCONNECT = (PIXELCNN, "sample", "disconnect")

pytestmark = pytest.mark.skipif(
    not (STORE / f"{PIXELCNN}.v2.json").is_file() or not (STORE / f"{PIXELRNN}.v2.json").is_file(),
    reason="needs the shipped PixelCNN and PixelRNN",
)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    settings = {"SERVICE_WORKERS": "1", "SERVICE_STREAM_PARTIAL_ROWS": "4"}
    with running_service(STORE, SERVICE_DEVICE="cpu", **settings) as u:
        yield u


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[Client]:
    with Client(url) as c:
        yield c


def cancelled(url: str) -> dict[tuple[str, ...], float]:
    """``genserve_cancelled_requests_total`` by (model, operation, reason)."""
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == "genserve_cancelled_requests_total":
                found[tuple(sample.labels.values())] = sample.value
    return found


def wait_for_disconnects(url: str, before: dict[tuple[str, ...], float]) -> float:
    """The disconnects counted since ``before``, once there is one (the service sees a closed
    connection at the end of the row it is drawing)."""
    deadline = time.monotonic() + 10
    while True:
        grown = cancelled(url).get(DISCONNECT, 0) - before.get(DISCONNECT, 0)
        if grown or time.monotonic() > deadline:
            return grown
        time.sleep(0.05)


def timed_sample(client: Client) -> float:
    started = time.perf_counter()
    client.sample(PIXELCNN, n=1, seed=3)
    return time.perf_counter() - started


def test_a_streamed_sampling_gives_progress_partials_and_the_plain_result(client: Client) -> None:
    arrived = []
    with client.stream_sample(PIXELCNN, n=2, seed=7) as stream:
        events = []
        for event in stream:
            events.append(event)
            arrived.append(time.perf_counter())
    assert arrived[-1] - arrived[0] > 0.1  # row by row as drawn, not all at the end
    progress = [e for e in events if isinstance(e, Progress)]
    partials = [e for e in events if isinstance(e, Partial)]
    assert len(progress) + len(partials) == len(events)
    assert [p.rows_done for p in progress] == list(range(29))
    assert {p.rows for p in progress} == {28} and progress[-1].fraction == 1.0
    assert progress[0].eta_s is None and all(p.eta_s is not None for p in progress[1:])
    assert [p.rows_done for p in partials] == [4, 8, 12, 16, 20, 24]
    for i, (before, after) in enumerate(zip(partials, partials[1:], strict=False)):
        drawn = before.rows_done
        assert before.images.shape == (2, 28, 28) and before.images.dtype == np.float32
        assert not np.array_equal(before.images, after.images)  # rows drawn in between
        np.testing.assert_array_equal(before.images[:, :drawn], after.images[:, :drawn])
        assert (before.images[:, drawn:] == 0).all(), i  # rows not drawn yet are black
    assert partials[0].grid().size == (2 * 30 - 2, 28)
    result = stream.result
    plain = client.sample(PIXELCNN, n=2, seed=7)
    assert result.raw == plain.raw and result.seed == 7
    np.testing.assert_array_equal(result.images, plain.images)
    np.testing.assert_array_equal(partials[-1].images[:, :24], result.images[:, :24])


def test_a_streamed_completion_groups_its_canvases_by_input(client: Client) -> None:
    image = np.zeros((28, 28), np.float32)
    args = {"rows": 20, "samples": 2, "seed": 1}
    with client.stream_complete(PIXELRNN, image, **args) as stream:
        events = list(stream)
    progress = [e for e in events if isinstance(e, Progress)]
    (partial,) = [e for e in events if isinstance(e, Partial)]
    assert [p.rows_done for p in progress] == list(range(9)) and progress[0].rows == 8
    assert partial.rows_done == 4 and partial.images.shape == (1, 2, 28, 28)
    assert (partial.images[:, :, :20] == 0).all()  # the kept rows
    plain = client.complete(PIXELRNN, image, **args)
    assert stream.result.raw == plain.raw and stream.result.seeds == (1, 2)


def test_other_families_stream_the_result_alone(client: Client) -> None:
    with client.stream_sample("dcgan-fashion", n=3, seed=2) as stream:
        assert list(stream) == []
    assert stream.result.raw == client.sample("dcgan-fashion", n=3, seed=2).raw


def test_a_refused_stream_raises_as_the_plain_call(client: Client) -> None:
    with pytest.raises(ModelNotFound) as refused:
        with client.stream_sample("no-such-model"):
            pytest.fail("a refused stream does not start")
    assert (refused.value.status, refused.value.code) == (404, "model_not_found")
    with pytest.raises(ValidationError, match="invalid_input"):
        list(client.stream_sample(PIXELCNN, truncation=1.0))  # opened by the iteration


def test_timeout_ms_is_the_services_deadline_for_every_operation(client: Client) -> None:
    with pytest.raises(DeadlineExceeded) as late:
        client.sample(PIXELCNN, n=16, timeout_ms=200)
    assert (late.value.status, late.value.code) == (504, "deadline_exceeded")
    with client.stream_sample(PIXELCNN, n=16, timeout_ms=300) as stream:
        with pytest.raises(DeadlineExceeded) as streamed:
            for _ in stream:
                pass
    assert streamed.value.status == 504
    with pytest.raises(DeadlineExceeded):
        stream.result  # noqa: B018 - the stream's error, raised again
    image = np.zeros((28, 28), np.float32)
    calls = {
        "sample": lambda ms: client.sample(PIXELCNN, timeout_ms=ms),
        "encode": lambda ms: client.encode("vae-fashion", image, timeout_ms=ms),
        "reconstruct": lambda ms: client.reconstruct("vae-fashion", image, timeout_ms=ms),
        "interpolate": lambda ms: client.interpolate("vae-fashion", 1, 2, timeout_ms=ms),
        "score": lambda ms: client.score("vae-fashion", image, timeout_ms=ms),
        "complete": lambda ms: client.complete(PIXELRNN, image, rows=27, timeout_ms=ms),
        "traverse": lambda ms: client.traverse("vae-fashion", dim=0, timeout_ms=ms),
    }
    for name, call in calls.items():
        with pytest.raises(ValidationError) as refused:  # sent: the service checks 1 to 3.6e6
            call(0)
        assert any("timeout_ms" in str(d.get("loc")) for d in refused.value.details or []), name
        assert call(60_000).model, name


def test_cancel_closes_the_stream_and_the_service_stops_the_work(client: Client, url: str) -> None:
    alone = min(timed_sample(client) for _ in range(2))
    before = cancelled(url)
    stream = client.stream_sample(PIXELCNN, n=16)
    with stream:
        for event in stream:
            if isinstance(event, Progress) and event.rows_done >= 2:
                stream.cancel()
        assert list(stream) == []  # nothing after a cancel
    with pytest.raises(GenserveError) as no_result:
        stream.result  # noqa: B018
    assert no_result.value.code == "cancelled"
    assert wait_for_disconnects(url, before) == 1
    assert timed_sample(client) < alone + 1.0  # the slot is free at once


def test_the_calls_time_out_bounds_the_whole_stream(client: Client, url: str) -> None:
    before = cancelled(url)
    started = time.monotonic()
    with pytest.raises(TimedOut):
        with client.stream_sample(PIXELCNN, n=16, timeout=0.5) as stream:
            for _ in stream:
                pass
    assert time.monotonic() - started < 2.0
    assert wait_for_disconnects(url, before) == 1  # the connection was closed


def test_a_stream_is_retried_as_a_call_until_it_starts(caplog: pytest.LogCaptureFixture) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="genserve"):
        with Client(nowhere, retries=Retries(2, backoff=0.01)) as twice:
            with pytest.raises(ConnectionFailed):
                with twice.stream_sample(PIXELCNN):
                    pytest.fail("no stream starts")
    retried = [record.getMessage() for record in caplog.records]
    assert len(retried) == 2 and "POST /sample: connection_failed; retry 2 of 2" in retried[1]


def test_the_async_client_streams_and_cancels_as_the_sync_one(client: Client, url: str) -> None:
    plain = client.sample(PIXELCNN, n=2, seed=5)
    before = cancelled(url)

    async def streams() -> None:
        async with AsyncClient(url) as aclient:
            async with aclient.stream_sample(PIXELCNN, n=2, seed=5) as stream:
                events = [event async for event in stream]
            assert [e.rows_done for e in events if isinstance(e, Progress)] == list(range(29))
            assert stream.result.raw == plain.raw
            with pytest.raises(ModelNotFound):
                async with aclient.stream_complete("no-such-model", np.zeros((28, 28)), rows=27):
                    pass
            async with aclient.stream_sample(PIXELCNN, n=16) as cut:
                async for event in cut:
                    if isinstance(event, Progress) and event.rows_done >= 2:
                        await cut.cancel()
            with pytest.raises(GenserveError, match="cancelled"):
                cut.result  # noqa: B018

    asyncio.run(streams())
    assert wait_for_disconnects(url, before) == 1


def test_the_event_decoder_follows_the_rules_of_server_sent_events() -> None:
    decoder = EventDecoder()
    lines = [
        "\ufeff: a comment first, after a byte-order mark",
        "event: progress",
        'data: {"a":',
        "data:1}",
        "id: 7",
        "retry: 100",
        "",
        "",  # a blank line with nothing before it is no event
        "event: no data",
        "",
        "data: plain",
        "",
        "event: result",
        "data: cut off by the end of the stream",
    ]
    events = [event for line in lines if (event := decoder.feed(line)) is not None]
    assert events == [ServerEvent("progress", '{"a":\n1}'), ServerEvent("message", "plain")]


def test_an_error_event_is_the_exception_of_the_plain_answer() -> None:
    """Each code the service can end a stream with: the class and status of its plain answer
    (the admin routes' codes, which no stream ends with, aside)."""
    for error, status in STATUS_BY_ERROR.items():
        if error.code in ("admin_disabled", "model_load_failed"):
            continue
        body = error_content("why", error.code)
        plain = error_from_response(httpx.Response(status, json=body))
        streamed = error_from_event(body)
        assert (type(streamed), streamed.status, streamed.code, streamed.message) == (
            type(plain),
            status,
            error.code,
            "why",
        )
    unknown = error_from_event({"error": "why", "code": "new_in_a_later_service"})
    assert type(unknown) is ServerError and unknown.code == "new_in_a_later_service"
