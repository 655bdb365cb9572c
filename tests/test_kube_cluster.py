"""The test Kubernetes cluster (tests/kube_cluster.py) runs pods that reach each other by Service
name, with a volume from the default StorageClass."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.kube_cluster import Cluster, shared_cluster
from tests.oci_image import Dir, Symlink

BUSYBOX = Path("/usr/bin/busybox")
# (Debian's busybox-static wget crashes, even on the host: nc is the HTTP client.)
APPLETS = ("sh", "echo", "printf", "cat", "nc", "httpd", "sleep", "ls", "id", "nslookup", "tail")

pytestmark = [
    # One cluster per worker: the tests that use it share a worker.
    pytest.mark.xdist_group("kubernetes"),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("containerd") is None or not BUSYBOX.exists(),
                       reason="the test cluster needs root, containerd and busybox-static"),
]


def busybox_image(cluster: Cluster) -> str:
    files = {"/bin/busybox": BUSYBOX, "/www": Dir(0o755, 65534, 65534),
             "/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
             "/etc/group": b"root:x:0:\nnogroup:x:65534:\n"}
    files.update({f"/bin/{applet}": Symlink("busybox") for applet in APPLETS})
    return cluster.import_image("trace-stack-test/busybox:1", files, ["/bin/busybox"])


def test_a_pod_reaches_another_by_service_name():
    cluster = shared_cluster()
    image = busybox_image(cluster)
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "web-data", "namespace": namespace},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": namespace},
         "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
             "metadata": {"labels": {"app": "web"}},
             "spec": {"securityContext": {"runAsUser": 65534, "runAsGroup": 65534},
                      "containers": [{"name": "httpd", "image": image, "imagePullPolicy": "IfNotPresent",
                                      "command": ["sh", "-c", "echo hello from $(id -u) > /data/index.html && "
                                                  "exec httpd -f -p 8080 -h /data"],
                                      "ports": [{"containerPort": 8080}],
                                      "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                      "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "web-data"}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": namespace},
         "spec": {"containers": [{"name": "client", "image": image, "imagePullPolicy": "Never",
                                  "command": ["sleep", "3600"]}], "terminationGracePeriodSeconds": 0}},
    ]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    try:
        cluster.kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=90s", timeout=100)
        cluster.kubectl("-n", namespace, "wait", "pod/client", "--for=condition=Ready", "--timeout=60s", timeout=70)
        result = cluster.kubectl("-n", namespace, "exec", "client", "--", "sh", "-c",
                                 r"printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 web 80", check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("HTTP/1.") and result.stdout.splitlines()[-1] == "hello from 65534", result.stdout
        missing = cluster.kubectl("-n", namespace, "exec", "client", "--", "nslookup", "nothere", check=False)
        assert missing.returncode != 0
        claim = json.loads(cluster.kubectl("-n", namespace, "get", "pvc", "web-data", "-o", "json").stdout)
        assert claim["status"]["phase"] == "Bound"
    finally:
        subprocess.run(cluster.command(["kubectl", "delete", "namespace", namespace, "--wait=false"]),
                       env=cluster.env(), capture_output=True)
