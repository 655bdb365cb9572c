"""A real single-node Kubernetes cluster for the tests, in a network namespace of its own.

    python -m tests.kube_cluster start DIR [--name NAME]   # prints the kubeconfig and the netns
    python -m tests.kube_cluster stop DIR

    with Cluster.start(workdir) as cluster:
        subprocess.run(cluster.command(["kubectl", "get", "nodes"]), env=cluster.env())

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a containerd of its own (root, state
and socket under DIR), the kubelet and kube-proxy (iptables mode) all run inside the network
namespace NAME, which has only loopback and a bridge (cni0, 10.88.0.1/16: the node address, and the
pods' gateway), and no route anywhere else: nothing in the cluster can reach past this machine, and
nothing is pulled (images are written here and imported, `import_image`). Also inside: a DNS server
(tests/kube_dns.py) the pods use, answering only Service names, and a provisioner of hostPath
volumes under DIR/volumes/<namespace>/<claim> for the default StorageClass, so a claim recreated
with the same name gets the same data back. Every process is in a cgroup of the cluster's own
(/trace-stack-NAME in each hierarchy; the kubelet's pods go under it), which is how stopping finds
them all; the host sysctls the kubelet changes are put back when the last cluster stops.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.oci_image import Entry, write_image

ROOT = Path(__file__).resolve().parent.parent
NODE_IP = "10.88.0.1"
POD_CIDR = "10.88.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
API_PORT = 6443
STORAGE_CLASS = "standard"
PROVISIONER = "trace-stack.test/hostpath"
PAUSE_IMAGE = "docker.io/trace-stack/pause:1"
REGISTRY = Path("/run/trace-stack-kube")
# What the kubelet sets on the host (and puts back nothing of): restored when the last cluster stops.
HOST_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
                "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes")
CONTAINER_LOGS = Path("/var/log/containers")
# Host directories the kubelet, containerd's shims and the CNI plugins make at fixed paths (the
# kubelet's device-plugin socket, for one, is always /var/lib/kubelet/device-plugins/kubelet.sock).
# Those absent before the first cluster are removed when the last one stops.
HOST_DIRS = (Path("/var/lib/kubelet"), Path("/var/lib/cni"), Path("/var/log/containers"), Path("/run/containerd"),
             Path("/usr/libexec/kubernetes"))
SHIM_SOCKETS = Path("/run/containerd/s")
CNI_CACHE = Path("/var/lib/cni")
MNT_DETACH = 2


class ClusterError(Exception):
    pass


def _run(argv: list[str], *, check: bool = True, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise ClusterError(f"{' '.join(map(str, argv))} failed ({result.returncode}): {result.stdout}{result.stderr}")
    return result


def _cgroup_hierarchies() -> list[Path]:
    """The mount points of the cgroup v1 hierarchies (cpu, memory, pids, name=systemd...)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] in ("cgroup", "cgroup2") and fields[1].startswith("/sys/fs/cgroup/"):
            found.append(Path(fields[1]))
    return found


def _cgroup_procs(group: str) -> set[int]:
    pids: set[int] = set()
    for hierarchy in _cgroup_hierarchies():
        top = hierarchy / group
        if top.is_dir():
            for procs in top.rglob("cgroup.procs"):
                try:
                    pids.update(int(p) for p in procs.read_text().split())
                except OSError:
                    pass
    return pids


class _Registry:
    """Host-wide bookkeeping shared by every cluster on this machine (one per xdist worker): the
    host sysctls as they were before the first cluster, and which clusters are running."""

    def __init__(self):
        REGISTRY.mkdir(parents=True, exist_ok=True)
        (REGISTRY / "active").mkdir(exist_ok=True)
        self.lock = open(REGISTRY / "lock", "w")

    def __enter__(self):
        fcntl.flock(self.lock, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.lock, fcntl.LOCK_UN)
        self.lock.close()

    def active(self) -> dict[str, Path]:
        return {entry.name: Path(entry.read_text().strip()) for entry in (REGISTRY / "active").iterdir()}

    def add(self, netns: str, workdir: Path) -> None:
        saved = REGISTRY / "sysctl.json"
        if not self.active() or not saved.exists():
            saved.write_text(json.dumps({key: Path("/proc/sys", key).read_text().strip() for key in HOST_SYSCTLS}))
            (REGISTRY / "absent.json").write_text(json.dumps([str(d) for d in HOST_DIRS if not d.exists()]))
        (REGISTRY / "active" / netns).write_text(str(workdir))

    def remove(self, netns: str) -> None:
        (REGISTRY / "active" / netns).unlink(missing_ok=True)
        saved = REGISTRY / "sysctl.json"
        if not self.active() and saved.exists():
            for key, value in json.loads(saved.read_text()).items():
                try:
                    Path("/proc/sys", key).write_text(value)
                except OSError:
                    pass
            saved.unlink()
            absent = REGISTRY / "absent.json"
            if absent.exists():
                for directory in map(Path, json.loads(absent.read_text())):
                    if directory == Path("/run/containerd"):  # only if empty: another containerd may use it
                        for empty in (directory / "s", directory):
                            try:
                                empty.rmdir()
                            except OSError:
                                pass
                    else:
                        shutil.rmtree(directory, ignore_errors=True)
                absent.unlink()


def _binaries() -> tuple[Path, Path, Path]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tools import build_services
    return build_services.kubernetes(), build_services.etcd(), build_services.pause()


class Cluster:
    """A running cluster (see the module's doc). Make one with Cluster.start(workdir, name)."""

    def __init__(self, workdir: Path, name: str):
        self.workdir = Path(workdir).resolve()
        self.name = name
        self.netns = name
        self.cgroup = f"trace-stack-{name}"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.node_ip = NODE_IP
        self.api_server = f"https://{NODE_IP}:{API_PORT}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.pids: dict[str, int] = {}
        self.bin: Path | None = None
        self.timings: dict[str, float] = {}
        self._stopped = False

    # ----- what the tests use ---------------------------------------------------------------
    def command(self, argv: list[str]) -> list[str]:
        """argv run inside the cluster's network namespace (the only place the API is reachable)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *map(str, argv)]

    def env(self) -> dict[str, str]:
        """The environment for command(): KUBECONFIG set, the built kubectl first on PATH, no proxy."""
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["NO_PROXY"] = env["no_proxy"] = f"{NODE_IP},10.88.0.0/16,10.96.0.0/16,localhost,127.0.0.1"
        if self.bin is not None:
            env["PATH"] = f"{self.bin}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
                ) -> subprocess.CompletedProcess:
        return _run(self.command([str(self.bin / "kubectl"), *args]), env=self.env(), input=input, check=check,
                    timeout=timeout)

    def import_image(self, name: str, files: dict[str, Entry], entrypoint: list[str], user: str | None = None,
                     env: dict[str, str] | None = None, cmd: list[str] | None = None,
                     workdir: str | None = None) -> str:
        """Write an image (tests/oci_image.py: files maps image paths to bytes, a Path, or a File /
        Dir / Symlink with mode and owner) and import it into the cluster's containerd, where a pod
        with `image: name` and imagePullPolicy IfNotPresent (or Never) finds it. Returns the full
        name (docker.io/library/x:1 for x:1)."""
        with tempfile.TemporaryDirectory(dir=self.workdir) as work:
            tar = Path(work) / "image.tar"
            full = write_image(tar, name, files, entrypoint, cmd=cmd, user=user, env=env, workdir=workdir)
            _run(["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", "images", "import",
                  str(tar)], timeout=120)
        return full

    # ----- starting ---------------------------------------------------------------------------
    @property
    def containerd_socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @classmethod
    def start(cls, workdir: Path, name: str = "tsk") -> "Cluster":
        cluster = cls(workdir, name)
        try:
            cluster._start()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @classmethod
    def load(cls, workdir: Path) -> "Cluster":
        """The running cluster started in workdir (by `python -m tests.kube_cluster start`), to use
        from Python; stop() stops it."""
        state = json.loads((Path(workdir) / "cluster.json").read_text())
        cluster = cls(workdir, state["name"])
        cluster.pids, cluster.bin = state["pids"], Path(state["bin"])
        return cluster

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.workdir / "logs" / f"{name}.log", "ab")
        procs = " ".join(str(h / self.cgroup / "daemons" / "cgroup.procs") for h in _cgroup_hierarchies())
        wrapper = ['sh', '-c', 'for f in $TSK_CGROUP_PROCS; do echo $$ > $f; done; exec "$@"', 'sh',
                   *self.command(argv)]
        process = subprocess.Popen(wrapper, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**self.env(), "TSK_CGROUP_PROCS": procs, "PYTHONPATH": str(ROOT)}, start_new_session=True,
                                   cwd=self.workdir)
        log.close()
        self.processes[name] = process
        self.pids[name] = process.pid
        self._save()

    def _save(self) -> None:
        (self.workdir / "cluster.json").write_text(json.dumps({
            "name": self.name, "netns": self.netns, "cgroup": self.cgroup, "pids": self.pids,
            "bin": str(self.bin) if self.bin else None}))

    def _start(self) -> None:
        started = time.monotonic()
        if os.geteuid() != 0:
            raise ClusterError("the test cluster needs root (network namespaces, cgroups, mounts)")
        for tool in ("containerd", "runc", "ctr", "nsenter", "ip", "iptables", "openssl"):
            if shutil.which(tool) is None:
                raise ClusterError(f"{tool} is not installed (apt-get install containerd runc iptables "
                                   "containernetworking-plugins util-linux iproute2 openssl)")
        if not Path("/usr/lib/cni/bridge").exists():
            raise ClusterError("the CNI plugins are not installed (apt-get install containernetworking-plugins)")
        self.bin, etcd, pause = _binaries()
        self.timings["binaries"] = time.monotonic() - started
        with _Registry() as registry:
            stale = registry.active().get(self.netns)
        if stale is not None or Path(f"/run/netns/{self.netns}").exists():
            _stop_dir(stale if stale is not None and stale.exists() else None, self.netns)
        for sub in ("logs", "pki", "etcd", "containerd", "kubelet", "pod-logs", "cni/net.d", "cni/ipam",
                    "volumes", "volume-plugins"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self._save()
        with _Registry() as registry:
            registry.add(self.netns, self.workdir)
        self._network()
        self._cgroups()
        token = self._pki()
        self._configs(token)
        w, p = self.workdir, self.workdir / "pki"
        self._spawn("etcd", [str(etcd), "--name", "default", "--data-dir", str(w / "etcd"),
                             "--listen-client-urls", "http://127.0.0.1:2379",
                             "--advertise-client-urls", "http://127.0.0.1:2379",
                             "--listen-peer-urls", "http://127.0.0.1:2380",
                             "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                             "--initial-cluster", "default=http://127.0.0.1:2380",
                             "--unsafe-no-fsync", "--log-level", "warn"])
        self._spawn("containerd", ["containerd", "--config", str(w / "containerd" / "config.toml")])
        self._spawn("kube-apiserver", [
            str(self.bin / "kube-apiserver"), "--etcd-servers", "http://127.0.0.1:2379",
            "--bind-address", "0.0.0.0", "--secure-port", str(API_PORT), "--advertise-address", NODE_IP,
            "--tls-cert-file", str(p / "apiserver.crt"), "--tls-private-key-file", str(p / "apiserver.key"),
            "--client-ca-file", str(p / "ca.crt"), "--token-auth-file", str(p / "tokens.csv"),
            "--authorization-mode", "RBAC", "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(p / "sa.pub"), "--service-account-signing-key-file", str(p / "sa.key"),
            "--service-cluster-ip-range", SERVICE_CIDR, "--cert-dir", str(w / "apiserver"),
            "--allow-privileged", "--kubelet-preferred-address-types", "InternalIP", "--profiling=false",
            "--endpoint-reconciler-type", "lease", "--event-ttl", "10m"])
        kubeconfig = str(self.kubeconfig)
        self._spawn("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"), "--kubeconfig", kubeconfig,
            "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
            "--service-account-private-key-file", str(p / "sa.key"), "--root-ca-file", str(p / "ca.crt"),
            "--leader-elect=false", "--bind-address", "127.0.0.1", "--cert-dir", str(w / "controller-manager"),
            "--use-service-account-credentials=false", "--allocate-node-cidrs=false",
            "--service-cluster-ip-range", SERVICE_CIDR, "--controllers", "*,-nodeipam,-cloud-node-lifecycle",
            "--flex-volume-plugin-dir", str(w / "volume-plugins")])
        self._spawn("kube-scheduler", [
            str(self.bin / "kube-scheduler"), "--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig,
            "--authorization-kubeconfig", kubeconfig, "--leader-elect=false", "--bind-address", "127.0.0.1",
            "--cert-dir", str(w / "scheduler")])
        python = sys.executable
        dns_args = ["--server", self.api_server, "--ca", str(p / "ca.crt"), "--token-file", str(p / "token")]
        self._spawn("dns", [python, "-m", "tests.kube_dns", *dns_args, "--listen", NODE_IP])
        self._spawn("provisioner", [python, "-m", "tests.kube_cluster", "provision", *dns_args,
                                    "--volumes", str(w / "volumes")])
        self._wait("containerd", lambda: _run(["ctr", "--address", str(self.containerd_socket), "version"],
                                              check=False).returncode == 0, 30)
        self.import_image(PAUSE_IMAGE, {"/pause": pause}, ["/pause"])
        self._spawn("kubelet", [
            str(self.bin / "kubelet"), "--config", str(w / "kubelet.yaml"), "--kubeconfig", kubeconfig,
            "--root-dir", str(w / "kubelet"), "--cert-dir", str(w / "kubelet" / "pki"), "--node-ip", NODE_IP, "--hostname-override", self.name, "--v", "1"])
        self._spawn("kube-proxy", [str(self.bin / "kube-proxy"), "--config", str(w / "kube-proxy.yaml")])
        self._wait("kube-apiserver", lambda: self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0, 60)
        self.timings["apiserver"] = time.monotonic() - started
        self.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONER, "reclaimPolicy": "Retain", "volumeBindingMode": "Immediate"}))

        def ready() -> bool:
            listing = json.loads(self.kubectl("get", "nodes,serviceaccounts", "-n", "default", "-o", "json").stdout)
            node_ready = any(c["type"] == "Ready" and c["status"] == "True"
                             for item in listing["items"] if item["kind"] == "Node"
                             for c in item.get("status", {}).get("conditions", []))
            account = any(item["kind"] == "ServiceAccount" and item["metadata"]["name"] == "default"
                          for item in listing["items"])
            return node_ready and account
        self._wait("the node to be Ready and the default ServiceAccount", ready, 120)
        self.timings["ready"] = time.monotonic() - started

    def _wait(self, what: str, condition, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    log = (self.workdir / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise ClusterError(f"{name} exited ({process.returncode}) while waiting for {what}:\n{log}")
            if condition():
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"timed out after {timeout}s waiting for {what} (logs: {self.workdir / 'logs'})")
            time.sleep(0.2)

    def _network(self) -> None:
        ns = self.netns
        _run(["ip", "netns", "add", ns])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(["ip", "-n", ns, "link", "add", "cni0", "type", "bridge"])
        _run(["ip", "-n", ns, "addr", "add", f"{NODE_IP}/16", "dev", "cni0"])
        _run(["ip", "-n", ns, "link", "set", "cni0", "up"])
        for key, value in (("net.ipv4.ip_forward", "1"), ("net.bridge.bridge-nf-call-iptables", "1"),
                           ("net.ipv4.conf.all.route_localnet", "1")):
            _run(self.command(["sysctl", "-qw", f"{key}={value}"]))

    def _cgroups(self) -> None:
        for hierarchy in _cgroup_hierarchies():
            for path in (hierarchy / self.cgroup, hierarchy / self.cgroup / "daemons"):
                path.mkdir(exist_ok=True)
                if hierarchy.name == "cpuset":
                    for knob in ("cpuset.cpus", "cpuset.mems"):
                        (path / knob).write_text((hierarchy / knob).read_text())

    def _pki(self) -> str:
        p = self.workdir / "pki"
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _run(["openssl", "req", "-x509", *ec, "-keyout", p / "ca.key", "-out", p / "ca.crt", "-days", "3650",
              "-subj", "/CN=trace-stack-test-ca"])
        sans = f"IP:{NODE_IP},IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default," \
               "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
        _run(["openssl", "req", "-x509", *ec, "-keyout", p / "apiserver.key", "-out", p / "apiserver.crt",
              "-days", "3650", "-subj", "/CN=kube-apiserver", "-CA", p / "ca.crt", "-CAkey", p / "ca.key",
              "-addext", f"subjectAltName={sans}", "-addext", "basicConstraints=critical,CA:FALSE",
              "-addext", "extendedKeyUsage=serverAuth"])
        _run(["openssl", "genrsa", "-out", p / "sa.key", "2048"])
        _run(["openssl", "rsa", "-in", p / "sa.key", "-pubout", "-out", p / "sa.pub"])
        token = secrets.token_hex(24)
        (p / "token").write_text(token)
        (p / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n')
        return token

    def _configs(self, token: str) -> None:
        w, p = self.workdir, self.workdir / "pki"
        import base64
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": self.name,
            "clusters": [{"name": self.name, "cluster": {
                "server": self.api_server,
                "certificate-authority-data": base64.b64encode((p / "ca.crt").read_bytes()).decode()}}],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": "admin", "namespace": "default"}}],
        }, indent=1))
        self.kubeconfig.chmod(0o600)
        c = w / "containerd"
        (c / "config.toml").write_text(f"""version = 2
root = "{c / 'root'}"
state = "{c / 'state'}"
disabled_plugins = ["io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{c / 'containerd.ttrpc.sock'}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{c / 'opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{c / 'runc'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{w / 'cni' / 'net.d'}"
    max_conf_num = 1
""")
        (w / "cni" / "net.d" / "10-bridge.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": f"trace-stack-{self.name}",
            "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
                         "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP,
                                                                       "rangeStart": "10.88.1.2"}]],
                                  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(w / "cni" / "ipam")}}]}, indent=1))
        (w / "resolv.conf").write_text(f"nameserver {NODE_IP}\n")
        (w / "kubelet.yaml").write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs", "cgroupRoot": f"/{self.cgroup}", "cgroupsPerQOS": True,
            "failSwapOn": False, "protectKernelDefaults": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "address": NODE_IP, "readOnlyPort": 0, "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "clusterDNS": [NODE_IP], "clusterDomain": "cluster.local", "resolvConf": str(w / "resolv.conf"),
            "podLogsDir": str(w / "pod-logs"), "volumePluginDir": str(w / "volume-plugins"),
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%",
                             "imagefs.available": "1%", "imagefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "shutdownGracePeriod": "0s", "kernelMemcgNotification": False,
            "nodeStatusReportFrequency": "10s", "syncFrequency": "10s", "fileCheckFrequency": "10s",
            "maxPods": 110, "makeIPTablesUtilChains": True, "registerNode": True,
        }, indent=1))
        (w / "kube-proxy.yaml").write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.kubeconfig)}, "mode": "iptables",
            "clusterCIDR": POD_CIDR, "hostnameOverride": self.name,
            "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"localhostNodePorts": False, "syncPeriod": "10s", "minSyncPeriod": "0s"},
        }, indent=1))

    # ----- stopping ---------------------------------------------------------------------------
    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        started = time.monotonic()
        _teardown(self.workdir, self.netns, self.cgroup, self.processes, self.pids)
        self.timings["stop"] = time.monotonic() - started


def _unmount_under(*roots: Path) -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    prefixes = [str(root).rstrip("/") + "/" for root in roots]
    for _ in range(5):
        targets = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            target = line.split()[4].replace("\\040", " ")
            if any(target.startswith(prefix) or target + "/" == prefix for prefix in prefixes):
                targets.append(target)
        if not targets:
            return
        for target in sorted(targets, key=lambda t: t.count("/"), reverse=True):
            libc.umount2(target.encode(), MNT_DETACH)


def _teardown(workdir: Path | None, netns: str, cgroup: str, processes: dict[str, subprocess.Popen] | None = None,
              pids: dict[str, int] | None = None) -> None:
    """Stop everything of a cluster: every process in its cgroups (the daemons started, the
    containerd shims and the containers), its mounts, cgroups, network namespace and host files."""
    # The daemons first by the PIDs started (SIGKILL: nothing of a test cluster needs saving), then
    # whatever else is in the cluster's cgroups, until none is left.
    for process in (processes or {}).values():
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for pid in (pids or {}).values():
        try:
            if f"/{cgroup}/" in Path(f"/proc/{pid}/cgroup").read_text():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass
    sandboxes = []
    if workdir is not None:
        tasks = workdir / "containerd" / "state" / "io.containerd.runtime.v2.task" / "k8s.io"
        if tasks.is_dir():
            sandboxes = [entry.name for entry in tasks.iterdir()]
    deadline = time.monotonic() + 10
    while True:
        remaining = _cgroup_procs(cgroup)
        if not remaining or time.monotonic() > deadline:
            break
        for pid in remaining:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    for process in (processes or {}).values():
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    if workdir is not None:
        _unmount_under(workdir)
    netns_file = Path(f"/run/netns/{netns}")
    if netns_file.exists():
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
    for _ in range(50):
        left = []
        for hierarchy in _cgroup_hierarchies():
            top = hierarchy / cgroup
            if top.is_dir():
                for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                                   reverse=True) + [top]:
                    try:
                        path.rmdir()
                    except OSError:
                        left.append(path)
        if not left:
            break
        time.sleep(0.1)
    # Host files: the shims' sockets (named by a hash of containerd's address, namespace and sandbox
    # id), the CNI plugins' cache for this cluster's network, the kubelet's /var/log/containers links.
    if workdir is not None:
        import hashlib
        address = str(workdir / "containerd" / "containerd.sock")
        for sandbox in sandboxes:
            (SHIM_SOCKETS / hashlib.sha256(f"{address}/k8s.io/{sandbox}".encode()).hexdigest()).unlink(missing_ok=True)
        for directory in (SHIM_SOCKETS, SHIM_SOCKETS.parent):
            try:
                directory.rmdir()
            except OSError:
                pass
        logs = str(workdir / "pod-logs")
        if CONTAINER_LOGS.is_dir():
            for link in CONTAINER_LOGS.iterdir():
                try:
                    if link.is_symlink() and os.readlink(link).startswith(logs):
                        link.unlink()
                except OSError:
                    pass
            try:
                CONTAINER_LOGS.rmdir()
            except OSError:
                pass
        results = CNI_CACHE / "results"
        if results.is_dir():
            for entry in results.iterdir():
                if entry.name.startswith(f"trace-stack-{netns}-") or any(f"-{s}-" in entry.name for s in sandboxes):
                    entry.unlink(missing_ok=True)
        for directory in (results, CNI_CACHE):
            try:
                directory.rmdir()
            except OSError:
                pass
    with _Registry() as registry:
        registry.remove(netns)
    if workdir is not None and (workdir / "cluster.json").exists():
        (workdir / "cluster.json").replace(workdir / "cluster.stopped.json")


def _stop_dir(workdir: Path | None, netns: str) -> None:
    """Stop the cluster whose state is in workdir (or, without it, what is left of netns)."""
    pids: dict[str, int] = {}
    cgroup = f"trace-stack-{netns}"
    if workdir is not None and (workdir / "cluster.json").exists():
        state = json.loads((workdir / "cluster.json").read_text())
        pids, cgroup, netns = state["pids"], state["cgroup"], state["netns"]
    _teardown(workdir.resolve() if workdir is not None else None, netns, cgroup, pids=pids)


def stop_dir(workdir: Path) -> None:
    """Stop the cluster started in workdir (nothing if it is stopped already)."""
    state = Path(workdir) / "cluster.json"
    if state.exists():
        _stop_dir(Path(workdir), json.loads(state.read_text())["netns"])


# ----- the hostPath provisioner (runs in the namespace: `python -m tests.kube_cluster provision`) --
def provision(api, volumes: Path, interval: float = 0.5) -> None:
    """Give every unbound claim of the default StorageClass a hostPath volume at
    volumes/<namespace>/<claim>, made for that claim (pre-bound by its uid), and delete the
    volumes whose claims are gone (their data stays: a claim made again gets it back)."""
    while True:
        try:
            claims = api.get("/api/v1/persistentvolumeclaims")["items"]
            pvs = {pv["metadata"]["name"]: pv for pv in api.get("/api/v1/persistentvolumes")["items"]}
            for claim in claims:
                meta, spec = claim["metadata"], claim["spec"]
                if spec.get("volumeName") or meta.get("deletionTimestamp") or spec.get("storageClassName") != STORAGE_CLASS:
                    continue
                name = f"pvc-{meta['uid']}"
                if name in pvs:
                    continue
                path = volumes / meta["namespace"] / meta["name"]
                path.mkdir(parents=True, exist_ok=True)
                path.chmod(0o777)
                api.send("POST", "/api/v1/persistentvolumes", {
                    "apiVersion": "v1", "kind": "PersistentVolume",
                    "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
                                 "labels": {"trace-stack.test/namespace": meta["namespace"],
                                            "trace-stack.test/claim": meta["name"]}},
                    "spec": {"capacity": {"storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")},
                             "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                             "volumeMode": spec.get("volumeMode", "Filesystem"),
                             "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
                             "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                             "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                          "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]}}})
            for name, pv in pvs.items():
                if (pv["metadata"].get("annotations", {}).get("pv.kubernetes.io/provisioned-by") == PROVISIONER
                        and pv.get("status", {}).get("phase") in ("Released", "Failed")
                        and not pv["metadata"].get("deletionTimestamp")):
                    api.request("DELETE", f"/api/v1/persistentvolumes/{name}").close()
        except Exception as error:  # the API not up yet, a conflict: try again next round
            print(f"provisioner: {error}", file=sys.stderr, flush=True)
        time.sleep(interval)


# ----- one cluster per pytest(-xdist) worker, for every test module that wants one ------------------
_shared: Cluster | None = None
_shared_lock = threading.Lock()


def shared_cluster() -> Cluster:
    """The cluster of this test process (one per xdist worker: netns tsk-<worker>), started on
    first use and stopped when the process exits."""
    global _shared
    with _shared_lock:
        if _shared is None:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            workdir = Path(tempfile.mkdtemp(prefix=f"trace-stack-kube-{worker}-"))
            cluster = Cluster.start(workdir, name=f"tsk-{worker}")

            def cleanup():
                cluster.stop()
                shutil.rmtree(workdir, ignore_errors=True)
            atexit.register(cleanup)
            # and if this process ends without running atexit (killed, os._exit), a watchdog does it
            subprocess.Popen([sys.executable, "-m", "tests.kube_cluster", "watchdog", str(workdir), "--pid",
                              str(os.getpid())], cwd=ROOT, start_new_session=True, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _shared = cluster
        return _shared


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.kube_cluster")
    sub = parser.add_subparsers(dest="action", required=True)
    start = sub.add_parser("start")
    start.add_argument("dir", type=Path)
    start.add_argument("--name", default="tsk")
    stop = sub.add_parser("stop")
    stop.add_argument("dir", type=Path)
    watchdog = sub.add_parser("watchdog")
    watchdog.add_argument("dir", type=Path)
    watchdog.add_argument("--pid", type=int, required=True)
    prov = sub.add_parser("provision")
    for flag in ("--server", "--ca", "--token-file", "--volumes"):
        prov.add_argument(flag, required=True)
    args = parser.parse_args()
    if args.action == "start":
        args.dir.mkdir(parents=True, exist_ok=True)
        cluster = Cluster.start(args.dir, args.name)
        print(f"kubeconfig: {cluster.kubeconfig}")
        print(f"netns: {cluster.netns}")
        print(f"run: nsenter --net=/run/netns/{cluster.netns} -- env KUBECONFIG={cluster.kubeconfig} "
              f"{cluster.bin}/kubectl get pods -A")
        print(f"started in {cluster.timings['ready']:.1f}s")
        return 0
    if args.action == "stop":
        started = time.monotonic()
        stop_dir(args.dir)
        print(f"stopped in {time.monotonic() - started:.1f}s")
        return 0
    if args.action == "watchdog":
        while Path(f"/proc/{args.pid}").exists():
            time.sleep(0.5)
        if (args.dir / "cluster.json").exists():
            stop_dir(args.dir)
            shutil.rmtree(args.dir, ignore_errors=True)
        return 0
    from tests.kube_dns import KubeAPI
    provision(KubeAPI(args.server, args.ca, Path(args.token_file).read_text().strip()), Path(args.volumes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
