"""The ``genserve`` command, run as ``python -m genserve`` against a real service with API keys
on: every command's lines, files and ``--json``, its exit codes, one-line errors, and
``genserve serve`` starting the service as ``python -m service`` does."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from genserve.cli import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, progress
from harness.live_server import REPO, free_port, running_service, stop, wait_for
from tests.support.cli import run_genserve

KEY = "cli-test-key-0123456789"
Run = Callable[..., subprocess.CompletedProcess[str]]


def _run(url: str | None, *args: str, key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    return run_genserve(url, *args, key=key)


@pytest.fixture(scope="module")
def url(tiny_store_all: Path) -> Iterator[str]:
    with running_service(tiny_store_all, SERVICE_DEVICE="cpu", SERVICE_API_KEYS=f"a:{KEY}") as u:
        yield u


@pytest.fixture(scope="module")
def genserve(url: str) -> Run:
    """``genserve ARGS`` with GENSERVE_URL and GENSERVE_API_KEY set for the test service."""
    return lambda *args, **kw: _run(url, *args, **kw)


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three 28x28 grayscale PNG files."""
    rng = np.random.default_rng(1)
    folder = tmp_path_factory.mktemp("items")
    paths = [folder / f"item{i}.png" for i in range(3)]
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(path)
    return paths


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # no spinner, no warning: stderr is not a TTY
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], status: int) -> str:
    """The one line of a failed command."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def written(stdout: str, path: Path) -> tuple[int, int]:
    """The size the "wrote" line gives, checked against the file Pillow opens."""
    line = next(line for line in stdout.splitlines() if line.startswith("wrote "))
    found = re.fullmatch(rf"wrote {re.escape(str(path))} \((\d+)x(\d+) px, ([\d,]+) bytes\)", line)
    assert found, line
    assert int(found.group(3).replace(",", "")) == path.stat().st_size
    with Image.open(path) as image:
        assert image.mode == "L"
        assert image.size == (int(found.group(1)), int(found.group(2)))
        return image.size


# ---------------------------------------------------------------- the store and health


def test_models_prints_a_table_and_json_the_response(genserve: Run, url: str) -> None:
    lines = ok(genserve("models")).splitlines()
    assert lines[0].split() == ["NAME", "STATE", "FAMILY", "VERSION", "PROVIDER", "OPERATIONS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {
        "ae-tiny",
        "cvae-tiny",
        "dcgan-tiny",
        "pixelcnn-tiny",
        "pixelrnn-tiny",
        "vae-tiny",
    }
    assert rows["dcgan-tiny"][1:4] == ["ready", "dcgan", "1"]
    assert rows["dcgan-tiny"][-1] == "interpolate,sample"
    raw = httpx.get(url + "/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert json.loads(ok(genserve("models", "--json"))) == raw
    assert json.loads(ok(genserve("--json", "models"))) == raw  # options before the command too


def test_model_describes_one(genserve: Run) -> None:
    out = ok(genserve("model", "cvae-tiny"))
    assert "family:      cvae" in out and "conditional: yes" in out
    assert "image shape: 1x28x28" in out and "sneaker" in out
    assert json.loads(ok(genserve("model", "vae-tiny", "--json")))["latent_dim"] == 8


def test_health_says_live_and_ready(genserve: Run) -> None:
    lines = ok(genserve("health", key=None)).splitlines()  # health needs no key
    assert lines[:2] == ["live:  yes", "ready: yes"]
    assert any(line.split()[:2] == ["vae-tiny", "ready"] for line in lines[2:])
    assert json.loads(ok(genserve("health", "--json")))["ready"] is True


# ---------------------------------------------------------------- generation


def test_sample_writes_the_grid_the_service_draws(genserve: Run, url: str, tmp_path: Path) -> None:
    grid = tmp_path / "grid.png"
    out = ok(
        genserve(
            "sample", "dcgan-tiny", "-n", "16", "--seed", "42", "-o", str(grid), "--scale", "2"
        )
    )
    assert out.splitlines()[0] == "dcgan-tiny v1: 16 images 28x28, seed 42"
    assert written(out, grid) == ((4 * 30 - 2) * 2,) * 2
    body = {"model": "dcgan-tiny", "n": 16, "seed": 42, "scale": 2}
    headers = {"Accept": "image/png", "Authorization": f"Bearer {KEY}"}
    png = httpx.post(url + "/sample", json=body, headers=headers).content
    with Image.open(grid) as mine, Image.open(io.BytesIO(png)) as theirs:
        assert np.array_equal(np.asarray(mine), np.asarray(theirs))


def test_sample_options_and_labels(genserve: Run, tmp_path: Path) -> None:
    wide = tmp_path / "wide.png"
    out = ok(
        genserve(
            "sample",
            "cvae-tiny",
            "-n",
            "16",
            "--label",
            "sneaker",
            "--columns",
            "8",
            "-o",
            str(wide),
        )
    )
    assert "labels: " + ", ".join(["sneaker"] * 16) in out
    assert written(out, wide) == (8 * 30 - 2, 2 * 30 - 2)
    by_index = ok(genserve("sample", "cvae-tiny", "--label", "7", "--seed", "1"))
    assert "labels: sneaker" in by_index
    assert "seed 3" in ok(
        genserve("sample", "pixelcnn-tiny", "--temperature", "0.9", "--seed", "3")
    )
    assert "seed 3" in ok(genserve("sample", "dcgan-tiny", "--truncation", "0.5", "--seed", "3"))


def test_json_prints_the_response_and_the_file_line_goes_to_stderr(
    genserve: Run, tmp_path: Path
) -> None:
    grid = tmp_path / "grid.png"
    result = genserve("sample", "vae-tiny", "-n", "4", "--seed", "5", "--json", "-o", str(grid))
    assert result.returncode == 0
    body = json.loads(result.stdout)
    assert (body["model"], body["seed"], body["shape"], len(body["images"])) == (
        "vae-tiny",
        5,
        [4, 1, 28, 28],
        4,
    )
    assert Image.open(io.BytesIO(base64.b64decode(body["images"][0]))).size == (28, 28)
    assert written(result.stderr, grid) == (58, 58)


def test_encode_prints_each_images_latent(genserve: Run, items: list[Path]) -> None:
    lines = ok(genserve("encode", "vae-tiny", *map(str, items[:2]))).splitlines()
    assert lines[0] == "vae-tiny v1: mean of each image"
    for line, path in zip(lines[1:], items, strict=False):
        name, _, vector = line.partition(": ")
        assert name == str(path) and len(json.loads(vector)) == 8
    assert "z of each image" in ok(genserve("encode", "ae-tiny", str(items[0])))
    labelled = json.loads(
        ok(genserve("encode", "cvae-tiny", str(items[0]), "--label", "bag", "--json"))
    )
    assert len(labelled["mean"]) == 1 and len(labelled["log_var"][0]) == 8


def test_reconstruct_prints_errors_and_writes_the_reconstructions(
    genserve: Run, items: list[Path], tmp_path: Path
) -> None:
    out_png = tmp_path / "out.png"
    out = ok(genserve("reconstruct", "vae-tiny", *map(str, items), "-o", str(out_png)))
    errors = [float(line.rpartition(": ")[2]) for line in out.splitlines()[1:4]]
    assert len(errors) == 3 and all(0 < e < 1 for e in errors)
    assert written(out, out_png) == (58, 58)


def test_interpolate_between_seeds_and_images(
    genserve: Run, items: list[Path], tmp_path: Path
) -> None:
    strip = tmp_path / "strip.png"
    out = ok(
        genserve(
            "interpolate",
            "dcgan-tiny",
            "--start-seed",
            "1",
            "--end-seed",
            "2",
            "--steps",
            "8",
            "-o",
            str(strip),
        )
    )
    assert out.startswith("dcgan-tiny v1: 8 images from seed 1 to seed 2 (lerp)")
    assert written(out, strip) == (8 * 30 - 2, 28)
    images = ok(
        genserve(
            "interpolate",
            "vae-tiny",
            "--start-image",
            str(items[0]),
            "--end-image",
            str(items[1]),
            "--steps",
            "4",
            "--method",
            "slerp",
        )
    )
    assert f"4 images from {items[0]} to {items[1]} (slerp)" in images


def test_score_prints_a_row_per_image(genserve: Run, items: list[Path]) -> None:
    lines = ok(genserve("score", "pixelcnn-tiny", *map(str, items))).splitlines()
    assert lines[0] == "pixelcnn-tiny v1: exact likelihood"
    assert lines[1].split() == ["IMAGE", "BITS/DIM", "LOG-LIKELIHOOD", "PNG", "BITS/DIM", "ANOMALY"]
    assert [line.split()[0] for line in lines[2:]] == list(map(str, items))
    iwae = ok(genserve("score", "vae-tiny", str(items[0]), "--k", "10", "--seed", "3"))
    assert iwae.splitlines()[0] == "vae-tiny v1: IWAE bound, k 10, seed 3"


def test_complete_writes_a_row_per_image(genserve: Run, items: list[Path], tmp_path: Path) -> None:
    out_png = tmp_path / "out.png"
    out = ok(
        genserve(
            "complete",
            "pixelcnn-tiny",
            str(items[0]),
            str(items[1]),
            "--rows",
            "14",
            "--samples",
            "3",
            "--seed",
            "1",
            "-o",
            str(out_png),
        )
    )
    assert out.splitlines()[0] == "pixelcnn-tiny v1: 2 x 3 completions, seeds 1, 2, 3"
    assert written(out, out_png) == (3 * 30 - 2, 2 * 30 - 2)
    with Image.open(out_png) as grid, Image.open(items[0]) as item:
        assert np.array_equal(np.asarray(grid)[:14, :28], np.asarray(item)[:14])  # kept rows
    mask = tmp_path / "mask.png"
    keep_top = np.zeros((28, 28), np.uint8)
    keep_top[:10] = 255
    Image.fromarray(keep_top).save(mask)
    masked = ok(genserve("complete", "pixelrnn-tiny", str(items[2]), "--mask", str(mask)))
    assert masked.startswith("pixelrnn-tiny v1: 1 x 1 completions")


def test_traverse_writes_a_strip(genserve: Run, items: list[Path], tmp_path: Path) -> None:
    strip = tmp_path / "strip.png"
    out = ok(
        genserve(
            "traverse", "vae-tiny", "--dim", "3", "--seed", "7", "--steps", "9", "-o", str(strip)
        )
    )
    assert out.startswith("vae-tiny v1: dim 3 from -3 to 3 in 9 steps around seed 7")
    assert written(out, strip) == (9 * 30 - 2, 28)
    around = ok(
        genserve(
            "traverse",
            "cvae-tiny",
            "--dim",
            "1",
            "--image",
            str(items[0]),
            "--label",
            "bag",
            "--range",
            "-1",
            "1",
            "--steps",
            "3",
        )
    )
    assert f"dim 1 from -1 to 1 in 3 steps around {items[0]}, class bag" in around


# ---------------------------------------------------------------- errors and exit codes


def test_a_refusal_is_one_line_and_exit_3(genserve: Run, items: list[Path]) -> None:
    missing = refused(genserve("sample", "no-such-model"), EXIT_REFUSED)
    assert missing.startswith("genserve: model_not_found: model 'no-such-model' not found (")
    wrong = refused(genserve("encode", "dcgan-tiny", str(items[0])), EXIT_REFUSED)
    assert wrong.startswith("genserve: unsupported_operation: model 'dcgan-tiny'")
    limit = refused(genserve("sample", "dcgan-tiny", "-n", "1000"), EXIT_REFUSED)
    assert limit == "genserve: limit_exceeded: n: must be <= 64 for model 'dcgan-tiny'"
    knob = refused(genserve("sample", "dcgan-tiny", "--temperature", "0.5"), EXIT_REFUSED)
    assert knob.startswith("genserve: invalid_input: temperature")
    invalid = refused(
        genserve(
            "interpolate", "dcgan-tiny", "--start-seed", "1", "--end-seed", "2", "--steps", "100"
        ),
        EXIT_REFUSED,
    )
    assert invalid.startswith("genserve: validation_error: steps: ")
    deadline = refused(genserve("sample", "dcgan-tiny", "--deadline-ms", "0"), EXIT_REFUSED)
    assert deadline.startswith("genserve: validation_error: timeout_ms: ")  # sent as timeout_ms
    ok(genserve("score", "pixelcnn-tiny", str(items[0]), "--deadline-ms", "60000"))


def test_without_the_key_it_is_unauthorized_and_api_key_sends_one(genserve: Run) -> None:
    line = refused(genserve("models", key=None), EXIT_REFUSED)
    assert (
        line == "genserve: unauthorized: this API needs a key: send 'Authorization: Bearer <key>'"
    )
    assert "dcgan-tiny" in ok(genserve("models", "--api-key", KEY, key=None))
    wrong = refused(genserve("models", "--api-key", "x" * 20), EXIT_REFUSED)
    assert wrong.startswith("genserve: unauthorized: ")


def test_an_unreachable_service_is_exit_4() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    line = refused(_run(None, "--url", nowhere, "--retries", "0", "models"), EXIT_UNREACHABLE)
    assert line.startswith(f"genserve: connection_failed: GET {nowhere}/models: ")
    env_url = refused(_run(nowhere, "health", "--retries", "0"), EXIT_UNREACHABLE)
    assert nowhere in env_url


def test_usage_errors_are_exit_2(genserve: Run, tmp_path: Path) -> None:
    missing_model = genserve("sample")
    assert missing_model.returncode == EXIT_USAGE and "required: model" in missing_model.stderr
    no_start = genserve("interpolate", "dcgan-tiny", "--end-seed", "2")
    assert no_start.returncode == EXIT_USAGE and "--start-seed" in no_start.stderr
    no_file = refused(genserve("encode", "vae-tiny", str(tmp_path / "none.png")), EXIT_USAGE)
    assert no_file.startswith("genserve: ") and "none.png" in no_file
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("not an image")
    unreadable = refused(genserve("score", "vae-tiny", str(not_an_image)), EXIT_USAGE)
    assert "notes.png" in unreadable
    bad_retries = refused(genserve("models", "--retries", "-1"), EXIT_USAGE)
    assert "must not be negative" in bad_retries


# ---------------------------------------------------------------- serve and progress


def test_every_command_has_its_help() -> None:
    for command in ("models", "sample", "encode", "complete", "traverse"):
        result = _run(None, command, "--help")
        assert result.returncode == 0, result.stderr
        assert "--timeout" in result.stdout and ("--deadline-ms" in result.stdout) == (
            command != "models"
        )


def test_serve_help_is_the_services_own() -> None:
    result = _run(None, "serve", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: genserve serve ")
    assert (
        "--host" in result.stdout and "--port" in result.stdout and "--log-level" in result.stdout
    )


def test_serve_starts_the_service(tiny_store: Path) -> None:
    port = free_port()
    env = {**os.environ, "SERVICE_MODEL_STORE": str(tiny_store), "SERVICE_DEVICE": "cpu"}
    command = [
        sys.executable,
        "-m",
        "genserve",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        try:
            served = f"http://127.0.0.1:{port}"
            wait_for(f"{served}/health/ready", process, log, 120, first_answer_is_final=True)
            out = ok(_run(served, "models", key=None))
            assert "pixelcnn-tiny" in out and "vae-tiny" in out
        finally:
            stop(process)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_spins_with_the_seconds_on_a_terminal_only() -> None:
    terminal = _Terminal()
    with progress("sampling 4 from m", stream=terminal, delay=0.05):
        time.sleep(0.4)
    shown = terminal.getvalue()
    assert re.search(r"\r\x1b\[K[|/\\-] sampling 4 from m 0\.\d s", shown), shown
    assert shown.endswith("\r\x1b[K")  # the line is cleared after
    quick = _Terminal()
    with progress("fast", stream=quick, delay=0.5):
        pass
    assert quick.getvalue() == ""  # nothing for a call quicker than the delay
    pipe = io.StringIO()
    with progress("piped", stream=pipe, delay=0):
        time.sleep(0.2)
    assert pipe.getvalue() == ""
