"""The CPU image, built and run for real (podman or docker, ``make image-test``): the user it
runs as, its own HEALTHCHECK, the routes, SIGTERM with requests in flight, a read-only root as
Kubernetes runs it (deploy/k8s/), and what the image must not hold: torch, a compiler, a pip
cache, or the CA the build was given."""

from __future__ import annotations

import base64
import re
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.conftest import FIGURES, Container, Image, running_container

pytestmark = [pytest.mark.container, pytest.mark.timeout(900)]

UID = "10001"
STOP_GRACE_S = 10
"""docker's and podman's default `stop` time-out: SIGTERM, then SIGKILL after this long."""
SLOW_REQUEST = {"model": "pixelrnn-fashion", "n": 2, "seed": 1}
"""Half a second of one core: pixel by pixel, 784 runs of a graph per image."""
IN_FLIGHT = 8
"""Few enough that none waits 10 s for a sampling slot (an overload 503, not the drain's)."""
TMPFS_MIB = 64
K8S_RUN_OPTIONS = [
    "--read-only",
    "--tmpfs",
    f"/tmp:rw,nosuid,nodev,size={TMPFS_MIB}m,mode=1777",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
]
"""The run that stands for deploy/k8s/'s securityContext (test_files.py holds the
manifests to it): read-only root, /tmp a tmpfs, no capabilities, no privilege escalation."""
PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\s+(.*?)-----END CERTIFICATE-----", re.S)
COMPILER = re.compile(
    r"(^|/)s?bin/(cc|c\+\+|gcc|g\+\+|clang(\+\+)?|tcc|[\w.-]+-(gcc|g\+\+)(-\d+)?)$"
)


@pytest.fixture(scope="module")
def container(engine: Any, image: Image) -> Any:
    with running_container(engine, image.tag) as running:
        yield running


def test_runs_as_uid_10001(container: Container) -> None:
    status = container.exec("cat", "/proc/1/status")
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M)
    gids = re.search(r"^Gid:\s+(.*)$", status, re.M)
    assert uids and uids.group(1).split() == [UID] * 4, status
    assert gids and gids.group(1).split() == [UID] * 4, status


def test_the_images_healthcheck_turns_healthy(
    engine: Any, image: Image, container: Container
) -> None:
    """The image's own HEALTHCHECK (podman keeps it only in the docker format). Without
    systemd, podman runs no health timer: `podman healthcheck run` runs the check."""
    configured = engine.run(
        "image", "inspect", "--format", "{{json .Config.Healthcheck}}", image.tag
    )
    assert "/health/ready" in configured.stdout, configured.stdout
    deadline = time.monotonic() + 90
    while True:
        if engine.name == "podman":
            engine.run("healthcheck", "run", container.name, check=False, timeout=30)
        if container.state("Health.Status") == "healthy":
            break
        assert time.monotonic() < deadline, f"not healthy in 90 s: {container.logs()}"
        time.sleep(2)


def test_ready_sample_and_metrics_answer(container: Container) -> None:
    with httpx.Client(base_url=container.url, timeout=30) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        sample = client.post("/sample", json={"model": "dcgan-fashion", "n": 2, "seed": 1})
        assert sample.status_code == 200, sample.text
        assert len(sample.json()["images"]) == 2
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert 'genserve_request_duration_seconds_count{model="dcgan-fashion"' in metrics.text


def test_sigterm_with_requests_in_flight_fails_none_and_exits_0(engine: Any, image: Image) -> None:
    """`stop` sends SIGTERM, then SIGKILL after its grace: every request in flight is answered,
    and the service exits 0 well within the grace."""
    with running_container(engine, image.tag) as running:
        with ThreadPoolExecutor(IN_FLIGHT) as pool, httpx.Client(timeout=60) as client:

            def slow() -> tuple[int, float]:
                response = client.post(f"{running.url}/sample", json=SLOW_REQUEST)
                return response.status_code, time.monotonic()

            answers = [pool.submit(slow) for _ in range(IN_FLIGHT)]
            time.sleep(0.3)  # all connected and taken; far from all answered
            sigterm = time.monotonic()
            engine.run("stop", "--time", str(STOP_GRACE_S), running.name, timeout=60)
            stopped_s = time.monotonic() - sigterm
            results = [answer.result() for answer in answers]
        exit_code = running.state("ExitCode")
        logs = running.logs()
    codes = [code for code, _ in results]
    after = sum(1 for _, at in results if at > sigterm)
    FIGURES.append(
        f"SIGTERM with {IN_FLIGHT} requests sent, {after} in flight: "
        f"{codes.count(200)} answered 200, {IN_FLIGHT - codes.count(200)} failed; "
        f"exit code {exit_code} after {stopped_s:.1f} s (grace {STOP_GRACE_S} s)"
    )
    assert after > 0, "every request had finished before SIGTERM: nothing was in flight"
    assert codes == [200] * IN_FLIGHT, (codes, logs)
    assert exit_code == "0", logs
    assert stopped_s < STOP_GRACE_S, logs


def test_read_only_root_with_a_tmpfs_for_the_run_folder(engine: Any, image: Image) -> None:
    """What deploy/k8s/ asks of the pod: uid 10001, read-only root filesystem, all capabilities
    dropped, no privilege escalation, and /tmp (the workers' run folder) a tmpfs. podman's
    --read-only would add tmpfs mounts of its own: --read-only-tmpfs=false leaves /tmp alone."""
    own_tmpfs = ["--read-only-tmpfs=false"] if engine.name == "podman" else []
    options = [*K8S_RUN_OPTIONS[:1], *own_tmpfs, *K8S_RUN_OPTIONS[1:]]
    with running_container(engine, image.tag, *options) as running:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            sample = client.post("/sample", json={"model": "vae-fashion", "n": 2, "seed": 1})
            assert sample.status_code == 200, sample.text
            assert "genserve_request_duration_seconds_count" in client.get("/metrics").text
        denied = engine.run("exec", running.name, "touch", "/app/x", check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr
        used = running.exec("du", "-sk", "/tmp").split()[0]
        assert running.exec("id", "-u").strip() == UID
    FIGURES.append(f"read-only root: ready and serving, /tmp (tmpfs) holds {used} KiB")


def _exported_files(engine: Any, tag: str) -> Any:
    """(path, bytes) of every regular file of a container made from ``tag``."""
    name = engine.run("create", tag).stdout.strip()
    try:
        export = subprocess.Popen(
            [engine.name, "export", name], env=engine.env, stdout=subprocess.PIPE
        )
        assert export.stdout is not None
        with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
            for member in tar:
                reader = tar.extractfile(member) if member.isfile() else None
                yield member.name, (reader.read() if reader else b"")
        assert export.wait(timeout=120) == 0
    finally:
        engine.run("rm", "--force", name, check=False)


def _ca_needles(ca: Path, base_bundle: bytes) -> dict[str, list[bytes]]:
    """For each certificate of ``ca`` that the base image does not ship: a line of its PEM and
    32 bytes of its DER, which no copy of it (PEM or DER) can lack."""
    needles = {}
    for block in PEM_BLOCK.findall(ca.read_bytes()):
        lines = block.split()
        if lines[2] in base_bundle:
            continue  # one of Debian's, in the image by design
        der = base64.b64decode(b"".join(lines))
        needles[f"certificate {len(needles) + 1}"] = [lines[2], der[len(der) // 2 :][:32]]
    return needles


def test_the_image_holds_no_torch_compiler_pip_cache_or_build_ca(engine: Any, image: Image) -> None:
    base_bundle = engine.run(
        "run", "--rm", image.base, "cat", "/etc/ssl/certs/ca-certificates.crt"
    ).stdout.encode()
    needles = _ca_needles(image.ca, base_bundle) if image.ca else {}
    # the control: a certificate the image does ship (Debian's), which the search must find
    needles["control"] = [PEM_BLOCK.findall(base_bundle)[0].split()[2], b"\0" * 64]
    found: dict[str, list[str]] = {"torch": [], "compiler": [], "pip cache": [], "CA": []}
    files = 0
    for path, data in _exported_files(engine, image.tag):
        files += 1
        if re.search(r"(^|/)site-packages/torch(/|$)", path):
            found["torch"].append(path)
        if COMPILER.search(path):
            found["compiler"].append(path)
        if re.search(r"(^|/)\.cache/pip(/|$)|(^|/)run/secrets/", path):
            found["pip cache"].append(path)
        for name, (pem_line, der_part) in needles.items():
            if pem_line in data or der_part in data:
                found["CA"].append(f"{path} ({name})")
    assert files > 1000
    controls = [hit for hit in found["CA"] if hit.endswith("(control)")]
    assert "etc/ssl/certs/ca-certificates.crt (control)" in controls, found["CA"]
    found["CA"] = [hit for hit in found["CA"] if hit not in controls]
    assert found == {"torch": [], "compiler": [], "pip cache": [], "CA": []}
    FIGURES.append(
        f"final image: {files} files; no torch, compiler or pip cache; "
        f"{len(needles) - 1} build CA certificate(s) looked for, none found"
    )


def test_pip_in_the_build_needed_the_ca_secret(engine: Any, image: Image) -> None:
    """The control for the build above: from the base image, which holds no proxy CA, PyPI's
    certificate does not verify. The build's pip got through only with the secret."""
    probe = engine.run(
        "run",
        "--rm",
        image.base,
        "python3",
        "-c",
        "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/', timeout=20)",
        check=False,
        timeout=120,
    )
    if probe.returncode == 0:
        pytest.skip("no TLS-inspecting proxy between here and PyPI: the build needs no CA")
    assert "CERTIFICATE_VERIFY_FAILED" in probe.stderr, probe.stderr
    assert image.ca is not None, "the build was given no CA, yet it could not have passed"
    FIGURES.append(f"build CA: PyPI does not verify without it; the build passed with {image.ca}")
