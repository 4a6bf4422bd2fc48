"""Readiness, failed models, settings and the provider probe."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from modelstore.errors import StoreError
from service.api.app import create_app
from service.config import Settings
from service.errors import DeviceUnavailable
from service.runtime.sessions import CPU, CUDA, choose_providers
from tests.conftest import tiny_settings
from tests.support.tiny_store import copy_model


@pytest.mark.parametrize("readiness", ["strict", "any"])
def test_checksum_mismatch_marks_model_failed_and_others_serve(
    tmp_path: Path, tiny_store: Path, readiness: str
) -> None:
    """``strict``: the service is not ready while a model failed. ``any`` (the default): it
    is, the failed model showing as failed."""
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    with (store / "vae-tiny.encoder" / "1" / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with TestClient(create_app(tiny_settings(store, readiness=readiness))) as client:
        ready = client.get("/health/ready")
        body = ready.json()
        if readiness == "strict":
            assert ready.status_code == 503
            assert body["ready"] is False and body["code"] == "not_ready"
            mismatch = "vae-tiny (vae-tiny: sha256 mismatch for vae-tiny.encoder/1/model.onnx"
            assert mismatch in body["error"]
        else:
            assert ready.status_code == 200 and body["ready"] is True and "error" not in body
        assert body["models"]["vae-tiny"]["state"] == "failed"
        assert "sha256 mismatch" in body["models"]["vae-tiny"]["reason"]
        assert body["models"]["dcgan-tiny"]["state"] == "ready"

        refused = client.post("/sample", json={"model": "vae-tiny"})
        assert refused.status_code == 503 and refused.json()["code"] == "model_not_ready"
        assert "sha256 mismatch" in refused.json()["error"]
        assert client.post("/sample", json={"model": "dcgan-tiny"}).status_code == 200
        assert client.get("/models/vae-tiny").json()["state"] == "failed"
        metrics = client.get("/metrics").text
        assert 'genserve_model_ready{model="vae-tiny",version="1"} 0.0' in metrics


def test_unloadable_graph_marks_model_failed(tmp_path: Path, tiny_store: Path) -> None:
    store = tmp_path / "store"
    copy_model(tiny_store, "dcgan-tiny", store)
    graph = "dcgan-tiny.generator/1/model.onnx"
    (store / graph).write_bytes(b"not onnx")
    card = json.loads((store / "dcgan-tiny.v1.json").read_text())
    digest = hashlib.sha256(b"not onnx").hexdigest()
    card["files"][graph] = {"sha256": digest, "bytes": 8}
    (store / "dcgan-tiny.v1.json").write_text(json.dumps(card))
    with TestClient(create_app(tiny_settings(store))) as client:
        body = client.get("/health/ready").json()
    assert body["models"]["dcgan-tiny"]["reason"] == (
        "dcgan-tiny: onnxruntime could not load dcgan-tiny.generator/1/model.onnx"
    )


def test_unserved_family_is_listed_but_does_not_block_readiness(
    tmp_path: Path, tiny_store: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    (store / "classifier-tiny.v1.json").write_text(
        (store / "dcgan-tiny.v1.json")
        .read_text()
        .replace('"dcgan-tiny"', '"classifier-tiny"')
        .replace('"dcgan"', '"classifier"')
    )
    with TestClient(create_app(tiny_settings(store))) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        assert ready.json()["models"]["classifier-tiny"] == {
            "state": "unsupported",
            "version": 1,
            "reason": "family 'classifier' is not served by this service",
        }
        refused = client.post("/sample", json={"model": "classifier-tiny"})
        assert refused.status_code == 422 and refused.json()["error"] == (
            "model 'classifier-tiny' (family classifier) cannot sample: family 'classifier' is "
            "not served by this service; models that can: dcgan-tiny, pixelcnn-tiny, vae-tiny"
        )
        # Not served, so not "not ready" either: no model_ready series to trip the alert.
        metrics = client.get("/metrics").text
        assert 'genserve_model_ready{model="classifier-tiny"' not in metrics
        assert 'genserve_model_ready{model="dcgan-tiny",version="1"} 1.0' in metrics


def test_empty_store_is_not_ready(tmp_path: Path) -> None:
    with TestClient(create_app(tiny_settings(tmp_path))) as client:
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert response.json()["error"] == ("the model store holds no model this service can serve")
        assert client.get("/health/live").status_code == 200
        refused = client.post("/sample", json={})
        assert refused.status_code == 422 and refused.json()["error"] == (
            "no ready model supports sample"
        )


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tiny_store: Path) -> None:
    monkeypatch.setenv("SERVICE_MODEL_STORE", str(tiny_store))
    monkeypatch.setenv("SERVICE_DEVICE", "cpu")
    monkeypatch.setenv("SERVICE_MAX_N", "8")
    monkeypatch.setenv("SERVICE_DEFAULT_SAMPLE_MODEL", "vae-tiny")
    settings = Settings()
    assert settings.model_store == tiny_store.resolve() and settings.max_n == 8
    assert settings.default_model("sample") == "vae-tiny"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SERVICE_MODEL_STORE": "/does/not/exist"}, "is not a folder"),
        ({"SERVICE_DEVICE": "tpu"}, "Input should be 'auto', 'cpu' or 'cuda'"),
        ({"SERVICE_INTRA_OP_THREADS": "-1"}, "greater than or equal to 0"),
        ({"SERVICE_MAX_N": "0"}, "greater than or equal to 1"),
        ({"SERVICE_MAX_BODY_BYTES": "10"}, "greater than or equal to 1024"),
        ({"SERVICE_QUEUE_POLICY": "lifo"}, "Input should be 'classes' or 'arrival'"),
        ({"SERVICE_BULK_SHARE": "0"}, "greater than 0"),
        ({"SERVICE_BULK_CHUNK_IMAGES": "65"}, "must be at most batch_max_size"),
        ({"SERVICE_INTERACTIVE_WINDOW_MS": "-1"}, "greater than or equal to 0"),
        ({"SERVICE_API_KEY_CLASSES": "app1:bulk"}, "'app1' is not the name of an API key"),
        (
            {"SERVICE_API_KEYS": "app1:" + "k" * 16, "SERVICE_API_KEY_CLASSES": "app1:fast"},
            "'app1' has class 'fast'; choose interactive or bulk",
        ),
    ],
)
def test_settings_fail_fast(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_provider_probe_cpu() -> None:
    assert choose_providers("cpu") == [CPU]


def test_provider_probe_auto_matches_what_ort_can_do() -> None:
    providers = choose_providers("auto")
    assert providers[-1] == CPU
    if CUDA not in ort.get_available_providers():
        assert providers == [CPU]


def test_provider_probe_cuda_refused_without_cuda() -> None:
    if choose_providers("auto")[0] == CUDA:
        pytest.skip("CUDA works on this machine")
    with pytest.raises(DeviceUnavailable, match="SERVICE_DEVICE=cuda"):
        choose_providers("cuda")


def test_readme_configuration_table_lists_every_setting() -> None:
    docs = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    for field in Settings.model_fields:
        assert f"`SERVICE_{field.upper()}`" in docs, field


def test_invalid_setting_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "SERVICE_MODEL_STORE": str(tmp_path / "absent"), "SERVICE_MAX_N": "0"}
    run = subprocess.run(
        [sys.executable, "-m", "service", "--port", "1"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    assert "invalid setting SERVICE_MODEL_STORE" in run.stderr and "is not a folder" in run.stderr
    assert "invalid setting SERVICE_MAX_N" in run.stderr and "Traceback" not in run.stderr


def test_model_whose_card_cannot_be_read_is_503_not_422(tmp_path: Path, tiny_store: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    (store / "vae-tiny.v1.json").write_text("{not json")
    with TestClient(create_app(tiny_settings(store))) as client:
        refused = client.post("/sample", json={"model": "vae-tiny"})
        assert refused.status_code == 503 and refused.json()["code"] == "model_not_ready"
        assert client.post("/sample", json={"model": "dcgan-tiny"}).status_code == 200


def test_default_model_missing_from_the_store_stops_start_up(tiny_store: Path) -> None:
    settings = tiny_settings(tiny_store, default_sample_model="vae-tyni")
    with (
        pytest.raises(StoreError, match="SERVICE_DEFAULT_SAMPLE_MODEL='vae-tyni' is not in"),
        TestClient(create_app(settings)),
    ):
        pass


def test_pixelcnn_card_without_the_mixture_likelihood_is_refused(
    tmp_path: Path, tiny_store: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    card_path = store / "pixelcnn-tiny.v1.json"
    card = json.loads(card_path.read_text())
    card["likelihood"] = {"kind": "discretized_logistic", "components": 1}
    card_path.write_text(json.dumps(card))
    with TestClient(create_app(tiny_settings(store))) as client:
        model = client.get("/models/pixelcnn-tiny").json()
        assert model["state"] == "failed"
        assert "needs likelihood.kind 'discretized_logistic_mixture'" in model["reason"]
