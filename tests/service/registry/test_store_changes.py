"""A store that changes underneath a running service with its watch on (docs/reliability.md,
"Store changes"): files deleted, a card written in two halves, a graph replaced in place, the
whole store gone and back. Against a real uvicorn on 127.0.0.1, under traffic: no request
fails, a serving version keeps serving from memory (``/health/ready`` notes why), the watch
keeps polling, and the log says each thing once, however many polls see it."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.live_server import service_process
from harness.store_faults import copy_store, publish_next_version

POLL_S = 0.05
POLLS_S = 0.5
"""Ten polls: long enough for a problem to be seen again and again."""
TOKEN = "a-test-admin-token-0123"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
GRAPH = "dcgan-tiny.generator/1/model.onnx"


@dataclass
class Served:
    url: str
    store: Path
    log: Path
    pristine: Path
    """An untouched copy of the store, to put files back from."""

    def lines(self, text: str) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if text in line]

    def said_once(self, text: str) -> None:
        """Wait until the log says ``text``, let ten more polls pass, and check it said it once."""
        wait_until(lambda: bool(self.lines(text)), f"the log to say {text!r}")
        time.sleep(POLLS_S)
        assert len(self.lines(text)) == 1, self.lines(text)

    def health(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/health/ready", timeout=10)
        assert response.status_code == 200, response.text
        models: dict[str, Any] = response.json()["models"]
        return models

    def admin(self, action: str, model: str) -> httpx.Response:
        return httpx.post(f"{self.url}/admin/models/{model}/{action}", headers=ADMIN, timeout=30)

    def version(self, model: str) -> int:
        version: int = httpx.get(f"{self.url}/models/{model}", timeout=10).json()["version"]
        return version

    def restore(self, *names: str) -> None:
        for name in names:
            source, target = self.pristine / name, self.store / name
            if source.is_dir():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(POLL_S)


@contextmanager
def half_written(path: Path, text: str) -> Iterator[None]:
    """``path`` holds the first half of ``text`` (flushed) inside the block, all of it after."""
    half = len(text) // 2
    with path.open("w") as f:
        f.write(text[:half])
        f.flush()
        yield
        f.write(text[half:])


@dataclass
class Traffic:
    """/sample on two models, one request after another in a thread, while the store changes."""

    url: str
    models: tuple[str, ...] = ("dcgan-tiny", "vae-tiny")
    answers: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            seed = 0
            while not self._stop.is_set():
                model = self.models[seed % len(self.models)]
                response = client.post("/sample", json={"model": model, "seed": seed})
                self.answers.append((model, response.status_code, response.json()))
                seed += 1

    def versions(self, model: str) -> list[int]:
        """The versions that answered for ``model``, in order, once every answer is checked to
        be a 200: no request may fail while the store changes."""
        failed = [(m, status, body) for m, status, body in self.answers if status != 200]
        assert failed == [], failed[:3]
        assert len(self.answers) >= 10, "too little traffic to tell"
        return [body["version"] for m, _, body in self.answers if m == model]


@pytest.fixture
def served(tmp_path: Path, tiny_store: Path) -> Iterator[Served]:
    store = copy_store(tiny_store, tmp_path / "store")
    log = tmp_path / "service.log"
    settings = {
        "SERVICE_WORKERS": "1",
        "SERVICE_DEVICE": "cpu",
        "SERVICE_INTRA_OP_THREADS": "1",
        "SERVICE_WATCH_INTERVAL_S": str(POLL_S),
        "SERVICE_ADMIN_TOKEN": TOKEN,
    }
    with service_process(store, log_level="info", log_file=log, **settings) as (url, _):
        yield Served(url, store, log, tiny_store)


def watch_picks_up_a_new_version(served: Served, model: str) -> None:
    """The watch is still polling: a version published now is served."""
    version = publish_next_version(served.store, model)
    wait_until(lambda: served.version(model) == version, f"{model} v{version} to serve")


def test_files_deleted_while_they_serve(served: Served) -> None:
    keeps = "dcgan-tiny v1 keeps serving from memory; in the store: dcgan-tiny:"
    with Traffic(served.url) as traffic:
        (served.store / GRAPH).unlink()
        served.said_once(f"{keeps} {GRAPH} is missing")
        # the whole version, card and graph folder: a new problem, said once more
        (served.store / "dcgan-tiny.v1.json").unlink()
        shutil.rmtree(served.store / "dcgan-tiny.generator")
        served.said_once(f"{keeps} dcgan-tiny.v1.json is missing")
        dcgan = served.health()["dcgan-tiny"]
        assert dcgan["state"] == "ready" and dcgan["version"] == 1
        assert dcgan["reason"] == "serving from memory; in the store: " + (
            "dcgan-tiny: dcgan-tiny.v1.json is missing"
        )
        served.restore("dcgan-tiny.generator", "dcgan-tiny.v1.json")  # graphs first
        served.said_once("dcgan-tiny v1: its files in the store match again")
    assert set(traffic.versions("dcgan-tiny")) == {1}
    assert "reason" not in served.health()["dcgan-tiny"]
    watch_picks_up_a_new_version(served, "vae-tiny")


def test_a_card_written_in_two_halves(tmp_path: Path, served: Served) -> None:
    # v2, graphs first, from a scratch copy; then its card in two writes with polls between
    scratch = copy_store(served.pristine, tmp_path / "scratch")
    publish_next_version(scratch, "dcgan-tiny")
    shutil.copytree(scratch / "dcgan-tiny.generator/2", served.store / "dcgan-tiny.generator/2")
    card = (scratch / "dcgan-tiny.v2.json").read_text()
    with Traffic(served.url) as traffic:
        with half_written(served.store / "dcgan-tiny.v2.json", card):
            served.said_once(
                "dcgan-tiny v2 did not load, v1 keeps serving: "
                "dcgan-tiny: dcgan-tiny.v2.json is not valid JSON"
            )
            assert served.health()["dcgan-tiny"]["version"] == 1
        wait_until(lambda: served.version("dcgan-tiny") == 2, "the whole card to be loaded")
        # the serving version's own card, rewritten the same way: v2 keeps serving
        with half_written(served.store / "dcgan-tiny.v2.json", card):
            served.said_once(
                "dcgan-tiny v2 keeps serving from memory; in the store: "
                "dcgan-tiny: dcgan-tiny.v2.json is not valid JSON"
            )
            assert served.health()["dcgan-tiny"]["state"] == "ready"
        served.said_once("dcgan-tiny v2: its files in the store match again")
    versions = traffic.versions("dcgan-tiny")
    assert versions == sorted(versions) and set(versions) == {1, 2}
    watch_picks_up_a_new_version(served, "vae-tiny")


def test_a_graph_replaced_in_place(served: Served) -> None:
    mismatch = f"dcgan-tiny: sha256 mismatch for {GRAPH}"
    graph = served.store / GRAPH
    with Traffic(served.url) as traffic:
        good = graph.read_bytes()
        graph.write_bytes(good[: len(good) // 2])  # truncated, in place
        served.said_once(f"dcgan-tiny v1 keeps serving from memory; in the store: {mismatch}")
        # another model's bytes: the sha256 in the message changes, so it is said again
        graph.write_bytes((served.store / "vae-tiny.decoder/1/model.onnx").read_bytes())
        assert len(served.lines(mismatch)) == 1
        wait_until(lambda: len(served.lines(mismatch)) == 2, "the new mismatch to be logged")
        time.sleep(POLLS_S)
        assert len(served.lines(mismatch)) == 2
        dcgan = served.health()["dcgan-tiny"]
        assert dcgan["state"] == "ready" and mismatch in dcgan["reason"]
        # loading it again is refused, saying why; v1 keeps serving
        refused = served.admin("reload", "dcgan-tiny")
        assert refused.status_code == 409
        assert refused.json()["code"] == "model_load_failed"
        assert refused.json()["error"].startswith(
            f"dcgan-tiny v1 did not load, v1 keeps serving: {mismatch}"
        )
        # a version published from those bytes fails its checksum too, tried once by the watch
        publish_next_version(served.store, "dcgan-tiny")
        served.said_once(
            "dcgan-tiny v2 did not load, v1 keeps serving: "
            "dcgan-tiny: sha256 mismatch for dcgan-tiny.generator/2/model.onnx"
        )
    assert set(traffic.versions("dcgan-tiny")) == {1}
    assert served.version("dcgan-tiny") == 1
    watch_picks_up_a_new_version(served, "vae-tiny")


def test_the_store_gone_and_back(served: Served) -> None:
    store, away = served.store, served.store.with_name("store.away")
    with Traffic(served.url) as traffic:
        store.rename(away)
        served.said_once(f"the model store {store} cannot be read (FileNotFoundError)")
        for model in served.health().values():
            assert model["state"] == "ready", model
            assert model["reason"] == (
                f"serving from memory: the model store {store} cannot be read (FileNotFoundError)"
            )
        refused = served.admin("reload", "dcgan-tiny")
        assert refused.status_code == 409, refused.text
        assert refused.json() == {
            "error": "dcgan-tiny did not load, v1 keeps serving: "
            "the model store cannot be read (FileNotFoundError)",
            "code": "model_load_failed",
        }
        # a file where the folder was: another reason, said once too
        store.write_text("not a folder")
        served.said_once(f"the model store {store} cannot be read (NotADirectoryError)")
        store.unlink()
        away.rename(store)
        served.said_once(f"the model store {store} can be read again")
    assert set(traffic.versions("dcgan-tiny")) == {1}
    assert all("reason" not in model for model in served.health().values())
    watch_picks_up_a_new_version(served, "dcgan-tiny")
