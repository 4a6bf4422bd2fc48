"""Calling the API in tests."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient


def ok(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` and return the JSON of what must be a 200."""
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result
