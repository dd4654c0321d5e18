"""The on-demand Kubernetes plane: certificates and kubeconfigs, and the running plane (built on first need:
`delab stack build kubernetes`, 10-25 min on 2 cores once per machine; .ci/run builds it before `make test`)."""

from __future__ import annotations

import json
import subprocess

import pytest

from delab import config
from delab.stack import services
from delab.stack.services import kubernetes


def test_kubernetes_is_on_demand_with_its_ports():
    assert "kubernetes" in services.ON_DEMAND and "kubernetes" not in services.CORE
    ports = services.SERVICES["kubernetes"].ports()
    assert ports == {name: config.port(name) for name in ("kubernetes", "etcd", "etcd_peer")}


def test_certificates_chain_to_the_ca_and_name_the_loopback(tmp_path, monkeypatch):
    monkeypatch.setenv("DELAB_STACK_DIR", str(tmp_path))
    kubernetes.make_certificates()
    pki = kubernetes.pki_dir()
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki / "ca.crt"), str(pki / "apiserver.crt"), str(pki / "admin.crt")],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0, verified.stderr
    sans = subprocess.run(
        ["openssl", "x509", "-in", str(pki / "apiserver.crt"), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
    ).stdout
    assert "IP Address:127.0.0.1" in sans and "DNS:kubernetes.default.svc" in sans
    subject = subprocess.run(
        ["openssl", "x509", "-in", str(pki / "admin.crt"), "-noout", "-subject"], capture_output=True, text=True
    ).stdout
    assert "O = system:masters" in subject
    before = (pki / "ca.crt").read_bytes()
    kubernetes.make_certificates()  # once: a second call keeps them
    assert (pki / "ca.crt").read_bytes() == before


@pytest.mark.stack
def test_the_plane_schedules_a_deployment_on_the_simulated_node():
    from delab import stack

    stack.require("kubernetes", quiet=True)
    version = json.loads(kubernetes.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == kubernetes.VERSION
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "delab-probe", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "delab-probe"}},
            "template": {
                "metadata": {"labels": {"app": "delab-probe"}},
                "spec": {"containers": [{"name": "c", "image": "example.invalid/none:1"}]},
            },
        },
    }
    assert kubernetes.kubectl("apply", "-f", "-", stdin=json.dumps(manifest)).returncode == 0
    try:
        waited = kubernetes.kubectl("rollout", "status", "deployment/delab-probe", "--timeout=60s", timeout=90)
        assert waited.returncode == 0, waited.stderr
        pods = json.loads(kubernetes.kubectl("get", "pods", "-l", "app=delab-probe", "-o", "json").stdout)
        assert [p["spec"]["nodeName"] for p in pods["items"]] == [kubernetes.NODE] * 2
    finally:
        kubernetes.kubectl("delete", "deployment", "delab-probe", "--wait=false")
