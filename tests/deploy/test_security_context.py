"""deploy/k8s/ asks of the pod what tests/deploy/test_image.py ran the image with, and saw
serve: uid 10001, a read-only root, no capabilities, no privilege escalation, /tmp a tmpfs of
the same size. Static: part of ``make test``."""

from __future__ import annotations

from tests.deploy.test_image import K8S_RUN_OPTIONS, TMPFS_MIB, UID
from tests.support.deploy_files import K8S, load_yaml_documents


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
