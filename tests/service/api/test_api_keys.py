"""API keys for the public API: off by default; with keys on, every operation needs one (401
otherwise, in the usual error shape), health and the page stay open, /metrics too unless
closed, each key is counted by its name, and a key past its rate gets 429 + Retry-After."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from harness.live_server import running_service
from service.api.app import create_app
from service.config import Settings
from tests.conftest import tiny_settings

APP1, APP2 = "k" * 20, "s3cret-" * 4
KEYS = f"app1:{APP1},app2:{APP2}"
BEARER = {"Authorization": f"Bearer {APP1}"}
SAMPLE = {"model": "dcgan-tiny", "n": 1, "seed": 1}


@pytest.fixture(scope="module")
def keyed(tiny_store_with_ae: Path) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_settings(tiny_store_with_ae, api_keys=KEYS))) as client:
        yield client


def test_keys_are_off_by_default(client: TestClient) -> None:
    assert client.post("/sample", json=SAMPLE).status_code == 200


def test_a_missing_or_wrong_key_is_refused_in_the_usual_shape(keyed: TestClient) -> None:
    missing = keyed.post("/sample", json=SAMPLE)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {
        "error": "this API needs a key: send 'Authorization: Bearer <key>'",
        "code": "unauthorized",
    }
    for header in (f"Bearer {APP1}x", "Bearer ", f"Basic {APP1}", APP1):
        wrong = keyed.post("/sample", json=SAMPLE, headers={"Authorization": header})
        assert wrong.status_code == 401 and wrong.json()["code"] == "unauthorized", header
    v2 = keyed.get("/v2/models/dcgan-tiny.generator")
    assert v2.status_code == 401 and set(v2.json()) == {"error"}


def test_a_right_key_passes_whichever_key_it_is(keyed: TestClient) -> None:
    assert keyed.post("/sample", json=SAMPLE, headers=BEARER).status_code == 200
    other = {"Authorization": f"bearer {APP2}"}
    assert keyed.post("/sample", json=SAMPLE, headers=other).status_code == 200


def test_every_operation_refuses_a_call_without_a_key(keyed: TestClient) -> None:
    schema = keyed.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["APIKey"]["scheme"] == "bearer"
    operations = [
        (method, path)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if operation.get("security") == [{"APIKey": []}]
    ]
    assert {"/sample", "/encode", "/score", "/models", "/v2/models/{model_name}/infer"} <= {
        path for _, path in operations
    }
    for method, path in operations:
        url = path.replace("{model_name}", "dcgan-tiny.generator").replace("{name}", "vae-tiny")
        url = url.replace("{model_version}", "1")
        response = keyed.request(method.upper(), url, json={})
        assert response.status_code == 401, (method, path, response.status_code)
        documented = schema["paths"][path][method]["responses"]["401"]["content"]
        shape = "ErrorObject" if path.startswith("/v2") else "ErrorResponse"
        assert documented["application/json"]["schema"]["$ref"].endswith(f"/{shape}"), path
        assert "429" not in schema["paths"][path][method]["responses"]  # no rate set


def test_health_the_page_the_docs_and_metrics_stay_open(keyed: TestClient) -> None:
    for path in ("/health/live", "/health/ready", "/v2/health/ready", "/ui/", "/docs", "/metrics"):
        assert keyed.get(path).status_code == 200, path


def test_metrics_count_each_key_by_name_never_by_key(keyed: TestClient) -> None:
    keyed.post("/sample", json=SAMPLE, headers=BEARER)
    keyed.post("/sample", json=SAMPLE)
    text = keyed.get("/metrics").text
    assert 'genserve_api_key_requests_total{key="app1"}' in text
    assert 'genserve_auth_refusals_total{reason="unauthorized"}' in text
    assert APP1 not in text and APP2 not in text


def test_metrics_can_be_closed_too(tiny_store: Path) -> None:
    settings = tiny_settings(tiny_store, api_keys=KEYS, metrics_need_key=True)
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=BEARER).status_code == 200
        assert client.get("/health/ready").status_code == 200


def test_keys_come_from_a_file_too(tmp_path: Path, tiny_store: Path) -> None:
    secret = tmp_path / "keys"
    secret.write_text(f"# mounted from a Secret\nfile-app:{'f' * 24}\n\n")
    settings = tiny_settings(tiny_store, api_keys=f"app1:{APP1}", api_keys_file=secret)
    assert settings.api_key_table() == {"app1": APP1, "file-app": "f" * 24}
    with TestClient(create_app(settings)) as client:
        ok = client.post(
            "/sample", json={"model": "dcgan-tiny"}, headers={"Authorization": f"Bearer {'f' * 24}"}
        )
        assert ok.status_code == 200


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ("app1:short", "at least 16 characters"),
        (f"app1:{APP1},app1:{APP2}", "must each be unique"),
        (f"app1:{APP1},app2:{APP1}", "must each be unique"),
        (APP1, "each is name:key"),
        (f"bad name:{APP1}", "each is name:key"),
    ],
)
def test_malformed_keys_stop_the_service_before_it_starts(
    tiny_store: Path, keys: str, problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(model_store=tiny_store, api_keys=keys)


def test_a_key_past_its_rate_waits_and_a_real_server_says_how_long(tiny_store: Path) -> None:
    settings = {"SERVICE_DEVICE": "cpu", "SERVICE_API_KEYS": KEYS, "SERVICE_API_KEY_RATE": "2",
                "SERVICE_API_KEY_BURST": "3"}  # fmt: skip
    with running_service(tiny_store, **settings) as url:
        assert httpx.post(f"{url}/sample", json=SAMPLE).status_code == 401
        answers = [httpx.post(f"{url}/sample", json=SAMPLE, headers=BEARER) for _ in range(6)]
        codes = [a.status_code for a in answers]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
        limited = next(a for a in answers if a.status_code == 429)
        assert limited.json()["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
        other = {"Authorization": f"Bearer {APP2}"}  # each key has its own bucket
        assert httpx.post(f"{url}/sample", json=SAMPLE, headers=other).status_code == 200
        assert httpx.get(f"{url}/health/ready").status_code == 200
