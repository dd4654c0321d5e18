"""A real Kubernetes control plane as plain processes: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, and kwok simulating one node (no container ever runs: kwok only moves pods through their states).

Built from the Go module proxy on first need (`delab stack build kubernetes`, or the first
``stack.require("kubernetes")``): 10-25 min on 2 cores, once per machine. Certificates and the service-account key
are made once with openssl under the service's data folder; the admin kubeconfig is written to the run folder
(``kubeconfig()``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from delab import config
from delab.stack import layout
from delab.stack.errors import MissingPrerequisite, ServiceFailed
from delab.stack.probes import ProbeFailed
from delab.stack.services.base import HOST, NativeService, ProcessSpec, write_file

VERSION = "v1.37.2"
#: wrapper modules under infra/native/go built for the plane, and the binaries each gives
WRAPPERS = {
    "etcd": ["etcd"],
    "kwok": ["kwok"],
    "kubernetes": ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"],
}
BUILD_MINUTES = "10-25"
NODE = "kwok-node-0"
SERVICE_CIDR = "10.96.0.0/24"
#: kwok's own stage definitions, read from its module in the Go module cache at build time
KWOK_STAGES = [
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    # the "fast" pod stages: Pending -> Running and Ready in one step (the "general" ones wait for an Initialized
    # condition that only their pod-create/init stages set)
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
]


def _say(message: str) -> None:
    print(f"[stack] {message}", file=sys.stdout, flush=True)


def binary(name: str) -> Path:
    """A binary of the plane (kubectl, kube-apiserver, etcd, kwok …)."""
    for wrapper, names in WRAPPERS.items():
        if name in names:
            return layout.build_dir() / wrapper / "bin" / name
    raise KeyError(name)


def built() -> bool:
    """True when every binary of the plane and kwok's stages are in the build folder."""
    return all(binary(name).exists() for names in WRAPPERS.values() for name in names) and _stages_file().exists()


def _stages_file() -> Path:
    """kwok's stages, named after the list above: a changed list is copied again on the next start."""
    digest = hashlib.sha256("\n".join(KWOK_STAGES).encode()).hexdigest()[:8]
    return layout.build_dir() / "kwok" / f"stages-{digest}.yaml"


def _copy_kwok_stages() -> None:
    folder = layout.infra_dir() / "native" / "go" / "kwok"
    out = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok"], cwd=folder, capture_output=True, text=True
    )
    source = Path(out.stdout.strip()) / "kustomize" / "stage"
    if out.returncode != 0 or not source.is_dir():
        raise ServiceFailed(f"kwok's stage files not found in the Go module cache ({out.stderr.strip()[:200]})")
    docs = [(source / stage).read_text().strip().removeprefix("---").strip() for stage in KWOK_STAGES]
    write_file(_stages_file(), "\n---\n".join(docs) + "\n")


def build(progress=_say) -> None:
    """Build etcd, kwok and the Kubernetes binaries (pinned in infra/native/go/*), once; seconds when built.

    One build at a time per checkout: a second caller (a notebook while `delab stack build kubernetes` runs, CI's
    background build) waits for the first one's lock and then finds the binaries built."""
    if built():
        return
    lock_path = layout.build_dir() / "kubernetes.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("another process is building the Kubernetes plane: waiting for it to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not built():
            _build_locked(progress)


def _build_locked(progress) -> None:
    if shutil.which("go") is None:
        raise MissingPrerequisite("Go not found: it builds the Kubernetes plane (see environment.yml)")
    progress(
        f"building the Kubernetes control plane {VERSION} from source: first time only, about {BUILD_MINUTES} "
        "minutes on 2 cores (~3 GB of memory, ~6 GB of Go caches). Later starts take seconds."
    )
    script = layout.infra_dir() / "native" / "build-go.sh"
    started = time.monotonic()
    for wrapper in WRAPPERS:
        log = layout.build_dir() / wrapper / "build.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            child = subprocess.Popen([str(script), wrapper], stdout=out, stderr=subprocess.STDOUT)
            done = threading.Event()

            def tick(child=child, wrapper=wrapper, done=done) -> None:
                while not done.wait(60):
                    progress(f"still building {wrapper}: {(time.monotonic() - started) / 60:.0f} min so far")

            threading.Thread(target=tick, daemon=True).start()
            code = child.wait()
            done.set()
        if code != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise ServiceFailed(f"building {wrapper} failed: {tail[0][:200]} (log: {log})")
    _copy_kwok_stages()
    progress(f"Kubernetes plane built in {(time.monotonic() - started) / 60:.1f} min")


# --- certificates and kubeconfigs -----------------------------------------------------------------------------


def pki_dir() -> Path:
    return layout.data_dir("kubernetes") / "pki"


def kubeconfig(user: str = "admin") -> Path:
    """The kubeconfig of a user of the plane (admin: system:masters) under the stack's run folder."""
    return layout.conf_dir("kubernetes") / f"{user}.kubeconfig"


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ServiceFailed(f"openssl {args[0]} failed: {result.stderr.strip()[:200]}")


#: client certificates: file stem -> subject (the API server reads user from CN, groups from O)
CLIENTS = {
    "admin": "/O=system:masters/CN=delab-admin",
    "controller-manager": "/CN=system:kube-controller-manager",
    "scheduler": "/CN=system:kube-scheduler",
    "kwok": "/O=system:masters/CN=kwok",
}


def make_certificates() -> None:
    """A CA, the API server's serving certificate, client certificates and the service-account key; once."""
    pki = pki_dir()
    if (pki / "done").exists():
        return
    if shutil.which("openssl") is None:
        raise MissingPrerequisite("openssl not found: apt install openssl (it makes the plane's certificates)")
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=delab-kubernetes-ca",
        cwd=pki,
    )
    sans = (
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    )
    write_file(pki / "server.ext", sans + "\nextendedKeyUsage=serverAuth\n")
    write_file(pki / "client.ext", "extendedKeyUsage=clientAuth\n")
    certs = {"apiserver": ("/CN=kube-apiserver", "server.ext"), **{k: (v, "client.ext") for k, v in CLIENTS.items()}}
    for stem, (subject, ext) in certs.items():
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{stem}.key",
            "-out",
            f"{stem}.csr",
            "-subj",
            subject,
            cwd=pki,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{stem}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{stem}.crt",
            "-days",
            "3650",
            "-extfile",
            ext,
            cwd=pki,
        )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    (pki / "done").write_text("")


def _kubeconfig_text(user: str) -> str:
    pki, server = pki_dir(), f"https://{HOST}:{config.port('kubernetes')}"
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "delab", "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}
            ],
            "users": [
                {
                    "name": user,
                    "user": {"client-certificate": str(pki / f"{user}.crt"), "client-key": str(pki / f"{user}.key")},
                }
            ],
            "contexts": [{"name": "delab", "context": {"cluster": "delab", "user": user, "namespace": "default"}}],
            "current-context": "delab",
        },
        indent=2,
    )


def api_get(path: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """GET a path of the API server as admin: (status, body)."""
    pki = pki_dir()
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    url = f"https://{HOST}:{config.port('kubernetes')}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        raise ProbeFailed(f"GET {url}: {error}") from None


def kubectl(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the plane's kubectl as admin."""
    return subprocess.run(
        [str(binary("kubectl")), "--kubeconfig", str(kubeconfig()), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


NODE_MANIFEST = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": NODE,
        "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
        "labels": {
            "kubernetes.io/hostname": NODE,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
        },
    },
    "status": {
        "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
    },
}


class Kubernetes(NativeService):
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok, all on 127.0.0.1."""

    name = "kubernetes"
    on_demand = True
    start_timeout = 120.0

    def __init__(self) -> None:
        self._node_created = False

    def ports(self) -> dict[str, int]:
        return {name: config.port(name) for name in ("kubernetes", "etcd", "etcd_peer")}

    def endpoint(self) -> str:
        return f"https://{HOST}:{config.port('kubernetes')}"

    def process_names(self) -> list[str]:
        return ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]

    def prepare(self) -> None:
        build()
        make_certificates()
        self._node_created = False
        conf = layout.conf_dir("kubernetes")
        for user in CLIENTS:
            write_file(conf / f"{user}.kubeconfig", _kubeconfig_text(user))
        layout.data_dir("kubernetes").joinpath("etcd").mkdir(parents=True, exist_ok=True)

    def processes(self) -> list[ProcessSpec]:
        pki, conf, data = pki_dir(), layout.conf_dir("kubernetes"), layout.data_dir("kubernetes")
        etcd_url = f"http://{HOST}:{config.port('etcd')}"
        peer_url = f"http://{HOST}:{config.port('etcd_peer')}"
        return [
            ProcessSpec(
                "etcd",
                [
                    str(binary("etcd")),
                    "--name",
                    "delab",
                    "--data-dir",
                    str(data / "etcd"),
                    "--listen-client-urls",
                    etcd_url,
                    "--advertise-client-urls",
                    etcd_url,
                    "--listen-peer-urls",
                    peer_url,
                    "--initial-advertise-peer-urls",
                    peer_url,
                    "--initial-cluster",
                    f"delab={peer_url}",
                    "--quota-backend-bytes",
                    str(512 * 2**20),
                    "--log-level",
                    "warn",
                ],
                cwd=data,
            ),
            ProcessSpec(
                "kube-apiserver",
                [
                    str(binary("kube-apiserver")),
                    f"--etcd-servers={etcd_url}",
                    f"--bind-address={HOST}",
                    f"--advertise-address={HOST}",
                    f"--secure-port={config.port('kubernetes')}",
                    "--endpoint-reconciler-type=none",  # no Endpoints for a loopback address
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    f"--client-ca-file={pki / 'ca.crt'}",
                    f"--tls-cert-file={pki / 'apiserver.crt'}",
                    f"--tls-private-key-file={pki / 'apiserver.key'}",
                    f"--service-account-key-file={pki / 'sa.pub'}",
                    f"--service-account-signing-key-file={pki / 'sa.key'}",
                    "--service-account-issuer=https://kubernetes.default.svc",
                    "--authorization-mode=RBAC",
                    "--profiling=false",
                    "-v=1",
                ],
                cwd=data,
            ),
            ProcessSpec(
                "kube-controller-manager",
                [
                    str(binary("kube-controller-manager")),
                    f"--kubeconfig={conf / 'controller-manager.kubeconfig'}",
                    "--secure-port=0",
                    "--leader-elect=false",
                    "--use-service-account-credentials=true",
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                    f"--cluster-signing-key-file={pki / 'ca.key'}",
                    "--profiling=false",
                    "-v=1",
                ],
                cwd=data,
            ),
            ProcessSpec(
                "kube-scheduler",
                [
                    str(binary("kube-scheduler")),
                    f"--kubeconfig={conf / 'scheduler.kubeconfig'}",
                    "--secure-port=0",
                    "--leader-elect=false",
                    "--profiling=false",
                    "-v=1",
                ],
                cwd=data,
            ),
            ProcessSpec(
                "kwok",
                [
                    str(binary("kwok")),
                    f"--kubeconfig={conf / 'kwok.kubeconfig'}",
                    f"--config={_stages_file()}",
                    "--manage-all-nodes=false",
                    "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                    f"--node-ip={HOST}",
                    # renew the node's Lease (the heartbeat-with-lease stage updates the node's status only every
                    # ~10 min): without it the node-lifecycle controller marks the node and its pods not ready
                    "--node-lease-duration-seconds=40",
                    "--cidr=10.244.0.0/16",
                ],
                cwd=data,
            ),
        ]

    def bootstrap(self) -> bool:
        """Once the API answers: register the simulated node (kwok then keeps it Ready)."""
        if self._node_created:
            return True
        try:
            status, _ = api_get("/readyz")
        except ProbeFailed:
            return False
        if status != 200:
            return False
        result = kubectl("apply", "-f", "-", stdin=json.dumps(NODE_MANIFEST))
        if result.returncode != 0:
            return False
        self._node_created = True
        return True

    def probe(self) -> None:
        """The API server is ready, the simulated node Ready, and the default service account exists (the
        controller-manager works)."""
        status, body = api_get("/readyz")
        if status != 200:
            raise ProbeFailed(f"/readyz answered {status}: {body[:120]!r}")
        status, body = api_get(f"/api/v1/nodes/{NODE}")
        if status != 200:
            raise ProbeFailed(f"node {NODE} not registered yet ({status})")
        conditions = json.loads(body).get("status", {}).get("conditions", [])
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            raise ProbeFailed(f"node {NODE} is not Ready yet (kwok)")
        status, _ = api_get("/api/v1/namespaces/default/serviceaccounts/default")
        if status != 200:
            raise ProbeFailed("no default service account yet (controller-manager starting)")


def environment() -> dict[str, str]:
    """KUBECONFIG for tools (kubectl, the Python client, kopf) run from a notebook."""
    return {"KUBECONFIG": str(kubeconfig())}


__all__ = ["Kubernetes", "api_get", "binary", "build", "built", "environment", "kubeconfig", "kubectl"]
