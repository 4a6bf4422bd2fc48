"""Real processes on loopback for the tests: waiting until a URL answers 200 (failing the test
otherwise), and ``python -m service`` on 127.0.0.1 as a context manager."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest

from harness.live_service import free_port

REPO = Path(__file__).resolve().parents[1]


def wait_for(
    url: str,
    process: subprocess.Popen[str],
    log: IO[str],
    seconds: float,
    first_answer_is_final: bool = False,
) -> None:
    """Until ``url`` answers 200. A worker loads its store before it accepts a connection, so
    once every worker has started a 503 is final (``first_answer_is_final``): it stays."""
    name = Path(str(process.args[0])).name if isinstance(process.args, list) else "process"
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"{name} exited: {log.read()[-3000:]}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return
            starting = "workers have started" in response.text
            if first_answer_is_final and not starting:
                pytest.fail(f"{url} answered {response.status_code}: {response.text}")
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            log.seek(0)
            pytest.fail(f"{url} not ready within {seconds} s: {log.read()[-3000:]}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_service(store: Path, **settings: str) -> Iterator[str]:
    """``python -m service`` on 127.0.0.1 serving ``store``, ready; yields its base URL.
    ``settings`` are extra environment variables (``SERVICE_DEVICE="cpu"``)."""
    with service_process(store, **settings) as (url, _):
        yield url


@contextmanager
def service_process(
    store: Path, log_level: str = "warning", log_file: Path | None = None, **settings: str
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``running_service``, yielding the process as well as the URL. ``log_file``: where its
    log goes, to be read while it runs (a temporary file by default)."""
    port = free_port()
    env = {**os.environ, "SERVICE_MODEL_STORE": str(store), **settings}
    command = [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)]
    opened = log_file.open("w+") if log_file is not None else tempfile.TemporaryFile(mode="w+")
    with opened as log:
        process = subprocess.Popen(
            [*command, "--log-level", log_level],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for(f"{url}/health/ready", process, log, 120, first_answer_is_final=True)
            yield url, process
        finally:
            stop(process)
