"""The OpenAPI schema is the API's contract: a change to it is a change to the API. After an
intended change, write the snapshot again with

    .venv/bin/python -c "import json; from service.api.app import create_app; \\
      print(json.dumps(create_app().openapi(), indent=1, sort_keys=True))" \\
      > tests/support/openapi.json
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

SNAPSHOT = Path(__file__).resolve().parents[2] / "support" / "openapi.json"


def test_the_openapi_schema_is_the_snapshot(client: TestClient) -> None:
    served = client.get("/openapi.json").json()
    assert served == json.loads(SNAPSHOT.read_text())
