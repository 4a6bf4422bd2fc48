"""The ``genserve`` command as a user runs it: a subprocess with only the environment given."""

from __future__ import annotations

import os
import subprocess
import sys

from harness.live_server import REPO


def run_genserve(
    url: str | None, *args: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m genserve ARGS`` against ``url`` (GENSERVE_URL) with ``key``
    (GENSERVE_API_KEY); no other GENSERVE_ setting of this process reaches it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENSERVE_")}
    if url is not None:
        env["GENSERVE_URL"] = url
    if key is not None:
        env["GENSERVE_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "genserve", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
    )
