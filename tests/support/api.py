"""Calling the API in tests."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


def ok(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` and return the JSON of what must be a 200."""
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


BadCase = tuple[str, str, Any, int, str, str]
"""A refused request: (test id, path, body, status, code, what the message holds)."""


def bad_cases(cases: list[BadCase]) -> pytest.MarkDecorator:
    """Parametrize a test over refused requests, each case's first item its id."""
    return pytest.mark.parametrize(
        ("path", "body", "status", "code", "message"),
        [case[1:] for case in cases],
        ids=[case[0] for case in cases],
    )
