"""Build the CPU image (``make image``) with podman or docker, whichever runs here.

``python3 deploy/docker/build.py [--tag genserve:cpu] [--ca BUNDLE] [--base IMAGE]`` builds the
Dockerfile's ``cpu`` target and prints the image's size and the build's time. The base is the
Dockerfile's ``PYTHON_IMAGE`` (``--base`` or the environment's ``PYTHON_IMAGE`` to change it);
where it can be neither found nor pulled (no registry reachable), ``debian_base.sh`` beside this
file makes an equivalent one from Debian's packages. ``--ca`` passes a CA bundle as the build
secret ``ca``, which pip in the builder stage trusts (a TLS-inspecting proxy's CA); the secret
lands in no layer. On a host without pure cgroup v2 (the CI VMs), podman runs with
``CONTAINERS_CONF`` set to ``deploy/podman/containers.conf`` unless it is set already. podman
builds with ``--format docker``, without which it drops the ``HEALTHCHECK``. Standard library
only: tests/deploy/ imports it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
BASE_SCRIPT = Path(__file__).resolve().parent / "debian_base.sh"
CONTAINERS_CONF = REPO / "deploy" / "podman" / "containers.conf"
PURE_CGROUP_V2 = Path("/sys/fs/cgroup/cgroup.controllers")
"""Absent on hosts with cgroup v1 or the hybrid layout, like the CI VMs: podman's defaults fail
there, and CONTAINERS_CONF is pointed at deploy/podman/containers.conf."""
DEFAULT_TAG = "genserve:cpu"


@dataclass(frozen=True)
class Engine:
    """A container engine's command (``podman`` or ``docker``) and its environment."""

    name: str
    env: dict[str, str]

    def run(
        self, *args: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``args`` run to the end, their output captured; ``check``: raise if they fail."""
        result = subprocess.run(
            [self.name, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{self.name} {' '.join(args)}: {result.stderr.strip()}")
        return result

    def has_image(self, image: str) -> bool:
        return self.run("image", "inspect", image, check=False, timeout=60).returncode == 0

    def image_size(self, image: str) -> int:
        return int(self.run("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())


def find_engine() -> tuple[Engine | None, str]:
    """The first of podman and docker whose ``info`` answers, or None and why neither does."""
    reasons = []
    for name in ("podman", "docker"):
        if shutil.which(name) is None:
            reasons.append(f"no {name}")
            continue
        env = dict(os.environ)
        if name == "podman" and not PURE_CGROUP_V2.exists():
            env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
        else:
            env.setdefault("DOCKER_BUILDKIT", "1")  # build secrets need BuildKit
        engine = Engine(name, env)
        try:
            info = engine.run("info", check=False, timeout=60)
        except subprocess.TimeoutExpired:
            reasons.append(f"`{name} info` did not answer in 60 s")
            continue
        if info.returncode == 0:
            return engine, ""
        last = (info.stderr.strip().splitlines() or ["no output"])[-1]
        reasons.append(f"`{name} info` failed: {last}")
    return None, "; ".join(reasons)


def default_python_image() -> str:
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert match is not None, "the Dockerfile declares no PYTHON_IMAGE"
    return match.group(1)


def base_image(engine: Engine, wanted: str | None = None) -> str:
    """``wanted`` (or the Dockerfile's PYTHON_IMAGE) when present or pullable, else the local
    Debian base, made by debian_base.sh (or reused: its tag holds the script's hash)."""
    image = wanted or default_python_image()
    if engine.has_image(image):
        return image
    pulled = engine.run("pull", image, check=False, timeout=900)
    if pulled.returncode == 0:
        return image
    if wanted:
        raise RuntimeError(f"cannot pull {image}: {pulled.stderr.strip()}")
    print(f"cannot pull {image}: using a local Debian base ({BASE_SCRIPT.name})", file=sys.stderr)
    made = subprocess.run(
        ["bash", str(BASE_SCRIPT), engine.name],
        env=engine.env,
        stdout=subprocess.PIPE,
        text=True,
        timeout=1200,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


@dataclass(frozen=True)
class Built:
    tag: str
    base: str
    base_s: float
    """Seconds to find, pull or make the base (a reused local base: well under 1 s)."""
    build_s: float
    size: int
    """Bytes, as the engine counts them (the base's layers included)."""

    def summary(self) -> str:
        return (
            f"{self.tag}: {self.size / 1e6:.0f} MB, built in {self.build_s:.1f} s "
            f"on {self.base} (base ready in {self.base_s:.1f} s)"
        )


def build(
    engine: Engine,
    tag: str = DEFAULT_TAG,
    base: str | None = None,
    ca: Path | None = None,
    target: str = "cpu",
) -> Built:
    """Build ``target`` of the Dockerfile as ``tag``, with ``ca`` as the secret ``ca``."""
    started = time.monotonic()
    base = base_image(engine, base)
    base_s = time.monotonic() - started
    args = ["build", "--target", target, "--tag", tag, "--build-arg", f"PYTHON_IMAGE={base}"]
    if engine.name == "podman":
        args += ["--format", "docker"]  # the OCI format has no HEALTHCHECK
    if ca is not None:
        args += ["--secret", f"id=ca,src={ca.resolve()}"]
    started = time.monotonic()
    subprocess.run(
        [engine.name, *args, str(REPO)], env=engine.env, check=True, timeout=1800
    )  # its progress goes to the terminal
    build_s = time.monotonic() - started
    return Built(tag, base, base_s, build_s, engine.image_size(tag))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default=DEFAULT_TAG)
    parser.add_argument("--base", default=os.environ.get("PYTHON_IMAGE") or None)
    parser.add_argument("--ca", type=Path, help="a CA bundle for pip (PEM), the secret `ca`")
    args = parser.parse_args(argv)
    engine, why = find_engine()
    if engine is None:
        raise SystemExit(f"no container engine runs here: {why}")
    print(build(engine, args.tag, args.base, args.ca).summary())


if __name__ == "__main__":
    main()
