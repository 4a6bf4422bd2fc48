"""Model control: the admin routes and their token, load/unload/reload, the store watch."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from harness.store_faults import CORRUPTIONS, newest_card, publish_next_version
from service.api.app import create_app
from service.config import Settings
from service.errors import ModelLoadFailed, ModelNotFound
from service.generation.operations import Operations
from service.generation.specs import SampleSpec
from service.registry.control import Action
from service.registry.registry import ModelState
from tests.conftest import load_control, tiny_settings
from tests.support.tiny_store import copy_model

TOKEN = "a-test-admin-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store(tmp_path: Path, tiny_store: Path) -> Path:
    return Path(shutil.copytree(tiny_store, tmp_path / "store"))


@pytest.fixture
def admin(store: Path) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_settings(store, admin_token=TOKEN))) as client:
        yield client


def _sample_version(client: TestClient, model: str) -> int:
    response = client.post("/sample", json={"model": model, "seed": 1})
    assert response.status_code == 200, response.text
    version: int = response.json()["version"]
    return version


def test_admin_routes_are_off_without_a_token(tiny_store: Path) -> None:
    with TestClient(create_app(tiny_settings(tiny_store))) as client:
        response = client.post("/admin/models/dcgan-tiny/reload", headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {
        "error": "admin endpoints are off: set SERVICE_ADMIN_TOKEN to turn them on",
        "code": "admin_disabled",
    }


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["none", "wrong", "not-bearer"],
)
def test_admin_needs_the_bearer_token(admin: TestClient, headers: dict[str, str]) -> None:
    response = admin.post("/admin/models/dcgan-tiny/reload", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthorized"
    assert _sample_version(admin, "dcgan-tiny") == 1


def test_admin_token_must_be_long_and_empty_means_off(tiny_store: Path) -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(model_store=tiny_store, admin_token="short")
    assert Settings(model_store=tiny_store, admin_token="").admin_token is None
    assert TOKEN not in repr(Settings(model_store=tiny_store, admin_token=TOKEN))


def test_reload_swaps_in_the_new_version_everywhere(admin: TestClient, store: Path) -> None:
    assert publish_next_version(store, "dcgan-tiny") == 2
    response = admin.post("/admin/models/dcgan-tiny/reload", headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 2 and body["previous_version"] == 1 and body["changed"]
    assert body["state"] == "ready" and body["action"] == "reload"
    assert _sample_version(admin, "dcgan-tiny") == 2
    assert admin.get("/health/ready").json()["models"]["dcgan-tiny"]["version"] == 2
    metrics = admin.get("/metrics").text
    assert 'genserve_model_ready{model="dcgan-tiny",version="2"} 1.0' in metrics
    assert 'genserve_model_ready{model="dcgan-tiny",version="1"}' not in metrics


def test_load_is_idempotent_and_reload_is_not(admin: TestClient) -> None:
    first = admin.post("/admin/models/vae-tiny/load", headers=AUTH).json()
    assert first["changed"] is False and first["version"] == 1
    again = admin.post("/admin/models/vae-tiny/reload", headers=AUTH).json()
    assert again["changed"] is True and again["version"] == again["previous_version"] == 1


@pytest.mark.parametrize("corruption", ["checksum mismatch", "truncated graph", "card not JSON"])
def test_a_new_version_that_fails_to_load_leaves_the_old_one_serving(
    admin: TestClient, store: Path, corruption: str
) -> None:
    publish_next_version(store, "dcgan-tiny")
    CORRUPTIONS[corruption](store, "dcgan-tiny")
    response = admin.post("/admin/models/dcgan-tiny/reload", headers=AUTH)
    assert response.status_code == 409
    assert response.json()["code"] == "model_load_failed"
    assert response.json()["error"].startswith("dcgan-tiny")
    assert "v1 keeps serving" in response.json()["error"]
    assert _sample_version(admin, "dcgan-tiny") == 1
    assert admin.get("/health/ready").status_code == 200


def test_unload_then_load(admin: TestClient) -> None:
    response = admin.post("/admin/models/dcgan-tiny/unload", headers=AUTH)
    assert response.status_code == 200 and response.json()["state"] == "unloaded"
    refused = admin.post("/sample", json={"model": "dcgan-tiny"})
    assert refused.status_code == 503 and refused.json() == {
        "error": "model 'dcgan-tiny' is not ready: unloaded by an admin",
        "code": "model_not_ready",
    }
    ready = admin.get("/health/ready")
    assert ready.status_code == 200  # an operator's choice, not a fault
    assert ready.json()["models"]["dcgan-tiny"]["state"] == "unloaded"
    assert 'model="dcgan-tiny"' not in admin.get("/metrics").text.split("genserve_model_ready")[1]
    again = admin.post("/admin/models/dcgan-tiny/unload", headers=AUTH).json()
    assert again["changed"] is False

    loaded = admin.post("/admin/models/dcgan-tiny/load", headers=AUTH)
    assert loaded.status_code == 200 and loaded.json()["changed"] is True
    assert _sample_version(admin, "dcgan-tiny") == 1
    assert 'genserve_model_ready{model="dcgan-tiny",version="1"} 1.0' in admin.get("/metrics").text


def test_unloading_every_model_makes_the_service_not_ready(admin: TestClient) -> None:
    for name in ("dcgan-tiny", "pixelcnn-tiny", "vae-tiny"):
        assert admin.post(f"/admin/models/{name}/unload", headers=AUTH).status_code == 200
    ready = admin.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["error"] == (
        "no model serves: unloaded by an admin: dcgan-tiny, pixelcnn-tiny, vae-tiny"
    )


def test_load_adds_a_model_copied_into_the_store(
    admin: TestClient, store: Path, tiny_store_with_ae: Path
) -> None:
    assert admin.get("/models/ae-tiny").status_code == 404
    copy_model(tiny_store_with_ae, "ae-tiny", store)
    response = admin.post("/admin/models/ae-tiny/load", headers=AUTH)
    assert response.status_code == 200 and response.json()["previous_version"] is None
    assert admin.get("/models/ae-tiny").json()["state"] == "ready"


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("nope", 404, "model_not_found"),
        ("vae-tiny.encoder", 422, "validation_error"),
        ("..", 404, "not_found"),
        ("%2e%2e%2fetc%2fpasswd", 404, "not_found"),
        ("vae-tiny%2F..%2F..", 404, "not_found"),
        ("vae-tiny%00", 422, "validation_error"),
    ],
)
def test_admin_names_are_looked_up_never_used_as_paths(
    admin: TestClient, name: str, status: int, code: str
) -> None:
    response = admin.post(f"/admin/models/{name}/reload", headers=AUTH)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def test_a_request_holding_the_old_version_still_runs_after_the_swap(store: Path) -> None:
    """A request that took the model just before a reload finishes on it (its batchers are
    retired, not closed), and the old version is what it reports."""
    control = load_control(tiny_settings(store))
    registry = control.registry
    publish_next_version(store, "dcgan-tiny")

    async def scenario() -> tuple[np.ndarray, np.ndarray, int | None, int | None]:
        old = registry.get("dcgan-tiny")
        before = (await Operations().sample(old, SampleSpec(2, 7))).payload
        change = await control.apply("dcgan-tiny", Action.RELOAD)
        after = (await Operations().sample(old, SampleSpec(2, 7))).payload
        return before, after, old.version, change.current.version

    before, after, old_version, new_version = asyncio.run(scenario())
    np.testing.assert_array_equal(before, after)
    assert (old_version, new_version) == (1, 2)
    assert registry.get("dcgan-tiny").version == 2


def test_watch_loads_new_versions_and_new_models_and_leaves_unloaded_ones(
    store: Path, tiny_store_with_ae: Path
) -> None:
    control = load_control(tiny_settings(store))
    registry = control.registry

    async def scenario() -> list[list[tuple[str, int | None]]]:
        seen = [[(c.name, c.current.version) for c in await control.poll()]]
        await control.unload("vae-tiny")
        publish_next_version(store, "dcgan-tiny")
        publish_next_version(store, "vae-tiny")
        copy_model(tiny_store_with_ae, "ae-tiny", store)
        seen.append([(c.name, c.current.version) for c in await control.poll()])
        seen.append([(c.name, c.current.version) for c in await control.poll()])
        return seen

    nothing, news, nothing_again = asyncio.run(scenario())
    assert nothing == [] and nothing_again == []
    assert news == [("ae-tiny", 1), ("dcgan-tiny", 2)]
    assert registry.get("vae-tiny").state is ModelState.UNLOADED


def test_watch_tries_a_broken_version_once_until_its_files_change(store: Path) -> None:
    control = load_control(tiny_settings(store))
    registry = control.registry
    publish_next_version(store, "dcgan-tiny")
    card = newest_card(store, "dcgan-tiny")
    good = card.read_bytes()
    card.write_text("{broken")

    async def scenario() -> tuple[int, int, int]:
        tried = len(await control.poll())  # fails: logged, v1 keeps serving
        again = len(await control.poll())  # same files: not tried again
        card.write_bytes(good)
        fixed = len(await control.poll())
        return tried, again, fixed

    assert asyncio.run(scenario()) == (0, 0, 1)
    assert registry.get("dcgan-tiny").version == 2


def test_control_refuses_names_outside_the_store(store: Path) -> None:
    control = load_control(tiny_settings(store))
    with pytest.raises(ModelNotFound, match="is not in the store"):
        asyncio.run(control.apply("../vae-tiny", Action.LOAD))
    (store / "dcgan-tiny.v1.json").write_text(json.dumps({"name": "dcgan-tiny"}))
    with pytest.raises(ModelLoadFailed, match="v1 keeps serving"):
        asyncio.run(control.apply("dcgan-tiny", Action.RELOAD))


def test_the_service_watches_the_store_when_asked(store: Path) -> None:
    settings = tiny_settings(store, watch_interval_s=0.1)
    with TestClient(create_app(settings)) as client:
        publish_next_version(store, "dcgan-tiny")
        deadline = time.monotonic() + 10
        while client.get("/models/dcgan-tiny").json()["version"] != 2:
            assert time.monotonic() < deadline, "the new version was not picked up"
            time.sleep(0.05)
        assert _sample_version(client, "dcgan-tiny") == 2
