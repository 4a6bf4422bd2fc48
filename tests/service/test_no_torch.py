"""The service never imports torch, even with torch installed in the same environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from fastapi.testclient import TestClient
from service.api.app import create_app
from service.config import Settings

app = create_app(Settings(model_store=sys.argv[1], device="auto"))
with TestClient(app) as client:
    assert client.get("/health/ready").status_code == 200
    assert client.post("/sample", json={"model": "vae-tiny", "n": 2}).status_code == 200
    assert client.post("/sample", json={"model": "pixelcnn-tiny"}).status_code == 200
    zeros = [[0.0] * 28] * 28
    assert client.post("/reconstruct", json={"images": [zeros]}).status_code == 200
    body = {"start": {"seed": 1}, "end": {"seed": 2}}
    assert client.post("/interpolate", json=body).status_code == 200
    assert client.get("/metrics").status_code == 200
assert "torch" not in sys.modules, "torch was imported"
print("no torch")
"""


def test_service_never_imports_torch(tiny_store: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_store)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no torch" in result.stdout


def test_importing_main_parses_no_arguments() -> None:
    code = "import sys; sys.argv = ['x', '--bogus']; import service.__main__; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
